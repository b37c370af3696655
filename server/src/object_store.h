// Objects on directory volumes.
//
// An object is one file: its bytes, then its metadata, then a 16-byte
// trailer ("MOLTMETA" and the metadata length in hex). Data and metadata are
// therefore replaced together by one rename(), and a reader never sees a
// partial object. Files live at VOLUME/objects/BUCKET/HH/MD5(KEY).obj and are
// written under VOLUME/tmp first.
//
// Placement is rendezvous hashing over the writable volumes; reads try the
// preferred volume first and then every other one, so adding a volume never
// hides an object. Thread-safe.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "group_commit.h"
#include "key_index.h"
#include "reload/fd.h"

namespace server {

struct StorageSettings {
  std::vector<std::string> volumes;
  std::string volumeGlob;
  double volumeScanInterval = 10;
  uint64_t minFreeBytes = 0;
  uint64_t maxObjectSize = 5ULL << 30;
  std::string readOnlyFile;
  double readOnlyCheckInterval = 5;
};

struct Volume {
  std::string path;
  bool writable = false;
  uint64_t freeBytes = 0;
  uint64_t totalBytes = 0;
  std::string problem;  // why it is not writable
};

struct ObjectMeta {
  std::string key;
  uint64_t size = 0;
  std::string etag;  // MD5 hex, unquoted
  std::string contentType = "application/octet-stream";
  double timestamp = 0;  // epoch seconds
  std::vector<std::pair<std::string, std::string>> userMeta;  // X-Object-Meta-* (name without prefix)
};

// A failure with the HTTP status it should be answered with.
class StoreError : public std::runtime_error {
 public:
  StoreError(int status, const std::string& what) : std::runtime_error(what), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

struct OpenObject {
  reload::Fd fd;
  ObjectMeta meta;
  std::string volume;
  std::string data;         // the object's bytes, when dataLoaded
  bool dataLoaded = false;  // read along with the metadata (small objects)
};

uint64_t rendezvousScore(const std::string& volume, const std::string& bucket,
                         const std::string& key);

// Volumes from a fixed list plus a glob, each checked for existence,
// writability, a read-only mount and min_free_bytes.
std::vector<Volume> scanVolumes(const StorageSettings& settings);
// The paths scanVolumes checks (the list, then the glob's matches, once each).
std::vector<std::string> volumePaths(const StorageSettings& settings);
// One volume of scanVolumes.
Volume scanVolume(const std::string& path, const StorageSettings& settings);

// One line per volume added, removed, or newly (un)writable, for the log.
std::vector<std::string> volumeChanges(const std::vector<Volume>& before,
                                       const std::vector<Volume>& after);

// "bucket/key" file name inside a volume.
std::string objectRelativePath(const std::string& bucket, const std::string& key);

// The most an object's encoded metadata may take; a PUT with more gets 400.
constexpr size_t kMaxEncodedMetaBytes = 64 * 1024;
std::string encodeMeta(const ObjectMeta& meta);
ObjectMeta decodeMeta(const std::string& text);  // throws std::invalid_argument

class ObjectStore;

// An upload in progress: a temp file on the chosen volume. Owned by a
// shared_ptr (beginUpload's): a commit that ends on another thread keeps
// the Upload alive until it has ended, whoever else lets go of it meanwhile.
class Upload : public std::enable_shared_from_this<Upload> {
 public:
  Upload(ObjectStore& store, std::string volume, std::string bucket, std::string key,
         std::string tmpPath, reload::Fd fd);
  ~Upload();  // removes the temp file unless committed
  Upload(const Upload&) = delete;
  Upload& operator=(const Upload&) = delete;
  // Throws StoreError (507 when the disk is full).
  void write(const char* data, size_t size);
  // Writes the metadata, makes the file durable, renames it into place and
  // makes the rename durable; then removes copies of the key on other
  // volumes. Throws StoreError. Concurrent commits to one volume share the
  // syncs and the index transaction (a group commit); each returns only
  // once its own object and entry are durable.
  void commit(const ObjectMeta& meta);
  // commit() without the wait: writes the metadata and starts its writeback
  // here (throws StoreError), then hands the placement to the volume's group commit and
  // returns. `placed` runs once, on the thread that leads the batch (maybe
  // this one), when the object and its entry are durable, or with the
  // failure (a StoreError); it must not throw nor wait on a disk. The
  // placement holds the Upload (it must be owned by a shared_ptr) until
  // that call has returned, so the caller may let go of it at any time.
  // removeOlderCopies() is left to the caller.
  // `lastBytes`, the end of the body not written yet, is written with the
  // metadata.
  void commitAsync(const ObjectMeta& meta, std::string_view lastBytes,
                   std::function<void(std::exception_ptr)> placed);
  // Removes copies of the key on other volumes older than `meta`'s; after a
  // commitAsync that succeeded. Blocks on those volumes.
  void removeOlderCopies(const ObjectMeta& meta);
  // Whether another volume is known where such copies could be (no disk
  // access): without one, removeOlderCopies() has nothing to do.
  bool othersMayHoldCopies() const;
  const std::string& volume() const { return volume_; }
  // Renamed into place: its destructor has no file to remove. Read it once
  // the commit's end was handed over (it is set on the batch's thread).
  bool committed() const { return committed_; }

 private:
  // commitAsync(), the placement holding `owner` (empty for commit(),
  // which waits for the end itself).
  void handIn(const ObjectMeta& meta, std::string_view lastBytes, std::shared_ptr<Upload> owner,
              std::function<void(std::exception_ptr)> placed);
  StoreError storeFailure(const std::system_error& e) const;  // logged; the client's words

  ObjectStore& store_;
  std::string volume_, bucket_, key_, tmpPath_;
  reload::Fd fd_;
  bool committed_ = false;
};

class ObjectStore {
 public:
  explicit ObjectStore(StorageSettings settings);

  const StorageSettings& settings() const { return settings_; }
  // Re-reads the volume list; returns one line per change, for the log.
  std::vector<std::string> rescan();
  std::vector<Volume> volumes() const;
  // Counts the rescans that changed the volume list (one atomic load): a
  // reader that keeps what it read knows when the volumes it read moved.
  uint64_t volumeListVersion() const { return volumeListVersion_.load(std::memory_order_acquire); }

  // Throws StoreError (507 when no volume can take writes, or when the
  // announced size, if not 0, cannot fit on the chosen volume).
  std::shared_ptr<Upload> beginUpload(const std::string& bucket, const std::string& key,
                                      uint64_t announcedSize = 0);
  std::optional<OpenObject> open(const std::string& bucket, const std::string& key) const;
  // Like open(), without waiting for the disk: only lookups the kernel has
  // cached (openat2 RESOLVE_CACHED) and reads from the page cache
  // (RWF_NOWAIT). kWouldBlock: call open() where blocking is allowed.
  enum class Attempt { kFound, kMissing, kWouldBlock };
  // With `loadSmallData`, an object file of at most kWholeReadLimit bytes
  // is read whole, its data kept in OpenObject::data.
  Attempt tryOpenCached(const std::string& bucket, const std::string& key,
                        std::optional<OpenObject>& found, bool loadSmallData = false) const;
  static constexpr uint64_t kWholeReadLimit = 64 * 1024;
  // Returns whether anything was removed.
  bool remove(const std::string& bucket, const std::string& key);
  // Sorted by key; keys > marker that start with prefix, at most limit.
  // Walks the volumes' key indexes from the marker and opens only the
  // objects it returns (an index entry whose object is gone is dropped).
  std::vector<ObjectMeta> list(const std::string& bucket, const std::string& prefix,
                               const std::string& marker, size_t limit) const;

  // Removes leftovers of uploads cut short by a crash: temp files no
  // process holds the lock of and older than kTempGraceSeconds (a new file
  // is locked just after its creation). Younger ones wait for a later check.
  static size_t removeTempFiles(const std::vector<Volume>& volumes);
  static constexpr int kTempGraceSeconds = 5;
  // Removes what a rebuild of an earlier version, cut short, may leave for
  // ever: VOLUME/index.new.XXXXXX directories and
  // VOLUME/index/{lock,data}.mdb.new.PID files older than
  // kTempGraceSeconds, relative to directory descriptors and following no
  // link (one planted under such a name is removed, never what it names).
  // Returns how many names it removed.
  static size_t removeStaleIndexTemps(const std::string& volume);
  // Removes a symbolic link found at one of the key index's names
  // (VOLUME/index, index.damaged, index.lock, index.rebuilding, and
  // data.mdb and lock.mdb in both directories), relative to directory
  // descriptors: the index is the volume's own files, and LMDB would follow
  // such a link. Returns one line per link, for the log.
  static std::vector<std::string> removePlantedLinks(const std::string& volume);
  // For a root process, before the volume work it does as the workers'
  // user: gives VOLUME/index and VOLUME/index.damaged, and their data.mdb and
  // lock.mdb, to `uid`:`gid` when they are root's own (a directory of
  // root's that no group or other may write, regular files of root's with
  // one link), as a root worker of an earlier setup left them. Everything
  // is looked up relative to descriptors, no link followed, and changed
  // through descriptors. Returns one line per directory given, for the log.
  static std::vector<std::string> adoptRootIndex(const std::string& volume, uid_t uid, gid_t gid);

  // Checks each volume's key index against its files and repairs what
  // disagrees: a damaged index is rebuilt, a file without its entry gets
  // it, an entry without its file is dropped (under the write lock, as a
  // DELETE does). Meant for the start; returns one line per repair, for the log.
  // Like every use of a volume here, it opens files by path and follows
  // links (LMDB does): a root process runs it only with the credentials of
  // the workers' user (see volume_check.h).
  static std::vector<std::string> repairIndexes(const std::vector<Volume>& volumes);
  // Whether a rebuild of the volume's index is under way (or was cut short).
  static bool rebuildPending(const std::string& volume);

 private:
  friend class Upload;
  struct Source {  // a volume whose key index a listing reads
    std::string volume;
    std::shared_ptr<KeyIndex> index;
  };
  // One merge of the sources' keys and the scanned objects; names the
  // first source whose index fails in `failedVolume` and returns nothing
  // (an index that panicked is reopened in place first).
  std::vector<ObjectMeta> merge(const std::string& bucket, const std::string& prefix,
                                const std::string& marker, size_t limit,
                                const std::vector<Source>& sources,
                                const std::map<std::string, ObjectMeta>& scanned,
                                std::string& failedVolume) const;
  std::vector<std::string> readOrder(const std::string& bucket, const std::string& key) const;
  // Removes the copies on other volumes that are older than `writtenAt`
  // (one as old stays: its own commit does the same for ours).
  void removeOtherCopies(const std::string& keepVolume, const std::string& bucket,
                         const std::string& key, double writtenAt);
  // Drops the entry of a key whose file is absent from `volume` (checked
  // under the index's write lock). Failures are logged: a stale entry is harmless.
  void dropEntryIfGone(const std::string& volume, const std::string& bucket,
                       const std::string& key) const;
  // Runs `fn` on the volume's index; an index found damaged is rebuilt
  // (or reopened), one whose environment panicked is reopened in place, and
  // `fn` tried once more.
  void withIndex(const std::string& volume, const std::function<void(KeyIndex&)>& fn) const;
  // KeyIndex::reopen, its failure logged (the next use tries again).
  void reopenIndex(const std::string& volume, KeyIndex& index) const;
  // Calls `fn` for every readable object on `volume` (of one bucket, unless
  // `onlyBucket` is empty).
  // Calls `fn` with the relative path of every object file on `volume`.
  static void forEachObjectFile(const std::string& volume,
                                const std::function<void(const std::string&)>& fn);
  static void forEachObject(const std::string& volume, const std::string& onlyBucket,
                            const std::function<void(const std::string&, const ObjectMeta&)>& fn);
  // The key index of a volume, opened on first use (one KeyIndex per
  // volume for the store's life: reopened and rebuilt in place, never
  // beside another of the same files). Throws std::system_error.
  std::shared_ptr<KeyIndex> indexFor(const std::string& volume) const;
  // Builds the index of a volume that holds objects from before it.
  static void completeIndex(const std::string& volume, KeyIndex& index);
  // Replaces a damaged index with one built from the files, in `index`
  // (the volume's KeyIndex of this process), unless another process did so
  // already (then `index` opens that one). Leaves VOLUME/index.rebuilding
  // while it runs, which marks the volume unhealthy (scanVolumes).
  static void rebuildIndex(const std::string& volume, const std::string& why, KeyIndex& index,
                           ino_t damagedInode);

  struct VolumeFilesystem;
  // One upload's last step, shared with the PUTs ready at the same moment
  // on its volume (see placeBatch).
  struct Placement : GroupCommitItem {
    std::string bucket, key, tmpPath, finalPath, dir;
    bool placed = false;  // renamed into place (its entry durable before)
    // Its place in the order the volume's files were handed in, each once
    // its bytes were written: a sync begun after it makes the file durable.
    uint64_t handedIn = 0;
  };
  // Hands the upload to the volume's group commit; `ended` runs when it is
  // in place and durable (its file synced, its entry committed, the rename
  // done and synced) or carries its error (a std::system_error).
  void placeAsync(const std::string& volume, Placement& placement, std::function<void()> ended);
  // One group commit of a volume: one syncfs() makes every file durable,
  // one index transaction adds every entry, the renames run under its
  // write lock (a missing directory is made there), then one more syncfs()
  // makes the renames and directories durable. That last sync also makes
  // durable every file handed in before it began: those need no first sync
  // in the next batch, which takes them alone and puts the others off by
  // one batch, made durable by its own last sync. So under load each batch
  // costs one sync, not two. A failed first sync fails the batch, nothing
  // placed; an item whose step failed carries its error; items placed
  // before an index failure are still synced and succeed.
  // `filesystem` is the volume's descriptor for syncfs(), kept for the
  // store's life (see VolumeFilesystem in the source).
  void placeBatch(const std::string& volume, VolumeFilesystem& filesystem,
                  std::vector<Placement*>& batch) const;
  StorageSettings settings_;
  mutable std::mutex commitMutex_;
  struct VolumeCommit {
    std::shared_ptr<VolumeFilesystem> filesystem;
    std::unique_ptr<GroupCommit<Placement>> group;
  };
  std::map<std::string, VolumeCommit> commits_;
  mutable std::mutex mutex_;
  std::vector<Volume> volumes_;
  std::atomic<uint64_t> volumeListVersion_{0};
  mutable std::mutex indexMutex_;
  mutable std::map<std::string, std::shared_ptr<KeyIndex>> indexes_;
};

}  // namespace server
