// The last good record: a copy of the last good binary and the validated
// configuration it served with, in a directory given on the command line
// (--last-good-dir), so that a restart by systemd after the master died
// (during a seamless reload or not) starts what last served well rather
// than whatever is on disk. A start script moves the record aside as
// "taken" before it runs it: a last good image that itself dies at start is
// not run again, the next start is from disk.
//
// Layout of the directory (mode 0700, owned by root or this user):
//   record/binary   the binary (0700), copied from the running image's
//                   descriptor, or hard-linked when it is that very file
//   record/meta     encodeLastGood() (0600)
//   taken/          a record the start script took
//   reloading       one line: the seamless reload under way, if any (0600)
// Every write is of fresh names (O_EXCL|O_NOFOLLOW) renamed into place.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <optional>
#include <string>

namespace reload {

// The first line of every record's meta file.
constexpr const char kLastGoodFormat[] = "molt-last-good 1";

struct LastGoodRecord {
  std::string service;         // Service::name()
  std::string version;         // of the binary recorded
  std::string executable;      // absolute: what a later SIGUSR1 runs
  std::string configPath;      // absolute: what a later SIGHUP reads
  std::string configDigest;    // of the validated bytes
  std::string binaryIdentity;  // fileIdentity() of the binary recorded
  std::string why;             // one line: why it is the last good one
  int64_t writtenEpoch = 0;
  std::string validated;       // encodeValidated() of the configuration
};

// Whether two records name the same binary, configuration and paths (the
// reason and the time may differ).
bool sameLastGood(const LastGoodRecord& a, const LastGoodRecord& b);

// Throws std::invalid_argument for a field that cannot be recorded (a line
// break or NUL in a one-line field, a relative path).
std::string encodeLastGood(const LastGoodRecord& record);
// Throws std::invalid_argument for anything but a whole, undamaged record
// of this format (its checksum is verified).
LastGoodRecord decodeLastGood(const std::string& bytes);

// "DEV:INO:SIZE:MTIME_NS" of a file.
std::string fileIdentity(const struct stat& st);

class LastGoodDir {
 public:
  // `path` is absolute; throws std::invalid_argument otherwise.
  explicit LastGoodDir(std::string path);
  const std::string& path() const { return path_; }

  enum class WriteResult { kWritten, kCurrent };
  // Makes `record`, with the binary open as `binaryFd`, the record: kCurrent
  // (nothing written) when it is that already. Creates the directory (0700)
  // if it is missing, checks it as the pid file's (owner, mode, the
  // directories above), removes a record taken by the start script and
  // leftovers of an interrupted write, and sets the reload note to
  // `reloadNote` ("" removes it). Throws std::system_error or
  // std::runtime_error; a failed write leaves the previous record.
  WriteResult write(const LastGoodRecord& record, int binaryFd,
                    const std::string& reloadNote) const;

  // Sets the reload note alone ("" removes it), in the directory write()
  // checks. Throws like write().
  void setReloadNote(const std::string& reloadNote) const;

  // The record the start script took (taken/), checked as write() checks
  // what it writes, its binary present. Throws std::runtime_error or
  // std::invalid_argument with the reason.
  LastGoodRecord readTaken() const;
  // The reload note; "" when there is none.
  std::string readReloadNote() const;

  // Removes the record and a taken one, not the note: after a write that
  // failed, an older record would start an image older than the last good
  // one on data it may not know. Missing pieces are fine; throws like
  // write().
  void removeRecord() const;

  // Removes the record, a taken one and the note (a clean stop: the next
  // start is from disk), in the directory write() checks. Missing pieces
  // are fine; throws like write().
  void removeAll() const;

 private:
  void writeNote(int dirFd, const std::string& reloadNote) const;

  std::string path_;
};

}  // namespace reload
