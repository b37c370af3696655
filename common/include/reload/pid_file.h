// The pid file: written atomically and never through a symlink, in a
// directory only root or this user can write (the rule sshd applies to the
// files it trusts), and removed only while it still names this process.
//
// Everything happens relative to one descriptor of the directory, so the
// directory that was checked is the one written: replacing a path component
// between the check and the write changes nothing.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

namespace reload {

class PidFile {
 public:
  // Why a directory with `mode`, owned by `owner`, must not hold a pid file
  // written by `self`; empty when it may. Refused: anything but a directory,
  // a directory owned by someone other than root or `self`, and one that
  // group or others can write (they could put a file or symlink of their own
  // in its place, or remove ours).
  static std::string directoryProblem(mode_t mode, uid_t owner, uid_t self);

  // Why an ancestor of the pid file's directory, with `mode` and `owner`,
  // lets someone other than root or `self` swap that directory (or a
  // directory above it) for another one; empty when it does not. The rule
  // is directoryProblem's, except that a sticky directory that others may
  // write (such as /tmp) is fine: there only an entry's owner can rename or
  // remove it, and the entry below is checked in its turn.
  static std::string ancestorProblem(mode_t mode, uid_t owner, uid_t self);

  // Applies directoryProblem to the open directory `dirFd` (named `dir` in
  // messages) and ancestorProblem to every directory above it. Throws
  // std::runtime_error with the reason, std::system_error if one cannot be
  // looked at. For other files root trusts in the same way.
  static void checkTrustedDirectory(int dirFd, const std::string& dir);

  // `path` is absolute; throws std::invalid_argument otherwise.
  explicit PidFile(std::string path);

  const std::string& path() const { return path_; }
  const std::string& directory() const { return dir_; }

  // Creates the directory (its last component only, mode 0755) if it is
  // missing, checks it and every directory above it, writes `pid` to a new file of a random name created
  // with O_EXCL|O_NOFOLLOW, syncs it and renames it over the pid file. A
  // symlink at either name is never followed: the temporary name is fresh,
  // and rename replaces a symlink at the pid file's name. Throws
  // std::system_error (with the path) or std::runtime_error (an unsafe
  // directory, with the reason).
  void write(pid_t pid) const;

  // Proves that write() would succeed without leaving anything behind: the
  // directory is checked, and a temporary file is created and removed in
  // it (the directory too when it was missing). Throws like write().
  void checkWritable() const;

  // The pid the file records; nullopt when it is missing, not a regular
  // file (a symlink is not followed), or does not hold a pid.
  std::optional<pid_t> read() const;

  // Whether the pid file is a regular file, not a symlink, owned by this
  // user, that records `pid`.
  bool holds(pid_t pid) const;

  // Removes the pid file if it is a regular file, not a symlink, owned by
  // this user, that records `pid`. Returns whether it was removed.
  bool removeIfOurs(pid_t pid) const;

 private:
  bool recordsOwn(int dir, pid_t pid) const;

  std::string path_;
  std::string dir_;
  std::string name_;
};

}  // namespace reload
