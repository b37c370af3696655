#include "reload/pid_file.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <stdexcept>

#include "reload/fd.h"
#include "reload/process.h"
#include "reload/sys_error.h"

namespace reload {

namespace {

constexpr int kTempAttempts = 16;

std::string octal(mode_t mode) {
  char buf[16];
  snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// A name no one can have prepared: 12 random hex digits.
std::string randomSuffix() {
  unsigned char bytes[6];
  ssize_t got = retryEintr([&] { return getrandom(bytes, sizeof bytes, 0); });
  if (got != static_cast<ssize_t>(sizeof bytes)) throwSysError("getrandom for the pid file's temporary name");
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

// Opens the directory; when `create` and it is missing, creates it first
// (only the last component, as systemd's RuntimeDirectory does). Sets
// `created` when it did.
Fd openDirectory(const std::string& dir, bool create, bool* created) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && create) {
    if (mkdir(dir.c_str(), 0755) == 0) {
      if (created) *created = true;
    } else if (errno != EEXIST) {
      throwSysError("directory " + dir + ": cannot create it");
    }
    fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }
  if (fd < 0) throwSysError("directory " + dir);
  return Fd(fd);
}

// The path of the directory that `dirFd` is, with every symlink resolved:
// the ancestors to check are those of the directory opened, not of the
// name it was opened by.
std::string resolvedPath(int dirFd, const std::string& dir) {
  char buf[PATH_MAX];
  std::string link = "/proc/self/fd/" + std::to_string(dirFd);
  ssize_t n = readlink(link.c_str(), buf, sizeof buf - 1);
  if (n > 0 && buf[0] == '/') return std::string(buf, static_cast<size_t>(n));
  // Without /proc: the name resolved now.
  char* real = realpath(dir.c_str(), nullptr);
  if (real == nullptr) throwSysError("resolve " + dir);
  std::string out(real);
  free(real);
  return out;
}

void checkDirectoryTree(int dirFd, const std::string& dir) {
  struct stat st {};
  if (fstat(dirFd, &st) != 0) throwSysError("fstat " + dir);
  std::string problem = PidFile::directoryProblem(st.st_mode, st.st_uid, geteuid());
  if (!problem.empty()) throw std::runtime_error("directory " + dir + ": " + problem);
  std::string ancestor = resolvedPath(dirFd, dir);
  while (ancestor != "/") {
    auto slash = ancestor.rfind('/');
    ancestor = slash == 0 ? "/" : ancestor.substr(0, slash);
    struct stat up {};
    if (stat(ancestor.c_str(), &up) != 0) throwSysError("stat " + ancestor + ", above " + dir);
    problem = PidFile::ancestorProblem(up.st_mode, up.st_uid, geteuid());
    if (!problem.empty())
      throw std::runtime_error("directory " + dir + ": " + ancestor + " above it is " + problem);
  }
}

// Creates a fresh file of a random name in the directory; never opens an
// existing file or follows a symlink.
Fd createTemp(int dirFd, const std::string& base, std::string& name) {
  for (int attempt = 0; attempt < kTempAttempts; ++attempt) {
    name = "." + base + "." + randomSuffix();
    int fd = openat(dirFd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    0644);
    if (fd >= 0) return Fd(fd);
    if (errno != EEXIST) throwSysError("create " + name);
  }
  throwSysError("create a temporary file for " + base, EEXIST);
}

std::optional<pid_t> parsePid(const std::string& text) {
  size_t end = std::min(text.find_first_not_of("0123456789"), text.size());
  if (end == 0 || end > 9) return std::nullopt;
  if (end != text.size() && text.substr(end) != "\n") return std::nullopt;
  auto pid = static_cast<pid_t>(std::stol(text.substr(0, end)));
  if (pid <= 0) return std::nullopt;
  return pid;
}

// The regular file `name` in the directory, not through a symlink, with
// its owner; nullopt-pid when it does not hold one.
std::optional<pid_t> readAt(int dirFd, const std::string& name, uid_t* owner) {
  int raw = openat(dirFd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (raw < 0) return std::nullopt;
  Fd fd(raw);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  if (owner) *owner = st.st_uid;
  char buf[32];
  ssize_t n = retryEintr([&] { return ::read(fd.get(), buf, sizeof buf); });
  if (n <= 0 || n == static_cast<ssize_t>(sizeof buf)) return std::nullopt;
  return parsePid(std::string(buf, static_cast<size_t>(n)));
}

}  // namespace

std::string PidFile::directoryProblem(mode_t mode, uid_t owner, uid_t self) {
  if (!S_ISDIR(mode)) return "not a directory";
  if (owner != 0 && owner != self)
    return "owned by uid " + std::to_string(owner) + ", neither root nor uid " +
           std::to_string(self) + " (that user could replace what it holds)";
  if ((mode & (S_IWGRP | S_IWOTH)) != 0)
    return "writable by " + std::string((mode & S_IWOTH) ? "anyone" : "its group") + " (mode " +
           octal(mode) + "): another user could replace or remove what it holds";
  return "";
}

std::string PidFile::ancestorProblem(mode_t mode, uid_t owner, uid_t self) {
  if (S_ISDIR(mode) && (mode & S_ISVTX) != 0 && (owner == 0 || owner == self)) return "";
  return directoryProblem(mode, owner, self);
}

void PidFile::checkTrustedDirectory(int dirFd, const std::string& dir) {
  checkDirectoryTree(dirFd, dir);
}

PidFile::PidFile(std::string path) : path_(std::move(path)) {
  auto slash = path_.rfind('/');
  if (path_.empty() || path_[0] != '/' || slash == path_.size() - 1)
    throw std::invalid_argument("pid file '" + path_ + "' is not an absolute file path");
  dir_ = slash == 0 ? "/" : path_.substr(0, slash);
  name_ = path_.substr(slash + 1);
}

void PidFile::write(pid_t pid) const {
  Fd dir = openDirectory(dir_, true, nullptr);
  checkDirectoryTree(dir.get(), dir_);
  std::string temp;
  Fd file = createTemp(dir.get(), name_, temp);
  auto discard = [&](const std::string& what) {
    int err = errno;
    unlinkat(dir.get(), temp.c_str(), 0);
    throwSysError(what, err);
  };
  if (fchmod(file.get(), 0644) != 0) discard("fchmod " + dir_ + "/" + temp);
  if (!writeAll(file.get(), std::to_string(pid) + "\n")) discard("write " + dir_ + "/" + temp);
  if (fsync(file.get()) != 0) discard("fsync " + dir_ + "/" + temp);
  if (close(file.release()) != 0) discard("close " + dir_ + "/" + temp);
  if (renameat(dir.get(), temp.c_str(), dir.get(), name_.c_str()) != 0)
    discard("rename " + dir_ + "/" + temp + " to " + path_);
  // The name is in place; a lost directory entry after a crash only costs
  // a missing pid file, so a failure here is an error like any other.
  if (fsync(dir.get()) != 0) throwSysError("fsync " + dir_);
}

void PidFile::checkWritable() const {
  bool created = false;
  Fd dir = openDirectory(dir_, true, &created);
  auto removeCreated = [&] {
    if (created) rmdir(dir_.c_str());
  };
  try {
    checkDirectoryTree(dir.get(), dir_);
    std::string temp;
    Fd file = createTemp(dir.get(), name_, temp);
    if (unlinkat(dir.get(), temp.c_str(), 0) != 0) throwSysError("remove " + dir_ + "/" + temp);
  } catch (...) {
    removeCreated();
    throw;
  }
  removeCreated();
}

std::optional<pid_t> PidFile::read() const {
  Fd dir(open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return std::nullopt;
  return readAt(dir.get(), name_, nullptr);
}

// Whether the file in `dir` records `pid` and is this user's.
bool PidFile::recordsOwn(int dir, pid_t pid) const {
  uid_t owner = 0;
  auto recorded = readAt(dir, name_, &owner);
  return recorded && *recorded == pid && owner == geteuid();
}

bool PidFile::holds(pid_t pid) const {
  Fd dir(open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  return dir && recordsOwn(dir.get(), pid);
}

bool PidFile::removeIfOurs(pid_t pid) const {
  Fd dir(open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir || !recordsOwn(dir.get(), pid)) return false;
  return unlinkat(dir.get(), name_.c_str(), 0) == 0;
}

}  // namespace reload
