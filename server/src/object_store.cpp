#include "object_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <linux/openat2.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>


#include <algorithm>
#include <future>
#include <cmath>
#include <atomic>
#include <chrono>
#include <mutex>
#include <cstring>
#include <functional>
#include <set>
#include <string_view>
#include <sstream>

#include "md5.h"
#include "object_key.h"
#include "reload/log.h"
#include "reload/sys_error.h"

namespace server {
namespace {

constexpr char kTrailerMagic[] = "MOLTMETA";
constexpr size_t kTrailerSize = 16;
constexpr size_t kMaxMetaSize = kMaxEncodedMetaBytes;

std::atomic<uint64_t> uploadCounter{0};

// "PID.TOKEN": TOKEN is random and drawn again in each process, so that a
// process that gets the PID of a dead one never meets its leftover files.
std::string tempFileStem() {
  static std::mutex mutex;
  static pid_t owner = 0;
  static std::string stem;
  std::lock_guard<std::mutex> lock(mutex);
  pid_t pid = getpid();
  if (pid != owner) {
    uint64_t token = 0;
    if (getrandom(&token, sizeof token, 0) != static_cast<ssize_t>(sizeof token))
      token = static_cast<uint64_t>(pid) * 0x9e3779b97f4a7c15ULL ^
              static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(token));
    stem = std::to_string(pid) + "." + hex;
    owner = pid;
  }
  return stem;
}

uint64_t mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

void fsyncDir(const std::string& dir) {
  reload::Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd || fsync(fd.get()) != 0) reload::throwSysError("fsync directory " + dir);
}

std::string parentOf(const std::string& path) { return path.substr(0, path.rfind('/')); }

// Creates `dir` and the directories between it and `root` that are
// missing. Their entries are made durable by the batch's sync that follows
// the rename, whoever made them. Throws std::system_error.
void makeDirs(const std::string& root, const std::string& dir) {
  if (dir.size() <= root.size()) return;  // the volume: its check made it
  if (mkdir(dir.c_str(), 0755) == 0) return;
  if (errno == ENOENT) {
    makeDirs(root, parentOf(dir));
    if (mkdir(dir.c_str(), 0755) == 0) return;
  }
  const int err = errno;
  if (err != EEXIST) reload::throwSysError("mkdir " + dir, err);
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0) reload::throwSysError("stat " + dir);
  if (!S_ISDIR(st.st_mode)) reload::throwSysError("mkdir " + dir, ENOTDIR);
}

// Whether a non-blocking attempt (RESOLVE_CACHED, RWF_NOWAIT) must be
// retried where blocking is allowed: it would block, or this kernel or file
// system does not offer it (tmpfs has no RWF_NOWAIT on some kernels).
bool retryBlocking(int err) { return err == EAGAIN || err == EOPNOTSUPP || err == ENOSYS || err == EINVAL; }

// pread, or with `noWait` a read served only from the page cache.
ssize_t readAt(int fd, char* buf, size_t size, off_t offset, bool noWait) {
  if (!noWait) return pread(fd, buf, size, offset);
  iovec iov{buf, size};
  return preadv2(fd, &iov, 1, offset, RWF_NOWAIT);
}

// With `noWait`, sets `wouldBlock` instead of waiting for the disk.
// With `noWait`, sets `wouldBlock` instead of waiting for the disk. With
// `whole`, a file of at most kWholeReadLimit bytes is read in one go into it:
// data, metadata and trailer (a small GET then costs one read).
bool readTrailer(int fd, ObjectMeta& meta, bool noWait = false, bool* wouldBlock = nullptr,
                 std::string* whole = nullptr) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) < kTrailerSize) return false;
  auto fileSize = static_cast<uint64_t>(st.st_size);
  auto readFully = [&](char* buf, size_t size, off_t offset) {
    ssize_t got = readAt(fd, buf, size, offset, noWait);
    // Without waiting, a read may also stop short where the page cache does.
    if (noWait && wouldBlock && ((got < 0 && retryBlocking(errno)) ||
                                 (got >= 0 && static_cast<size_t>(got) < size)))
      *wouldBlock = true;
    return got == static_cast<ssize_t>(size);
  };
  const char* trailer;
  char trailerBuf[kTrailerSize];
  if (whole && fileSize <= ObjectStore::kWholeReadLimit) {
    whole->resize(fileSize);
    if (!readFully(whole->data(), fileSize, 0)) return false;
    trailer = whole->data() + fileSize - kTrailerSize;
  } else {
    if (whole) whole->clear();
    if (!readFully(trailerBuf, kTrailerSize, static_cast<off_t>(fileSize - kTrailerSize))) return false;
    trailer = trailerBuf;
  }
  if (std::memcmp(trailer, kTrailerMagic, 8) != 0) return false;
  uint64_t metaLen = std::strtoull(std::string(trailer + 8, 8).c_str(), nullptr, 16);
  if (metaLen > kMaxMetaSize || metaLen + kTrailerSize > fileSize) return false;
  auto metaOffset = static_cast<off_t>(fileSize - kTrailerSize - metaLen);
  std::string text;
  if (whole && !whole->empty()) {
    text.assign(whole->data() + metaOffset, metaLen);
  } else {
    text.resize(metaLen);
    if (!readFully(text.data(), metaLen, metaOffset)) return false;
  }
  try {
    meta = decodeMeta(text);
  } catch (const std::invalid_argument&) {
    return false;
  }
  if (whole && !whole->empty()) whole->resize(static_cast<size_t>(metaOffset));  // the data only
  return meta.size == static_cast<uint64_t>(metaOffset);
}

}  // namespace

uint64_t rendezvousScore(const std::string& volume, const std::string& bucket,
                         const std::string& key) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a
  auto feed = [&](const std::string& s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 0x100000001b3ULL;
    }
    h ^= 0xff;
    h *= 0x100000001b3ULL;
  };
  feed(volume);
  feed(bucket);
  feed(key);
  return mix(h);
}

std::vector<std::string> volumePaths(const StorageSettings& settings) {
  std::vector<std::string> paths = settings.volumes;
  if (!settings.volumeGlob.empty()) {
    glob_t g{};
    if (glob(settings.volumeGlob.c_str(), GLOB_ONLYDIR, nullptr, &g) == 0)
      for (size_t i = 0; i < g.gl_pathc; ++i) paths.emplace_back(g.gl_pathv[i]);
    globfree(&g);
  }
  std::set<std::string> seen;
  std::vector<std::string> out;
  for (auto path : paths) {
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    if (seen.insert(path).second) out.push_back(path);
  }
  return out;
}

namespace {

// Whether `path` is a directory (not a link to one) or absent: uploads and
// objects go where VOLUME/tmp and VOLUME/objects lead.
bool directoryOrAbsent(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return errno == ENOENT;
  return S_ISDIR(st.st_mode);
}

}  // namespace

Volume scanVolume(const std::string& path, const StorageSettings& settings) {
  Volume v;
  v.path = path;
  struct stat st {};
  struct statvfs vfs {};
  if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    v.problem = "not a directory";
  } else if (statvfs(path.c_str(), &vfs) != 0) {
    v.problem = std::string("statvfs: ") + std::strerror(errno);
  } else {
    v.freeBytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    v.totalBytes = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
    if (vfs.f_flag & ST_RDONLY) v.problem = "mounted read-only";
    else if (access(path.c_str(), W_OK) != 0) v.problem = "not writable";
    else if (v.freeBytes < settings.minFreeBytes) v.problem = "below min_free_bytes";
    else if (!directoryOrAbsent(path + "/tmp")) v.problem = "tmp is not a directory";
    else if (!directoryOrAbsent(path + "/objects")) v.problem = "objects is not a directory";
    else if (ObjectStore::rebuildPending(path)) v.problem = "key index damaged; being rebuilt from the files";
    else v.writable = true;
  }
  return v;
}

std::vector<Volume> scanVolumes(const StorageSettings& settings) {
  std::vector<Volume> out;
  for (const auto& path : volumePaths(settings)) out.push_back(scanVolume(path, settings));
  return out;
}

std::string objectRelativePath(const std::string& bucket, const std::string& key) {
  std::string hash = md5Hex(key);
  return "objects/" + bucket + "/" + hash.substr(0, 2) + "/" + hash + ".obj";
}

std::string encodeMeta(const ObjectMeta& meta) {
  std::ostringstream out;
  out << "key=" << percentEncode(meta.key) << "\n"
      << "size=" << meta.size << "\n"
      << "etag=" << meta.etag << "\n"
      << "content_type=" << percentEncode(meta.contentType) << "\n";
  char ts[32];
  std::snprintf(ts, sizeof ts, "%.6f", meta.timestamp);
  out << "timestamp=" << ts << "\n";
  for (const auto& [name, value] : meta.userMeta)
    out << "meta=" << percentEncode(name) << ":" << percentEncode(value) << "\n";
  return out.str();
}

namespace {

// Numbers in a trailer read back from disk: anything but a plain number in
// range is damage, reported like every other damage (std::invalid_argument).
uint64_t metaSize(const std::string& text) {
  if (text.empty() || text.size() > 20 || text.find_first_not_of("0123456789") != std::string::npos)
    throw std::invalid_argument("bad size in metadata");
  errno = 0;
  unsigned long long value = std::strtoull(text.c_str(), nullptr, 10);
  if (errno == ERANGE) throw std::invalid_argument("size in metadata out of range");
  return value;
}

constexpr double kMaxTimestamp = 1e11;

double metaTimestamp(const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    throw std::invalid_argument("bad timestamp in metadata");
  }
  // Bounded so that every use (microseconds in 64 bits) is defined: year 5138.
  if (used != text.size() || !std::isfinite(value) || value < 0 || value >= kMaxTimestamp)
    throw std::invalid_argument("bad timestamp in metadata");
  return value;
}

}  // namespace

ObjectMeta decodeMeta(const std::string& text) {
  // Read on every GET: lines are split in place, without a stream.
  ObjectMeta meta;
  bool haveKey = false;
  auto decoded = [](std::string_view v) {
    auto d = percentDecode(std::string(v));
    if (!d) throw std::invalid_argument("bad escape in metadata");
    return std::move(*d);
  };
  std::string_view rest(text);
  while (!rest.empty()) {
    size_t end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    auto eq = line.find('=');
    if (eq == std::string_view::npos) throw std::invalid_argument("bad metadata line");
    std::string_view name = line.substr(0, eq);
    std::string_view value = line.substr(eq + 1);
    if (name == "key") {
      meta.key = decoded(value);
      haveKey = true;
    } else if (name == "size") {
      meta.size = metaSize(std::string(value));
    } else if (name == "etag") {
      meta.etag = value;
    } else if (name == "content_type") {
      meta.contentType = decoded(value);
    } else if (name == "timestamp") {
      meta.timestamp = metaTimestamp(std::string(value));
    } else if (name == "meta") {
      auto colon = value.find(':');
      if (colon == std::string_view::npos) throw std::invalid_argument("bad meta entry");
      meta.userMeta.emplace_back(decoded(value.substr(0, colon)), decoded(value.substr(colon + 1)));
    }
  }
  if (!haveKey) throw std::invalid_argument("metadata has no key");
  return meta;
}

// ------------------------------------------------------------------ Upload

Upload::Upload(ObjectStore& store, std::string volume, std::string bucket, std::string key,
               std::string tmpPath, reload::Fd fd)
    : store_(store), volume_(std::move(volume)), bucket_(std::move(bucket)),
      key_(std::move(key)), tmpPath_(std::move(tmpPath)), fd_(std::move(fd)) {}

Upload::~Upload() {
  if (!committed_) unlink(tmpPath_.c_str());
}

void Upload::write(const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd_.get(), data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      if (err == ENOSPC || err == EDQUOT)
        throw StoreError(507, "volume " + volume_ + " is full");
      throw StoreError(500, "write to " + volume_ + ": " + std::strerror(err));
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
}

StoreError Upload::storeFailure(const std::system_error& e) const {
  // Paths and LMDB's words are for the log, not for the client.
  MOLT_LOG(kError) << "storing " << bucket_ << "/" << key_ << " on " << volume_ << ": " << e.what();
  int code = e.code().value();
  if (code == ENOSPC || code == EDQUOT) return StoreError(507, "the volume is full");
  return StoreError(500, "the object could not be stored; the server log has the details");
}

void Upload::commitAsync(const ObjectMeta& meta, std::string_view lastBytes,
                         std::function<void(std::exception_ptr)> placed) {
  handIn(meta, lastBytes, shared_from_this(), std::move(placed));
}

void Upload::handIn(const ObjectMeta& meta, std::string_view lastBytes, std::shared_ptr<Upload> owner,
                    std::function<void(std::exception_ptr)> placed) {
  std::string text = encodeMeta(meta);
  if (text.size() > kMaxMetaSize) throw StoreError(400, "object metadata is too large");
  char trailer[kTrailerSize + 1];
  std::snprintf(trailer, sizeof trailer, "%s%08zx", kTrailerMagic, text.size());
  // The body's last bytes, the metadata and the trailer in one write.
  std::string tail;
  tail.reserve(lastBytes.size() + text.size() + kTrailerSize);
  tail.append(lastBytes).append(text).append(trailer, kTrailerSize);
  write(tail.data(), tail.size());
  // No fsync here: the volume's batch makes every file it takes durable
  // with one syncfs(), which writes all their blocks back in one go.
  auto placement = std::make_shared<ObjectStore::Placement>();
  placement->bucket = bucket_;
  placement->key = key_;
  placement->tmpPath = tmpPath_;
  placement->finalPath = volume_ + "/" + objectRelativePath(bucket_, key_);
  placement->dir = parentOf(placement->finalPath);
  try {
    store_.indexFor(volume_);  // opened before the first object directory exists
  } catch (const std::system_error& e) {
    throw storeFailure(e);
  }
  // The file and the entry are durable before the object appears, and no
  // DELETE or listing can drop the entry while the rename runs (see
  // key_index.h); the rename is synced before `placed` runs.
  store_.placeAsync(volume_, *placement,
                    [this, owner = std::move(owner), placement, placed = std::move(placed)]() {
    committed_ = placement->placed;
    std::exception_ptr failure = placement->error;
    if (failure) {
      try {
        std::rethrow_exception(failure);
      } catch (const std::system_error& e) {
        failure = std::make_exception_ptr(storeFailure(e));
      } catch (...) {
      }
    }
    placed(failure);
  });
}

bool Upload::othersMayHoldCopies() const {
  auto order = store_.readOrder(bucket_, key_);
  return order.size() > 1 || (order.size() == 1 && order.front() != volume_);
}

void Upload::removeOlderCopies(const ObjectMeta& meta) {
  store_.removeOtherCopies(volume_, bucket_, key_, meta.timestamp);
}

void Upload::commit(const ObjectMeta& meta) {
  std::promise<std::exception_ptr> outcome;
  auto placed = outcome.get_future();
  handIn(meta, {}, nullptr, [&outcome](std::exception_ptr failure) { outcome.set_value(failure); });
  if (auto failure = placed.get()) std::rethrow_exception(failure);
  removeOlderCopies(meta);
}

// ------------------------------------------------------------- ObjectStore

// A volume's descriptor for syncfs(), opened once and kept: syncfs()
// reports a writeback error of the filesystem met since the descriptor was
// opened (Linux 5.8), so one opened per batch would miss an error of the
// kernel's own writeback between two batches (a directory's entries written
// back, and failed, before the batch's sync). Used by the volume's batch
// only, one thread at a time. A volume whose path now leads to another
// filesystem (a remount) is opened again.
struct ObjectStore::VolumeFilesystem {
  reload::Fd fd;
  // Counts the files handed in (Placement::handedIn), from any thread.
  std::atomic<uint64_t> handedIn{0};
  // The files handed in up to this one are durable: a sync that began
  // after their hand-in succeeded. The batch's thread only.
  uint64_t durableThrough = 0;
  // Syncs, and notes what the sync made durable when it succeeds.
  void syncHandedIn(const std::string& volume) {
    const uint64_t through = handedIn.load(std::memory_order_acquire);
    sync(volume);
    durableThrough = through;
  }
  void sync(const std::string& volume) {
    struct stat now {}, held {};
    if (stat(volume.c_str(), &now) != 0) reload::throwSysError("stat " + volume);
    if (fd && (fstat(fd.get(), &held) != 0 || held.st_dev != now.st_dev)) fd.reset();
    if (!fd) {
      fd = reload::Fd(::open(volume.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!fd) reload::throwSysError("open " + volume + " for syncfs");
    }
    if (syncfs(fd.get()) != 0) reload::throwSysError("syncfs of the filesystem of " + volume);
  }
};

void ObjectStore::placeAsync(const std::string& volume, Placement& placement,
                             std::function<void()> ended) {
  GroupCommit<Placement>* commit;
  {
    std::lock_guard<std::mutex> lock(commitMutex_);
    auto& slot = commits_[volume];
    if (!slot.group) {
      slot.filesystem = std::make_shared<VolumeFilesystem>();
      slot.group = std::make_unique<GroupCommit<Placement>>(
          [this, volume, filesystem = slot.filesystem](std::vector<Placement*>& batch) {
            placeBatch(volume, *filesystem, batch);
          });
    }
    commit = slot.group.get();  // kept for the store's life
    // The file's bytes were written before this (handIn): a sync that
    // begins after it has them.
    placement.handedIn = slot.filesystem->handedIn.fetch_add(1, std::memory_order_acq_rel) + 1;
  }
  commit->submit(placement, std::move(ended));
}

void ObjectStore::placeBatch(const std::string& volume, VolumeFilesystem& filesystem,
                             std::vector<Placement*>& batch) const {
  // Two syncs of the volume's filesystem for the whole batch, whatever its
  // size: the first makes every file's bytes and inode durable (each PUT
  // only started its writeback), before any rename can make one visible;
  // the second makes the renames durable, with every directory they need,
  // whoever made it. One syncfs() writes back each dirty inode table and
  // directory block once for the batch and flushes the disk once, where a
  // fsync per file and per directory did each of those for every PUT.
  // What else is dirty on that filesystem is written back with it: a
  // volume is best a filesystem of its own.
  //
  // The last batch's second sync made durable the files handed in before
  // it began. Where some of this batch are among them, they go on alone,
  // with no first sync, and the rest are put off to the next batch, which
  // this one's second sync makes ready in turn.
  std::vector<Placement*> ready;
  ready.reserve(batch.size());
  for (auto* p : batch)
    if (p->handedIn <= filesystem.durableThrough) ready.push_back(p);
  if (ready.empty()) {
    try {
      filesystem.syncHandedIn(volume);
    } catch (...) {
      auto failure = std::current_exception();
      for (auto* p : batch) p->error = failure;
      return;
    }
    ready = batch;
  } else {
    for (auto* p : batch)
      if (p->handedIn > filesystem.durableThrough) p->putOff = true;
  }
  std::vector<std::pair<std::string, std::string>> entries;
  entries.reserve(ready.size());
  for (auto* p : ready) entries.emplace_back(p->bucket, p->key);
  try {
    withIndex(volume, [&](KeyIndex& index) {
      index.placeAllIndexed(entries, [&](size_t i) {
        Placement& p = *ready[i];
        if (p.placed || p.error) return;  // a retry after a reopen: done once
        int err = 0;
        if (rename(p.tmpPath.c_str(), p.finalPath.c_str()) == 0) {
          p.placed = true;
          return;
        }
        err = errno;
        if (err == ENOENT) {
          // Its directory is not there yet (or was removed): made now, once
          // per directory, under the write lock.
          try {
            makeDirs(volume, p.dir);
          } catch (...) {
            p.error = std::current_exception();
            return;
          }
          if (rename(p.tmpPath.c_str(), p.finalPath.c_str()) == 0) {
            p.placed = true;
            return;
          }
          err = errno;
        }
        p.error = std::make_exception_ptr(
            std::system_error(err, std::generic_category(), "rename into " + p.finalPath));
      });
    });
  } catch (...) {
    // The index failed: what was not placed fails with it; what was placed
    // had its entry durable before and is synced below.
    auto failure = std::current_exception();
    for (auto* p : ready)
      if (!p->placed && !p->error) p->error = failure;
  }
  // Nothing placed, no second sync: what was put off gets its first sync
  // in the next batch.
  if (std::none_of(ready.begin(), ready.end(), [](const Placement* p) { return p->placed; })) return;
  std::exception_ptr failure;
  try {
    filesystem.syncHandedIn(volume);
  } catch (...) {
    failure = std::current_exception();
  }
  for (auto* p : ready)
    if (p->placed && failure) p->error = failure;
}

ObjectStore::ObjectStore(StorageSettings settings) : settings_(std::move(settings)) {
  volumes_ = scanVolumes(settings_);
}

std::vector<std::string> volumeChanges(const std::vector<Volume>& before,
                                       const std::vector<Volume>& after) {
  std::vector<std::string> changes;
  for (const auto& v : after) {
    auto old = std::find_if(before.begin(), before.end(),
                            [&](const Volume& o) { return o.path == v.path; });
    if (old == before.end())
      changes.push_back("volume " + v.path + " added (" + (v.writable ? "writable" : v.problem) + ")");
    else if (old->writable != v.writable)
      changes.push_back("volume " + v.path + " is now " + (v.writable ? "writable" : v.problem));
  }
  for (const auto& o : before)
    if (std::none_of(after.begin(), after.end(), [&](const Volume& v) { return v.path == o.path; }))
      changes.push_back("volume " + o.path + " removed");
  return changes;
}

std::vector<std::string> ObjectStore::rescan() {
  std::vector<Volume> fresh = scanVolumes(settings_);
  std::lock_guard<std::mutex> lock(mutex_);
  auto changes = volumeChanges(volumes_, fresh);
  volumes_ = std::move(fresh);
  if (!changes.empty()) volumeListVersion_.fetch_add(1, std::memory_order_acq_rel);
  return changes;
}

std::vector<Volume> ObjectStore::volumes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return volumes_;
}

std::vector<std::string> ObjectStore::readOrder(const std::string& bucket,
                                                const std::string& key) const {
  std::vector<std::pair<uint64_t, const std::string*>> scored;
  std::vector<std::string> order;
  std::lock_guard<std::mutex> lock(mutex_);  // no copy of the volume list on every GET
  scored.reserve(volumes_.size());
  for (const auto& v : volumes_)
    if (v.problem != "not a directory") scored.emplace_back(rendezvousScore(v.path, bucket, key), &v.path);
  std::sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : *a.second > *b.second;
  });
  order.reserve(scored.size());
  for (const auto& s : scored) order.push_back(*s.second);
  return order;
}

std::shared_ptr<Upload> ObjectStore::beginUpload(const std::string& bucket,
                                                 const std::string& key, uint64_t announcedSize) {
  const Volume* best = nullptr;
  uint64_t bestScore = 0;
  auto vols = volumes();
  for (const auto& v : vols) {
    if (!v.writable) continue;
    uint64_t score = rendezvousScore(v.path, bucket, key);
    if (!best || score > bestScore) {
      best = &v;
      bestScore = score;
    }
  }
  if (!best) throw StoreError(507, "no volume can take writes");
  if (announcedSize > 0) {
    struct statvfs vfs {};
    if (statvfs(best->path.c_str(), &vfs) == 0) {
      uint64_t free = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
      if (announcedSize + settings_.minFreeBytes > free)
        throw StoreError(507, "volume " + best->path + " has " + std::to_string(free) +
                                  " bytes free; the object needs " + std::to_string(announcedSize));
    }
  }
  std::string tmpDir = best->path + "/tmp";
  std::string tmpPath;
  reload::Fd fd;
  for (int attempt = 0; attempt < 8 && !fd; ++attempt) {
    tmpPath = tmpDir + "/" + tempFileStem() + "." + std::to_string(uploadCounter.fetch_add(1)) + ".tmp";
    fd.reset(::open(tmpPath.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd && errno == ENOENT) {
      if (mkdir(tmpDir.c_str(), 0755) != 0 && errno != EEXIST)
        throw StoreError(500, "mkdir " + tmpDir + ": " + std::strerror(errno));
      fd.reset(::open(tmpPath.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    }
    if (!fd && errno != EEXIST) break;
  }
  if (!fd) {
    int err = errno;
    throw StoreError(err == ENOSPC || err == EDQUOT ? 507 : 500,
                     "create " + tmpPath + ": " + std::strerror(err));
  }
  // Held while the upload lives: the lock is what tells a cleaner that the
  // file is in use (a dead process holds none).
  if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    unlink(tmpPath.c_str());
    throw StoreError(500, "flock " + tmpPath + ": " + std::strerror(err));
  }
  return std::make_shared<Upload>(*this, best->path, bucket, key, tmpPath, std::move(fd));
}

// Every volume is looked at: a copy that could not be removed (a volume
// that went read-only or unwritable) may be older than the one placed
// since, and the newest copy is the object.
std::optional<OpenObject> ObjectStore::open(const std::string& bucket,
                                            const std::string& key) const {
  std::string rel = objectRelativePath(bucket, key);
  std::optional<OpenObject> best;
  for (const auto& volume : readOrder(bucket, key)) {
    reload::Fd fd(::open((volume + "/" + rel).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) continue;
    OpenObject obj;
    if (!readTrailer(fd.get(), obj.meta) || obj.meta.key != key) continue;
    if (best && best->meta.timestamp >= obj.meta.timestamp) continue;
    obj.fd = std::move(fd);
    obj.volume = volume;
    best = std::move(obj);
  }
  return best;
}

ObjectStore::Attempt ObjectStore::tryOpenCached(const std::string& bucket, const std::string& key,
                                                std::optional<OpenObject>& found,
                                                bool loadSmallData) const {
  std::string rel = objectRelativePath(bucket, key);
  std::optional<OpenObject> best;
  for (const auto& volume : readOrder(bucket, key)) {
    std::string path = volume + "/" + rel;
    open_how how{};
    how.flags = O_RDONLY | O_CLOEXEC;
    how.resolve = RESOLVE_CACHED;
    reload::Fd fd(static_cast<int>(syscall(SYS_openat2, AT_FDCWD, path.c_str(), &how, sizeof how)));
    if (!fd) {
      if (retryBlocking(errno)) return Attempt::kWouldBlock;
      continue;
    }
    OpenObject obj;
    bool wouldBlock = false;
    if (!readTrailer(fd.get(), obj.meta, true, &wouldBlock, loadSmallData ? &obj.data : nullptr) ||
        obj.meta.key != key) {
      if (wouldBlock) return Attempt::kWouldBlock;
      continue;
    }
    if (best && best->meta.timestamp >= obj.meta.timestamp) continue;
    obj.fd = std::move(fd);
    obj.volume = volume;
    obj.dataLoaded = loadSmallData && obj.data.size() == obj.meta.size;
    best = std::move(obj);
  }
  if (!best) return Attempt::kMissing;
  found = std::move(best);
  return Attempt::kFound;
}

namespace {

// Whether a file is absent: true only for a definite ENOENT (or ENOTDIR),
// so that an error never counts as "gone".
bool fileAbsent(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) != 0 && (errno == ENOENT || errno == ENOTDIR);
}

// Unlinks a copy. Returns whether there was one to unlink; throws
// std::system_error when a copy is there and cannot be removed (EROFS,
// EACCES: unlink answers those even for a missing file, so they are
// checked against the file's existence).
bool unlinkCopy(const std::string& path) {
  if (unlink(path.c_str()) == 0) return true;
  int err = errno;
  if (err == ENOENT || err == ENOTDIR || fileAbsent(path)) return false;
  reload::throwSysError("unlink " + path, err);
}

}  // namespace

void ObjectStore::withIndex(const std::string& volume,
                            const std::function<void(KeyIndex&)>& fn) const {
  auto index = indexFor(volume);
  try {
    fn(*index);
  } catch (const IndexPanicked& e) {
    // LMDB gave up on this process's environment after a failed write; the
    // files are sound (that write never happened): opened again in place,
    // then tried once more.
    MOLT_LOG(kError) << "key index of " << volume << " must be reopened: " << e.what();
    index->reopen();
    fn(*index);
  } catch (const IndexDamaged& e) {
    // Found damaged in use: rebuilt (or followed, when another process
    // rebuilt it first) in place, then tried once more. The same KeyIndex
    // stays the volume's: a second one would be a second environment of
    // the same files, which LMDB forbids in one process.
    MOLT_LOG(kError) << "key index of " << volume << " is damaged: " << e.what();
    rebuildIndex(volume, e.what(), *index, index->directoryInode());
    fn(*index);
  }
}

void ObjectStore::reopenIndex(const std::string& volume, KeyIndex& index) const {
  try {
    index.reopen();
  } catch (const std::system_error& e) {
    // The next use of the index tries again.
    MOLT_LOG(kError) << "cannot reopen the key index of " << volume << ": " << e.what();
  }
}

void ObjectStore::dropEntryIfGone(const std::string& volume, const std::string& bucket,
                                  const std::string& key) const {
  std::string path = volume + "/" + objectRelativePath(bucket, key);
  try {
    withIndex(volume, [&](KeyIndex& index) {
      index.dropIfGone(bucket, key, [&] { return fileAbsent(path); });
    });
  } catch (const std::system_error& e) {
    // A stale entry is harmless: listings skip it, and drop it later.
    MOLT_LOG(kWarning) << "cannot drop the index entry of " << bucket << "/" << key << " on "
                       << volume << ": " << e.what();
  }
}

bool ObjectStore::remove(const std::string& bucket, const std::string& key) {
  std::string rel = objectRelativePath(bucket, key);
  bool removed = false;
  bool stuck = false;
  for (const auto& volume : readOrder(bucket, key)) {
    std::string path = volume + "/" + rel;
    try {
      if (!unlinkCopy(path)) continue;
      removed = true;
      // The unlink is durable before the entry goes: a crash in between
      // leaves an entry without its file, which listings skip, never a
      // file that comes back without its entry.
      fsyncDir(parentOf(path));
    } catch (const std::system_error& e) {
      MOLT_LOG(kError) << "DELETE of " << bucket << "/" << key << ": " << e.what();
      stuck = true;
      continue;
    }
    dropEntryIfGone(volume, bucket, key);
  }
  if (stuck)
    throw StoreError(503, "a copy of the object could not be removed (logged); it may still be served");
  return removed;
}

void ObjectStore::removeOtherCopies(const std::string& keepVolume, const std::string& bucket,
                                    const std::string& key, double writtenAt) {
  std::string rel = objectRelativePath(bucket, key);
  for (const auto& volume : readOrder(bucket, key)) {
    if (volume == keepVolume) continue;
    std::string path = volume + "/" + rel;
    // No copy there: nothing to remove, and no lock of that volume's index
    // to wait for (one mid-rebuild holds it). A copy renamed there after
    // this look is another PUT's, which removes what is older than itself;
    // reads take the newest copy either way.
    if (fileAbsent(path)) continue;
    bool unlinked = false;
    try {
      // Under that volume's write lock, which every rename into it holds:
      // the copy checked is the copy unlinked. One written after ours (a
      // PUT of the same key through another worker that placed it on this
      // volume) is newer and stays; so does one of the same timestamp, which
      // that PUT's own pass would otherwise remove ours for (open() serves
      // one of the two, always the same).
      withIndex(volume, [&](KeyIndex& index) {
        index.whileLocked([&] {
          reload::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
          if (!fd) return;
          ObjectMeta other;
          if (readTrailer(fd.get(), other) && other.key == key && other.timestamp >= writtenAt) return;
          unlinked = unlinkCopy(path);
        });
      });
      if (!unlinked) continue;
      fsyncDir(parentOf(path));
    } catch (const std::system_error& e) {
      // Reads take the newest copy, so the stale one is not served.
      MOLT_LOG(kError) << "an older copy of " << bucket << "/" << key << " stays on " << volume
                       << ": " << e.what();
      continue;
    }
    dropEntryIfGone(volume, bucket, key);
  }
}

std::shared_ptr<KeyIndex> ObjectStore::indexFor(const std::string& volume) const {
  std::shared_ptr<KeyIndex> index;
  {
    // Held only to find the volume's holder: opening or rebuilding its
    // index must not stop the tasks of other volumes.
    std::lock_guard<std::mutex> lock(indexMutex_);
    auto& slot = indexes_[volume];
    if (!slot) slot = std::make_shared<KeyIndex>(volume, KeyIndex::kDeferred);
    index = slot;
  }
  if (index->isOpen()) return index;
  try {
    if (rebuildPending(volume)) throw IndexDamaged(EIO, std::generic_category(), "a rebuild was cut short");
    index->openCurrent();
  } catch (const IndexDamaged& e) {
    rebuildIndex(volume, e.what(), *index, 0);
  }
  // A volume that never held an object has nothing to scan: every object
  // it will hold is indexed before it appears.
  struct stat st {};
  if (stat((volume + "/objects").c_str(), &st) != 0 && errno == ENOENT && !index->complete())
    index->markComplete();
  return index;
}

void ObjectStore::completeIndex(const std::string& volume, KeyIndex& index) {
  std::vector<std::pair<std::string, std::string>> entries;
  forEachObject(volume, "", [&](const std::string& bucket, const ObjectMeta& meta) {
    entries.emplace_back(bucket, meta.key);
  });
  index.addAll(entries);
  index.markComplete();
}

namespace {

constexpr char kRebuildMarker[] = "/index.rebuilding";

bool removeTreeAt(int parentFd, const std::string& name, int depth);

// Removes VOLUME/NAME (the damaged files of the last rebuild), following no
// link: one planted there is removed, never what it names.
void removeIndexDirectory(const std::string& volume, const std::string& name) {
  reload::Fd top(::open(volume.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!top) reload::throwSysError("open " + volume);
  if (!removeTreeAt(top.get(), name, 1)) reload::throwSysError("remove " + volume + "/" + name);
}

// Opens (creating) the file `path`, read-only, never through a link: one
// planted at the name is removed and the file made in its place.
reload::Fd openOwnFile(const std::string& path) {
  constexpr int kFlags = O_RDONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
  reload::Fd fd(::open(path.c_str(), kFlags, 0644));
  if (!fd && errno == ELOOP) {
    if (unlink(path.c_str()) != 0 && errno != ENOENT) reload::throwSysError("remove the link " + path);
    fd.reset(::open(path.c_str(), kFlags, 0644));
  }
  if (!fd) reload::throwSysError("open " + path);
  return fd;
}

}  // namespace

bool ObjectStore::rebuildPending(const std::string& volume) {
  return !fileAbsent(volume + kRebuildMarker);
}

void ObjectStore::rebuildIndex(const std::string& volume, const std::string& why, KeyIndex& index,
                               ino_t damagedInode) {
  // One process rebuilds; the others wait for it, then open what it built.
  // A flock needs no write access: the lock file may be another user's.
  std::string lockPath = volume + "/index.lock";
  reload::Fd lock = openOwnFile(lockPath);
  while (flock(lock.get(), LOCK_EX) != 0)
    if (errno != EINTR) reload::throwSysError("flock " + lockPath);
  std::string dir = volume + "/index";
  if (!rebuildPending(volume)) {
    struct stat st {};
    bool replaced = stat(dir.c_str(), &st) == 0 && st.st_ino != damagedInode;
    if (damagedInode == 0 || replaced) {
      try {
        index.openCurrent();
        return;
      } catch (const IndexDamaged&) {
        // still damaged: rebuilt below
      }
    }
  }
  std::string marker = volume + kRebuildMarker;
  {
    // Only its presence counts: one left by a root process that was cut
    // short opens read-only for anyone.
    reload::Fd fd = openOwnFile(marker);
  }
  fsyncDir(volume);
  // The damaged files stay beside the new index (the last one only), for
  // whoever wants to look at them.
  std::string aside = volume + "/index.damaged";
  // Names an older version's rebuild, cut short, may have left.
  removeStaleIndexTemps(volume);
  index.replaceFiles([&] {
    removeIndexDirectory(volume, "index.damaged");
    if (rename(dir.c_str(), aside.c_str()) != 0 && errno != ENOENT)
      reload::throwSysError("rename " + dir + " to " + aside);
  });
  // Other processes write to the new index from here on; the scan adds
  // what was placed before the move.
  try {
    completeIndex(volume, index);
    fsyncDir(volume);
  } catch (const std::system_error& e) {
    // The index at the path is the new one now, and it lacks its
    // completeness marker, which is what tells every process to fill it
    // from the files. The rebuild marker left in place would keep the
    // volume unwritable and make every process that opens the index move
    // it aside and start again.
    MOLT_LOG(kError) << "rebuild of the key index of " << volume << " failed after the damaged files moved aside ("
                     << e.what() << "); its new index is filled from the object files by the next listing";
    if (unlink(marker.c_str()) != 0 && errno != ENOENT)
      MOLT_LOG(kError) << "cannot remove " << marker << ": " << std::strerror(errno);
    throw;
  }
  if (unlink(marker.c_str()) != 0) reload::throwSysError("unlink " + marker);
  fsyncDir(volume);
  MOLT_LOG(kWarning) << "key index of " << volume << " was damaged (" << why
                     << "); rebuilt from the object files, the old one is in " << aside;
}

std::vector<std::string> ObjectStore::repairIndexes(const std::vector<Volume>& volumes) {
  std::vector<std::string> lines;
  for (const auto& v : volumes) {
    if (v.problem == "not a directory") continue;
    struct stat st {};
    if (stat((v.path + "/index").c_str(), &st) != 0 && !rebuildPending(v.path))
      continue;  // no index yet: built on the first listing
    try {
      auto index = std::make_shared<KeyIndex>(v.path, KeyIndex::kDeferred);
      std::vector<std::pair<std::string, std::string>> entries;
      try {
        if (rebuildPending(v.path)) throw IndexDamaged(EIO, std::generic_category(), "a rebuild was cut short");
        index->openCurrent();
        entries = index->allEntries();
      } catch (const IndexDamaged& e) {
        rebuildIndex(v.path, e.what(), *index, index->directoryInode());
        lines.push_back("key index of " + v.path + " was damaged (" + e.what() + "); rebuilt from its files");
        continue;
      }
      if (!index->complete()) continue;  // completed by a scan on the first listing
      // Files are named by the hash of their key: only files that no entry
      // names need to be opened.
      std::set<std::string> indexed;
      std::map<std::string, std::pair<std::string, std::string>> byPath;
      for (const auto& [bucket, key] : entries) byPath[objectRelativePath(bucket, key)] = {bucket, key};
      std::vector<std::pair<std::string, std::string>> missing;
      forEachObjectFile(v.path, [&](const std::string& rel) {
        auto it = byPath.find(rel);
        if (it != byPath.end()) {
          indexed.insert(rel);
          return;
        }
        reload::Fd fd(::open((v.path + "/" + rel).c_str(), O_RDONLY | O_CLOEXEC));
        ObjectMeta meta;
        std::string bucket = rel.substr(8, rel.find('/', 8) - 8);  // "objects/BUCKET/..."
        if (fd && readTrailer(fd.get(), meta) && objectRelativePath(bucket, meta.key) == rel)
          missing.emplace_back(bucket, meta.key);
      });
      size_t stale = 0;
      for (const auto& [rel, entry] : byPath) {
        if (indexed.count(rel)) continue;
        // Under the write lock, as a DELETE drops one: a worker of a previous
        // image may still be serving (a start after a failed exec).
        std::string path = v.path + "/" + rel;
        if (index->dropIfGone(entry.first, entry.second, [&] { return fileAbsent(path); })) ++stale;
      }
      if (!missing.empty()) index->addAll(missing);
      if (!missing.empty())
        lines.push_back("key index of " + v.path + " disagreed with its files: " +
                        std::to_string(missing.size()) + " objects were not indexed; repaired");
      // Left by a crash between an entry and its rename, or an unlink and
      // its entry's removal: expected, and harmless until dropped.
      if (stale > 0)
        lines.push_back("key index of " + v.path + ": dropped " + std::to_string(stale) +
                        " entries whose objects are gone");
    } catch (const std::system_error& e) {
      lines.push_back("cannot check the key index of " + v.path + ": " + e.what());
    }
  }
  return lines;
}

std::vector<ObjectMeta> ObjectStore::list(const std::string& bucket, const std::string& prefix,
                                          const std::string& marker, size_t limit) const {
  // Each volume's index gives its next keys in order; the merge takes them
  // in order across volumes and opens each object to read its metadata.
  // Volumes whose index cannot be used are scanned (the old, O(n) way).
  std::vector<Source> sources;
  std::map<std::string, ObjectMeta> scanned;
  auto scan = [&](const std::string& volume) {
    forEachObject(volume, bucket, [&](const std::string&, const ObjectMeta& meta) {
      if (meta.key <= marker || meta.key.compare(0, prefix.size(), prefix) != 0) return;
      auto it = scanned.find(meta.key);
      if (it == scanned.end() || it->second.timestamp < meta.timestamp) scanned[meta.key] = meta;
    });
  };
  for (const auto& v : volumes()) {
    if (v.problem == "not a directory") continue;
    std::shared_ptr<KeyIndex> index;
    try {
      withIndex(v.path, [&](KeyIndex& found) {
        if (!found.complete()) completeIndex(v.path, found);
      });
      index = indexFor(v.path);
    } catch (const std::system_error& e) {
      MOLT_LOG(kWarning) << "listing scans " << v.path << ": its key index cannot be used: " << e.what();
      index.reset();
    }
    if (index) sources.push_back({v.path, index});
    else scan(v.path);
  }
  // An index that fails mid-listing: that volume is scanned instead and
  // the merge starts again, so one bad index costs speed, never the answer.
  for (;;) {
    std::string failedVolume;
    auto out = merge(bucket, prefix, marker, limit, sources, scanned, failedVolume);
    if (failedVolume.empty()) return out;
    sources.erase(std::remove_if(sources.begin(), sources.end(),
                                 [&](const Source& s) { return s.volume == failedVolume; }),
                  sources.end());
    // The index is kept either way (reopened in place after a panic): a
    // second environment of its files beside the one other threads may
    // still use is what LMDB forbids.
    scan(failedVolume);
  }
}

std::vector<ObjectMeta> ObjectStore::merge(const std::string& bucket, const std::string& prefix,
                                           const std::string& marker, size_t limit,
                                           const std::vector<Source>& sources,
                                           const std::map<std::string, ObjectMeta>& scanned,
                                           std::string& failedVolume) const {
  std::vector<ObjectMeta> out;
  std::string after = marker;
  while (out.size() < limit) {
    // The next batch: what each index holds after `after`, and the scanned
    // keys. A source that filled its share may hold more keys than it gave,
    // so only keys up to its last one are certain to come in order.
    size_t want = limit - out.size();
    std::map<std::string, std::vector<const Source*>> batch;
    std::optional<std::string> certainUpTo;
    auto bound = [&](const std::string& last) {
      if (!certainUpTo || last < *certainUpTo) certainUpTo = last;
    };
    for (const auto& source : sources) {
      std::vector<std::string> keys;
      try {
        auto complete = source.index->keysAfterIfComplete(bucket, after, prefix, want);
        if (!complete) {
          // Followed to another process's rebuild, whose scan still runs.
          MOLT_LOG(kInfo) << "key index of " << source.volume
                          << " is not complete (a rebuild is filling it); the listing scans the volume";
          failedVolume = source.volume;
          return {};
        }
        keys = std::move(*complete);
      } catch (const IndexPanicked& e) {
        MOLT_LOG(kWarning) << "listing scans " << source.volume
                           << ": its key index must be reopened: " << e.what();
        reopenIndex(source.volume, *source.index);
        failedVolume = source.volume;
        return {};
      } catch (const std::system_error& e) {
        MOLT_LOG(kWarning) << "listing scans " << source.volume
                           << ": reading its key index failed: " << e.what();
        failedVolume = source.volume;
        return {};
      }
      if (keys.size() == want) bound(keys.back());
      for (auto& key : keys) batch[std::move(key)].push_back(&source);
    }
    size_t taken = 0;
    for (auto it = scanned.upper_bound(after); it != scanned.end(); ++it) {
      if (taken++ == want) {
        bound(std::prev(it)->first);
        break;
      }
      batch[it->first];
    }
    if (batch.empty()) break;
    for (auto& [key, holders] : batch) {
      if (out.size() >= limit || (certainUpTo && key > *certainUpTo)) break;
      after = key;
      if (auto obj = open(bucket, key)) {
        out.push_back(std::move(obj->meta));
        continue;
      }
      auto it = scanned.find(key);
      if (it != scanned.end()) out.push_back(it->second);
      // Its object is gone from the holder, or was when open() looked: the
      // entry goes only if the file is still absent under the write lock
      // (a PUT renaming it into place holds that lock).
      for (const auto* holder : holders) dropEntryIfGone(holder->volume, bucket, key);
    }
    if (!certainUpTo) break;  // every source gave all it had
  }
  std::sort(out.begin(), out.end(), [](const ObjectMeta& a, const ObjectMeta& b) { return a.key < b.key; });
  if (out.size() > limit) out.resize(limit);
  return out;
}

namespace {

// Calls `fn` with the relative path (objects/BUCKET/HH/NAME.obj) of every
// object file on `volume` (of one bucket, unless `onlyBucket` is empty).
void forEachObjectPath(const std::string& volume, const std::string& onlyBucket,
                       const std::function<void(const std::string&, const std::string&)>& fn) {
  std::string objects = volume + "/objects";
  DIR* buckets = opendir(objects.c_str());
  if (!buckets) return;
  while (dirent* b = readdir(buckets)) {
    std::string bucket = b->d_name;
    if (bucket[0] == '.' || (!onlyBucket.empty() && bucket != onlyBucket)) continue;
    std::string bucketDir = objects + "/" + bucket;
    DIR* top = opendir(bucketDir.c_str());
    if (!top) continue;
    while (dirent* sub = readdir(top)) {
      if (sub->d_name[0] == '.') continue;
      std::string subDir = bucketDir + "/" + sub->d_name;
      DIR* inner = opendir(subDir.c_str());
      if (!inner) continue;
      while (dirent* entry = readdir(inner)) {
        std::string name = entry->d_name;
        if (name.size() < 4 || name.compare(name.size() - 4, 4, ".obj") != 0) continue;
        fn(bucket, "objects/" + bucket + "/" + sub->d_name + "/" + name);
      }
      closedir(inner);
    }
    closedir(top);
  }
  closedir(buckets);
}

}  // namespace

void ObjectStore::forEachObjectFile(const std::string& volume,
                                    const std::function<void(const std::string&)>& fn) {
  forEachObjectPath(volume, "", [&](const std::string&, const std::string& rel) { fn(rel); });
}

void ObjectStore::forEachObject(const std::string& volume, const std::string& onlyBucket,
                                const std::function<void(const std::string&, const ObjectMeta&)>& fn) {
  forEachObjectPath(volume, onlyBucket, [&](const std::string& bucket, const std::string& rel) {
    reload::Fd fd(::open((volume + "/" + rel).c_str(), O_RDONLY | O_CLOEXEC));
    ObjectMeta meta;
    if (!fd || !readTrailer(fd.get(), meta)) return;
    fn(bucket, meta);
  });
}

size_t ObjectStore::removeTempFiles(const std::vector<Volume>& volumes) {
  // The grace holds at start too: workers of an earlier generation may
  // still serve (a start after an exec, failed or not), and a file they
  // have just created is not locked yet.
  const int grace = kTempGraceSeconds;
  size_t removed = 0;
  const time_t now = time(nullptr);
  for (const auto& v : volumes) {
    if (v.problem == "not a directory") continue;
    // Relative to descriptors, following no link: VOLUME/tmp made a link
    // would otherwise have the cleaner unlink files of another directory.
    reload::Fd volume(::open(v.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!volume) continue;
    int tmp = ::openat(volume.get(), "tmp", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (tmp < 0) continue;
    DIR* d = fdopendir(tmp);
    if (!d) {
      ::close(tmp);
      continue;
    }
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name.size() <= 4 || name.compare(name.size() - 4, 4, ".tmp") != 0) continue;
      // In use while its writer holds its lock; a file younger than the
      // grace may be between its creation and that lock.
      reload::Fd fd(::openat(dirfd(d), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
      struct stat st {};
      if (!fd || fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      if (now - st.st_mtime < grace) continue;
      if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) continue;
      if (unlinkat(dirfd(d), name.c_str(), 0) == 0) ++removed;
    }
    closedir(d);
  }
  return removed;
}

namespace {

// Removes `name` in the directory `parentFd`, a directory with all it holds
// (at most `depth` levels), following no link: a link is removed, never
// what it names. Returns whether the name is gone.
bool removeTreeAt(int parentFd, const std::string& name, int depth) {
  struct stat st {};
  if (fstatat(parentFd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT;
  if (!S_ISDIR(st.st_mode)) return unlinkat(parentFd, name.c_str(), 0) == 0 || errno == ENOENT;
  if (depth == 0) return false;
  // A directory swapped for a link since the look above fails to open here.
  int fd = ::openat(parentFd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return false;
  DIR* d = fdopendir(fd);
  if (!d) {
    ::close(fd);
    return false;
  }
  std::vector<std::string> names;
  while (dirent* e = readdir(d))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
  bool emptied = true;
  for (const auto& inner : names) emptied = removeTreeAt(dirfd(d), inner, depth - 1) && emptied;
  closedir(d);
  return emptied && (unlinkat(parentFd, name.c_str(), AT_REMOVEDIR) == 0 || errno == ENOENT);
}

// Whether `name` is `prefix` followed by `tailSize` characters of `alphabet`
// (any number of them when `tailSize` is 0).
bool namedLike(const std::string& name, const std::string& prefix, size_t tailSize, const char* alphabet) {
  if (name.compare(0, prefix.size(), prefix) != 0 || name.size() == prefix.size()) return false;
  std::string tail = name.substr(prefix.size());
  if (tailSize != 0 && tail.size() != tailSize) return false;
  return tail.find_first_not_of(alphabet) == std::string::npos;
}

constexpr char kMkdtempAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

// The names old enough to go of `dirFd` that `isTemp` takes.
std::vector<std::string> staleNames(int dirFd, const std::function<bool(const std::string&)>& isTemp) {
  std::vector<std::string> out;
  int fd = ::openat(dirFd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return out;
  DIR* d = fdopendir(fd);
  if (!d) {
    ::close(fd);
    return out;
  }
  const time_t now = time(nullptr);
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    struct stat st {};
    if (!isTemp(name) || fstatat(dirFd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (now - st.st_mtime >= ObjectStore::kTempGraceSeconds) out.push_back(name);
  }
  closedir(d);
  return out;
}

}  // namespace

size_t ObjectStore::removeStaleIndexTemps(const std::string& volume) {
  size_t removed = 0;
  reload::Fd top(::open(volume.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!top) return 0;
  // VOLUME/index.new.XXXXXX: a directory made by mkdtemp, to be renamed
  // to VOLUME/index.
  auto newIndex = [](const std::string& name) { return namedLike(name, "index.new.", 6, kMkdtempAlphabet); };
  for (const auto& name : staleNames(top.get(), newIndex))
    if (removeTreeAt(top.get(), name, 4)) ++removed;
  // VOLUME/index/{lock,data}.mdb.new.PID: a file made to be linked into place.
  reload::Fd index(::openat(top.get(), "index", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!index) return removed;
  auto newFile = [](const std::string& name) {
    return namedLike(name, "lock.mdb.new.", 0, "0123456789") || namedLike(name, "data.mdb.new.", 0, "0123456789");
  };
  for (const auto& name : staleNames(index.get(), newFile))
    if (removeTreeAt(index.get(), name, 4)) ++removed;
  return removed;
}

std::vector<std::string> ObjectStore::removePlantedLinks(const std::string& volume) {
  std::vector<std::string> lines;
  reload::Fd top(::open(volume.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!top) return lines;
  auto removeLink = [&](int dirFd, const std::string& shown, const char* name) {
    struct stat st {};
    if (fstatat(dirFd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISLNK(st.st_mode)) return;
    if (unlinkat(dirFd, name, 0) == 0)
      lines.push_back("removed the symbolic link " + shown + name + " (the key index's own name)");
    else
      lines.push_back("cannot remove the symbolic link " + shown + name + ": " + std::strerror(errno));
  };
  for (const char* name : {"index", "index.damaged", "index.lock", "index.rebuilding"})
    removeLink(top.get(), volume + "/", name);
  for (const char* dir : {"index", "index.damaged"}) {
    reload::Fd inner(::openat(top.get(), dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!inner) continue;
    for (const char* name : {"data.mdb", "lock.mdb"}) removeLink(inner.get(), volume + "/" + dir + "/", name);
  }
  return lines;
}

std::vector<std::string> ObjectStore::adoptRootIndex(const std::string& volume, uid_t uid, gid_t gid) {
  std::vector<std::string> lines;
  reload::Fd top(::open(volume.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!top) return lines;
  for (const char* name : {"index", "index.damaged"}) {
    reload::Fd dir(::openat(top.get(), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st {};
    if (!dir || fstat(dir.get(), &st) != 0) continue;
    // Only root can have put a name in a directory of root's that no group
    // or other may write: what is found there is root's own index, not a
    // link or a file someone else planted.
    if (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) continue;
    for (const char* file : {"data.mdb", "lock.mdb"}) {
      // O_PATH: nothing is opened for reading or writing; a link is taken
      // as the link.
      reload::Fd found(::openat(dir.get(), file, O_PATH | O_NOFOLLOW | O_CLOEXEC));
      struct stat fst {};
      if (!found || fstat(found.get(), &fst) != 0) continue;
      if (!S_ISREG(fst.st_mode) || fst.st_uid != 0 || fst.st_nlink != 1) continue;
      if (fchownat(found.get(), "", uid, gid, AT_EMPTY_PATH) != 0)
        reload::throwSysError("chown " + volume + "/" + name + "/" + file);
    }
    // Last: once the directory is the workers' user's, they may change
    // what it holds.
    if (fchown(dir.get(), uid, gid) != 0) reload::throwSysError("chown " + volume + "/" + name);
    lines.push_back("key index files of " + volume + "/" + name + " were root's; given to uid " +
                    std::to_string(uid));
  }
  return lines;
}

}  // namespace server
