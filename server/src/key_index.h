// An ordered index of the keys stored on one volume, so that a listing
// reads only the keys it returns. It lives in VOLUME/index as an LMDB
// environment (multi-process, crash-safe). The object files stay the truth.
//
// The rule that keeps the two in step, across crashes and across workers:
// every object file on the volume has its entry, durably, at every moment.
// An entry may outlive its file (the listing skips it), never the reverse.
// - A PUT commits the entry, then renames the object into place while it
//   holds the index's write lock and sees the entry there (placeIndexed).
// - A DELETE unlinks the file and syncs its directory, then drops the entry
//   only if, under the write lock, the file is still absent (dropIfGone).
// Both steps hold the one LMDB writer lock, which every process of the
// volume shares, so no interleaving of PUTs, DELETEs and listings in any
// number of workers can leave a file without its entry.
//
// An index found damaged is moved aside and rebuilt by one process while
// the others still hold the old files open. So every use checks, the
// writes under the write lock, that the environment it holds is the one at
// VOLUME/index (device and inode of data.mdb); one that was replaced is
// closed and the index opened again in place, and the use runs there. The
// rebuilder moves the files aside while it holds the old environment's
// write lock, and a PUT that placed its object while the files moved (a
// rebuilder that could not take that lock) adds its entry to the new index
// too: no entry lands only in files a rebuild has already read. An open
// that straddles a rebuild's move (LMDB opens lock.mdb, then data.mdb, by
// path) is done again: the lock file and the data file held always come
// from one directory.
//
// LMDB keys hold at most 511 bytes and object keys 1024: an entry whose
// key is longer than kEntryKeyPrefix bytes is stored as that prefix plus a
// hash, with the full key as its value. Such entries sort among the short
// ones exactly as their keys do; those sharing one prefix sort among
// themselves by hash, and keysAfter reads each such group whole and orders
// it by the full keys.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <system_error>
#include <vector>

struct MDB_env;

namespace server {

// The index's files are damaged (LMDB reports corruption or an invalid
// file): the index must be rebuilt from the object files.
class IndexDamaged : public std::system_error {
 public:
  using std::system_error::system_error;
};

// LMDB stopped this process's environment of the index after a write it
// could not finish (MDB_PANIC: a failed meta-page write, a full disk); the
// files are sound, the environment must be closed and opened again.
class IndexPanicked : public std::system_error {
 public:
  using std::system_error::system_error;
};

class KeyIndex {
 public:
  static constexpr size_t kEntryKeyPrefix = 400;

  // Opens (creating if needed) the index of `volume`. Throws IndexDamaged
  // when its files are not a sound index, std::system_error otherwise.
  explicit KeyIndex(const std::string& volume);
  // Opens nothing yet: openCurrent() does (a holder that is cheap to make
  // under a lock).
  enum Deferred { kDeferred };
  KeyIndex(const std::string& volume, Deferred);
  ~KeyIndex();
  KeyIndex(const KeyIndex&) = delete;
  KeyIndex& operator=(const KeyIndex&) = delete;

  // Durable when they return (LMDB commits with fsync). Throw std::system_error.
  void add(const std::string& bucket, const std::string& key);
  // Makes the entry durable, then runs `place` (the rename that makes the
  // object visible) under the write lock while the entry is there, so that
  // no dropIfGone can take the entry away between the two.
  void placeIndexed(const std::string& bucket, const std::string& key,
                    const std::function<void()>& place);
  // placeIndexed for many entries at once (a group commit): one durable
  // transaction adds those missing, and `place(i)` runs for entry i under
  // the write lock while it is there. `place` must not throw (it keeps its
  // own failure); each entry is placed once.
  void placeAllIndexed(const std::vector<std::pair<std::string, std::string>>& entries,
                       const std::function<void(size_t)>& place);
  // Drops the entry if `gone()`, asked under the write lock, says that the
  // key's file is absent. Returns whether it dropped it.
  bool dropIfGone(const std::string& bucket, const std::string& key,
                  const std::function<bool()>& gone);
  // Runs `fn` under the write lock (with no change to the index).
  void whileLocked(const std::function<void()>& fn);
  // Unconditional; only where no other process writes (tests, start-up repair).
  void remove(const std::string& bucket, const std::string& key);
  // Many (bucket, key) entries in one transaction (building the index).
  void addAll(const std::vector<std::pair<std::string, std::string>>& entries);

  // Keys of `bucket` after `marker` that start with `prefix`, in order, at
  // most `limit`.
  std::vector<std::string> keysAfter(const std::string& bucket, const std::string& marker,
                                     const std::string& prefix, size_t limit) const;
  // keysAfter for a listing: nullopt unless the index read is complete in
  // the same transaction. One that follows another process's rebuild may
  // land in a new index whose scan of the object files is not done, and
  // its keys are not yet the volume's.
  std::optional<std::vector<std::string>> keysAfterIfComplete(const std::string& bucket,
                                                              const std::string& marker,
                                                              const std::string& prefix,
                                                              size_t limit) const;

  // Every (bucket, key) entry, reading every page of the index: throws
  // IndexDamaged when a page is damaged.
  std::vector<std::pair<std::string, std::string>> allEntries() const;

  // Whether every object the volume held before the index existed is in it.
  bool complete() const;
  void markComplete();

  // After IndexPanicked: closes the environment and opens the index's files
  // again, unless another thread did so already. In place, never beside a
  // second environment of the same files, which LMDB forbids in one process
  // (closing either drops the other's locks). Throws std::system_error.
  void reopen();

  // Opens the index at VOLUME/index in place unless the environment held is
  // already that one. Throws IndexDamaged or std::system_error.
  void openCurrent();
  bool isOpen() const;

  // Moves the damaged files aside (`moveAside`, e.g. a rename of
  // VOLUME/index) while this environment's write lock is held (when the
  // damage allows a write transaction), then opens a new, empty index in
  // place: no commit of any process reaches the old files after they moved.
  // The files are opened by path, as LMDB does, following links: run it
  // only with the credentials of whoever may write to the volume (see
  // volume_check.h), never as root for a volume another user can write.
  void replaceFiles(const std::function<void()>& moveAside);

  // The inode of the index's directory: a rebuilt index has another.
  ino_t directoryInode() const;

 private:
  struct Environment {
    MDB_env* env = nullptr;
    unsigned dbi = 0;
    ino_t directoryInode = 0;
    dev_t dataDevice = 0;
    ino_t dataInode = 0;
  };
  static Environment openFiles(const std::string& volume);
  void openEnvironment();
  void closeEnvironment();
  // Whether the environment held is the index at VOLUME/index. Throws
  // std::system_error when that cannot be told.
  bool holdsCurrentFiles() const;
  // Runs `body(txn)` in a transaction of the current index: one that finds
  // the files replaced opens them again in place and runs there.
  template <typename Body>
  auto inTransaction(bool write, Body&& body) const;
  // Closes the environment held and opens VOLUME/index, unless the one held
  // is that one (another thread did it). Takes envMutex_ exclusively.
  void followReplaced() const;

  const std::string volume_;
  // Shared by every use of env_, exclusive while reopen() replaces it.
  mutable std::shared_mutex envMutex_;
  mutable Environment current_;
};

}  // namespace server
