#include "reload/last_good.h"

#include <dirent.h>
#include <fcntl.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <vector>

#include "reload/fd.h"
#include "reload/handoff.h"
#include "reload/ini_config.h"
#include "reload/pid_file.h"
#include "reload/process.h"
#include "reload/sys_error.h"

namespace reload {

namespace {

constexpr const char kRecord[] = "record";
constexpr const char kTaken[] = "taken";
constexpr const char kBinary[] = "binary";
constexpr const char kMeta[] = "meta";
constexpr const char kReloadNote[] = "reloading";
constexpr const char kTempPrefix[] = ".new.";
// The meta file: one-line fields and the validated configuration.
constexpr size_t kMaxMetaBytes = 2 * IniConfig::kMaxConfigBytes + 65536;
constexpr size_t kMaxNoteBytes = 4096;
constexpr time_t kStaleTempSeconds = 120;

void requireOneLine(const std::string& value, const char* field) {
  if (value.find_first_of(std::string("\n\0", 2)) != std::string::npos)
    throw std::invalid_argument(std::string("last good record: ") + field +
                                " has a line break or NUL");
}

void requireAbsolute(const std::string& value, const char* field) {
  if (value.empty() || value[0] != '/')
    throw std::invalid_argument(std::string("last good record: ") + field + " '" + value +
                                "' is not an absolute path");
}

// A fresh name no one can have prepared.
std::string tempName() {
  unsigned char bytes[6];
  ssize_t got = retryEintr([&] { return getrandom(bytes, sizeof bytes, 0); });
  if (got != static_cast<ssize_t>(sizeof bytes)) throwSysError("getrandom for a temporary name");
  return kTempPrefix + hexOf(std::string(reinterpret_cast<const char*>(bytes), sizeof bytes));
}

Fd openDirAt(int dirFd, const char* name) {
  return Fd(openat(dirFd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
}

// The trusted directory itself, created (0700) when it is missing.
Fd openTrusted(const std::string& path, bool create) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && create) {
    if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
      throwSysError("last good directory " + path + ": cannot create it");
    fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }
  if (fd < 0) throwSysError("last good directory " + path);
  Fd dir(fd);
  PidFile::checkTrustedDirectory(dir.get(), path);
  return dir;
}

// The directory checked as openTrusted() checks it; none when it is missing.
Fd openTrustedIfThere(const std::string& path) {
  Fd dir(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) {
    if (errno == ENOENT) return Fd();
    throwSysError("last good directory " + path);
  }
  PidFile::checkTrustedDirectory(dir.get(), path);
  return dir;
}

// A file of a record directory: a regular file (never through a symlink)
// owned by this user or root, at most `limit` bytes.
std::string readSmallFile(int dirFd, const char* name, size_t limit, const std::string& what) {
  Fd fd(openat(dirFd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) throwSysError(what);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) throwSysError("fstat " + what);
  if (!S_ISREG(st.st_mode)) throw std::runtime_error(what + ": not a regular file");
  if (st.st_uid != 0 && st.st_uid != geteuid())
    throw std::runtime_error(what + ": owned by uid " + std::to_string(st.st_uid));
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    throw std::runtime_error(what + ": writable by others");
  if (static_cast<size_t>(st.st_size) > limit) throw std::runtime_error(what + ": too large");
  std::string bytes;
  char buf[65536];
  for (;;) {
    ssize_t n = retryEintr([&] { return read(fd.get(), buf, sizeof buf); });
    if (n < 0) throwSysError("read " + what);
    if (n == 0) break;
    bytes.append(buf, static_cast<size_t>(n));
    if (bytes.size() > limit) throw std::runtime_error(what + ": too large");
  }
  return bytes;
}

// Checks a record directory as its parent is checked.
void checkRecordDir(int fd, const std::string& what) {
  struct stat st {};
  if (fstat(fd, &st) != 0) throwSysError("fstat " + what);
  std::string problem = PidFile::directoryProblem(st.st_mode, st.st_uid, geteuid());
  if (!problem.empty()) throw std::runtime_error(what + ": " + problem);
}

void writeNewFile(int dirFd, const char* name, const std::string& bytes, mode_t mode,
                  const std::string& what) {
  Fd fd(openat(dirFd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd) throwSysError("create " + what);
  if (fchmod(fd.get(), mode) != 0) throwSysError("fchmod " + what);
  if (!writeAll(fd.get(), bytes)) throwSysError("write " + what);
  if (fsync(fd.get()) != 0) throwSysError("fsync " + what);
  if (close(fd.release()) != 0) throwSysError("close " + what);
}

// Copies the whole file open as `source` (from its start, whatever its
// offset) into a new file.
void copyBinary(int source, int dirFd, const std::string& what) {
  struct stat st {};
  if (fstat(source, &st) != 0) throwSysError("fstat the binary to record");
  Fd fd(openat(dirFd, kBinary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0700));
  if (!fd) throwSysError("create " + what);
  if (fchmod(fd.get(), 0700) != 0) throwSysError("fchmod " + what);
  std::vector<char> buf(1 << 20);
  off_t offset = 0;
  for (;;) {
    ssize_t n = retryEintr([&] { return pread(source, buf.data(), buf.size(), offset); });
    if (n < 0) throwSysError("read the binary to record");
    if (n == 0) break;
    if (!writeAll(fd.get(), std::string(buf.data(), static_cast<size_t>(n))))
      throwSysError("write " + what);
    offset += n;
  }
  if (offset != st.st_size)
    throw std::runtime_error("the binary to record changed while it was copied");
  if (fsync(fd.get()) != 0) throwSysError("fsync " + what);
  if (close(fd.release()) != 0) throwSysError("close " + what);
}

// Removes a record directory (files only: nothing else is ever put there).
// The names in the directory open as `dirFd`, but "." and "..".
std::vector<std::string> namesIn(int dirFd, const std::string& what) {
  int listFd = dup(dirFd);
  if (listFd < 0) throwSysError("dup " + what);
  DIR* list = fdopendir(listFd);
  if (list == nullptr) {
    close(listFd);
    throwSysError("list " + what);
  }
  std::vector<std::string> names;
  while (dirent* entry = readdir(list))
    if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0)
      names.emplace_back(entry->d_name);
  closedir(list);
  return names;
}

void removeRecordDir(int parent, const std::string& name, const std::string& what) {
  Fd dir = openDirAt(parent, name.c_str());
  if (!dir) {
    if (errno == ENOENT) return;
    if (errno == ENOTDIR || errno == ELOOP) {
      if (unlinkat(parent, name.c_str(), 0) != 0 && errno != ENOENT) throwSysError("remove " + what);
      return;
    }
    throwSysError("open " + what);
  }
  for (const auto& entry : namesIn(dir.get(), what))
    if (unlinkat(dir.get(), entry.c_str(), 0) != 0 && errno != ENOENT)
      throwSysError("remove " + what + "/" + entry);
  if (unlinkat(parent, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
    throwSysError("remove " + what);
}

std::optional<LastGoodRecord> readRecordAt(int parent, const char* name) {
  Fd dir = openDirAt(parent, name);
  if (!dir) return std::nullopt;
  try {
    return decodeLastGood(readSmallFile(dir.get(), kMeta, kMaxMetaBytes, name));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// Hard-links into `tempDir` a recorded binary that is the file open as
// `binaryFd` (an image started from a record runs that record's copy).
bool linkSameBinary(int dirFd, int tempDir, const struct stat& own) {
  for (const char* name : {kRecord, kTaken}) {
    std::string path = std::string(name) + "/" + kBinary;
    struct stat st {};
    if (fstatat(dirFd, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (!S_ISREG(st.st_mode) || st.st_dev != own.st_dev || st.st_ino != own.st_ino) continue;
    if (linkat(dirFd, path.c_str(), tempDir, kBinary, 0) == 0) return true;
  }
  return false;
}

}  // namespace

bool sameLastGood(const LastGoodRecord& a, const LastGoodRecord& b) {
  return a.service == b.service && a.version == b.version && a.executable == b.executable &&
         a.configPath == b.configPath && a.configDigest == b.configDigest &&
         a.binaryIdentity == b.binaryIdentity && a.validated == b.validated;
}

std::string fileIdentity(const struct stat& st) {
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
         std::to_string(st.st_size) + ":" +
         std::to_string(static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec);
}

std::string encodeLastGood(const LastGoodRecord& r) {
  requireOneLine(r.service, "service");
  requireOneLine(r.version, "version");
  requireOneLine(r.executable, "executable");
  requireOneLine(r.configPath, "config path");
  requireOneLine(r.configDigest, "config digest");
  requireOneLine(r.binaryIdentity, "binary identity");
  requireOneLine(r.why, "reason");
  requireAbsolute(r.executable, "executable");
  requireAbsolute(r.configPath, "config path");
  if (r.service.empty()) throw std::invalid_argument("last good record: no service name");
  std::string out = std::string(kLastGoodFormat) + "\n";
  out += "service " + r.service + "\n";
  out += "version " + r.version + "\n";
  out += "executable " + r.executable + "\n";
  out += "config-path " + r.configPath + "\n";
  out += "config-digest " + r.configDigest + "\n";
  out += "binary-identity " + r.binaryIdentity + "\n";
  out += "why " + r.why + "\n";
  out += "written " + std::to_string(r.writtenEpoch) + "\n";
  out += "validated " + std::to_string(r.validated.size()) + "\n" + r.validated;
  out += "sha256 " + sha256Hex(out) + "\n";
  return out;
}

LastGoodRecord decodeLastGood(const std::string& bytes) {
  auto bad = [](const std::string& why) -> std::invalid_argument {
    return std::invalid_argument("not a last good record: " + why);
  };
  if (bytes.size() > kMaxMetaBytes) throw bad("too large");
  // The checksum line closes the record and covers everything before it.
  const std::string tag = "sha256 ";
  const size_t sumLength = tag.size() + 2 * SHA256_DIGEST_SIZE + 1;
  if (bytes.size() < sumLength || bytes.back() != '\n') throw bad("truncated");
  const size_t sumAt = bytes.size() - sumLength;
  if (bytes.compare(sumAt, tag.size(), tag) != 0) throw bad("no checksum line at its end");
  const std::string body = bytes.substr(0, sumAt);
  if (bytes.substr(sumAt + tag.size(), 2 * SHA256_DIGEST_SIZE) != sha256Hex(body))
    throw bad("its checksum does not match (damaged)");
  size_t pos = 0;
  auto line = [&]() {
    auto nl = body.find('\n', pos);
    if (nl == std::string::npos) throw bad("truncated");
    std::string text = body.substr(pos, nl - pos);
    pos = nl + 1;
    return text;
  };
  auto field = [&](const char* name) {
    std::string text = line();
    std::string prefix = std::string(name) + " ";
    if (text.rfind(prefix, 0) != 0) throw bad(std::string("expected '") + name + "'");
    return text.substr(prefix.size());
  };
  auto number = [&](const std::string& digits, const char* name) {
    if (digits.empty() || digits.size() > 18 ||
        digits.find_first_not_of("0123456789") != std::string::npos)
      throw bad(std::string("bad ") + name);
    return std::stoll(digits);
  };
  if (line() != kLastGoodFormat) throw bad(std::string("its first line is not '") + kLastGoodFormat + "'");
  LastGoodRecord r;
  r.service = field("service");
  r.version = field("version");
  r.executable = field("executable");
  r.configPath = field("config-path");
  r.configDigest = field("config-digest");
  r.binaryIdentity = field("binary-identity");
  r.why = field("why");
  r.writtenEpoch = number(field("written"), "time");
  auto length = static_cast<size_t>(number(field("validated"), "length"));
  if (pos + length != body.size()) throw bad("the configuration is not of its recorded length");
  r.validated = body.substr(pos);
  if (r.service.empty()) throw bad("no service name");
  if (r.executable.empty() || r.executable[0] != '/') throw bad("the executable is not absolute");
  if (r.configPath.empty() || r.configPath[0] != '/') throw bad("the config path is not absolute");
  if (r.validated.empty()) throw bad("no configuration");
  return r;
}

LastGoodDir::LastGoodDir(std::string path) : path_(std::move(path)) {
  if (path_.empty() || path_[0] != '/')
    throw std::invalid_argument("last good directory '" + path_ + "' is not an absolute path");
}

LastGoodDir::WriteResult LastGoodDir::write(const LastGoodRecord& record, int binaryFd,
                                           const std::string& reloadNote) const {
  requireOneLine(reloadNote, "reload note");
  Fd dir = openTrusted(path_, true);
  struct stat own {};
  if (fstat(binaryFd, &own) != 0) throwSysError("fstat the binary to record");
  if (!S_ISREG(own.st_mode)) throw std::runtime_error("the binary to record is not a regular file");
  LastGoodRecord wanted = record;
  wanted.binaryIdentity = fileIdentity(own);
  const std::string meta = encodeLastGood(wanted);

  // Leftovers of a write that was interrupted.
  {
    std::vector<std::string> stale;
    for (auto& name : namesIn(dir.get(), path_))
      if (name.rfind(kTempPrefix, 0) == 0) stale.push_back(std::move(name));
    // Only what is old: a write of another image may be under way (one
    // the image before gave up waiting for).
    const time_t now = time(nullptr);
    for (const auto& name : stale) {
      struct stat st {};
      if (fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          st.st_mtime + kStaleTempSeconds < now)
        removeRecordDir(dir.get(), name, path_ + "/" + name);
    }
  }

  WriteResult result = WriteResult::kCurrent;
  auto current = readRecordAt(dir.get(), kRecord);
  struct stat recorded {};
  bool binaryThere = fstatat(dir.get(), (std::string(kRecord) + "/" + kBinary).c_str(), &recorded,
                             AT_SYMLINK_NOFOLLOW) == 0 &&
                     S_ISREG(recorded.st_mode);
  if (!current || !sameLastGood(*current, wanted) || !binaryThere) {
    const std::string temp = tempName();
    const std::string what = path_ + "/" + temp;
    if (mkdirat(dir.get(), temp.c_str(), 0700) != 0) throwSysError("create " + what);
    try {
      Fd tempDir = openDirAt(dir.get(), temp.c_str());
      if (!tempDir) throwSysError("open " + what);
      checkRecordDir(tempDir.get(), what);
      // The same binary as the record's (the identity it was copied from,
      // or the very file): linked, not copied again.
      bool linked = false;
      if (current && binaryThere && current->binaryIdentity == wanted.binaryIdentity &&
          recorded.st_size == own.st_size)
        linked = linkat(dir.get(), (std::string(kRecord) + "/" + kBinary).c_str(), tempDir.get(),
                        kBinary, 0) == 0;
      if (!linked) linked = linkSameBinary(dir.get(), tempDir.get(), own);
      if (!linked) copyBinary(binaryFd, tempDir.get(), what + "/" + kBinary);
      writeNewFile(tempDir.get(), kMeta, meta, 0600, what + "/" + kMeta);
      if (fsync(tempDir.get()) != 0) throwSysError("fsync " + what);
      // One step: the record is the old one or the new one, never none.
      if (renameat2(dir.get(), temp.c_str(), dir.get(), kRecord, RENAME_EXCHANGE) == 0) {
        removeRecordDir(dir.get(), temp, what);
      } else if (errno == ENOENT) {
        if (renameat2(dir.get(), temp.c_str(), dir.get(), kRecord, RENAME_NOREPLACE) != 0)
          throwSysError("rename " + what + " to " + path_ + "/" + kRecord);
      } else {
        throwSysError("exchange " + what + " with " + path_ + "/" + kRecord);
      }
    } catch (...) {
      try {
        removeRecordDir(dir.get(), temp, what);
      } catch (const std::exception&) {
        // Removed by the next write.
      }
      throw;
    }
    result = WriteResult::kWritten;
  }
  removeRecordDir(dir.get(), kTaken, path_ + "/" + kTaken);
  writeNote(dir.get(), reloadNote);
  return result;
}

void LastGoodDir::setReloadNote(const std::string& reloadNote) const {
  requireOneLine(reloadNote, "reload note");
  Fd dir = openTrusted(path_, true);
  writeNote(dir.get(), reloadNote);
}

void LastGoodDir::writeNote(int dirFd, const std::string& reloadNote) const {
  const std::string what = path_ + "/" + kReloadNote;
  if (reloadNote.empty()) {
    if (unlinkat(dirFd, kReloadNote, 0) != 0 && errno != ENOENT) throwSysError("remove " + what);
  } else {
    const std::string temp = tempName();
    writeNewFile(dirFd, temp.c_str(), reloadNote + "\n", 0600, path_ + "/" + temp);
    if (renameat(dirFd, temp.c_str(), dirFd, kReloadNote) != 0) {
      int err = errno;
      unlinkat(dirFd, temp.c_str(), 0);
      throwSysError("rename to " + what, err);
    }
  }
  if (fsync(dirFd) != 0) throwSysError("fsync " + path_);
}

LastGoodRecord LastGoodDir::readTaken() const {
  Fd dir = openTrusted(path_, false);
  const std::string what = path_ + "/" + kTaken;
  Fd taken = openDirAt(dir.get(), kTaken);
  if (!taken) throwSysError(what);
  checkRecordDir(taken.get(), what);
  LastGoodRecord record = decodeLastGood(
      readSmallFile(taken.get(), kMeta, kMaxMetaBytes, what + "/" + kMeta));
  struct stat st {};
  if (fstatat(taken.get(), kBinary, &st, AT_SYMLINK_NOFOLLOW) != 0)
    throwSysError(what + "/" + kBinary);
  if (!S_ISREG(st.st_mode)) throw std::runtime_error(what + "/" + kBinary + ": not a regular file");
  return record;
}

std::string LastGoodDir::readReloadNote() const {
  Fd dir(open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return "";
  try {
    std::string note = readSmallFile(dir.get(), kReloadNote, kMaxNoteBytes, kReloadNote);
    while (!note.empty() && note.back() == '\n') note.pop_back();
    return note;
  } catch (const std::exception&) {
    return "";
  }
}

void LastGoodDir::removeRecord() const {
  Fd dir = openTrustedIfThere(path_);
  if (!dir) return;
  removeRecordDir(dir.get(), kRecord, path_ + "/" + kRecord);
  removeRecordDir(dir.get(), kTaken, path_ + "/" + kTaken);
}

void LastGoodDir::removeAll() const {
  Fd dir = openTrustedIfThere(path_);
  if (!dir) return;
  removeRecordDir(dir.get(), kRecord, path_ + "/" + kRecord);
  removeRecordDir(dir.get(), kTaken, path_ + "/" + kTaken);
  if (unlinkat(dir.get(), kReloadNote, 0) != 0 && errno != ENOENT)
    throwSysError("remove " + path_ + "/" + kReloadNote);
}

}  // namespace reload
