#include "key_index.h"

#include <fcntl.h>
#include <lmdb.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string_view>

#include "md5.h"
#include "reload/fd.h"
#include "reload/log.h"
#include "reload/sys_error.h"

namespace server {
namespace {

constexpr char kCompleteMarker[] = "\x01index-complete";  // no bucket name starts with \x01
constexpr size_t kMapSize = size_t{64} << 30;           // address space only; the file grows as used
constexpr size_t kHashBytes = 16;                       // MD5 of a long key
constexpr size_t kLongEntryKey = KeyIndex::kEntryKeyPrefix + kHashBytes;

bool damage(int rc) {
  return rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID ||
         rc == MDB_VERSION_MISMATCH;
}

[[noreturn]] void fail(int rc, const std::string& what) {
  // LMDB returns errno values for system errors and its own codes otherwise.
  if (rc > 0) throw std::system_error(rc, std::generic_category(), what);
  if (damage(rc))
    throw IndexDamaged(EIO, std::generic_category(), what + ": " + mdb_strerror(rc));
  if (rc == MDB_PANIC)
    throw IndexPanicked(EIO, std::generic_category(), what + ": " + mdb_strerror(rc));
  throw std::system_error(EIO, std::generic_category(), what + ": " + mdb_strerror(rc));
}

void check(int rc, const std::string& what) {
  if (rc != MDB_SUCCESS) fail(rc, what);
}

std::string head(const std::string& bucket) {
  std::string e = bucket;
  e += '\0';
  return e;
}

// The LMDB key of an entry: the key itself, or for a long key its first
// kEntryKeyPrefix bytes and its hash. Only a long key gives an entry of
// kLongEntryKey bytes after the bucket: short keys have at most
// kEntryKeyPrefix.
std::string entry(const std::string& bucket, const std::string& key) {
  std::string e = head(bucket);
  if (key.size() <= KeyIndex::kEntryKeyPrefix) return e + key;
  Md5 md5;
  md5.update(key);
  const auto digest = md5.digest();
  e.append(key, 0, KeyIndex::kEntryKeyPrefix);
  e.append(digest.begin(), digest.end());
  return e;
}

bool isLong(std::string_view rest) { return rest.size() == kLongEntryKey; }

MDB_val value(const std::string& s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

std::string_view view(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

// The value stored with an entry: nothing, or the whole of a long key.
std::string entryValue(const std::string& key) {
  return key.size() <= KeyIndex::kEntryKeyPrefix ? std::string() : key;
}

class Txn {
 public:
  Txn(MDB_env* env, bool write) {
    unsigned flags = write ? 0 : MDB_RDONLY;
    int rc = mdb_txn_begin(env, nullptr, flags, &txn_);
    if (rc == MDB_READERS_FULL) {
      // Slots of readers that died (a SIGKILLed worker) are held until
      // someone clears them.
      int dead = 0;
      check(mdb_reader_check(env, &dead), "clear stale readers of the key index");
      rc = mdb_txn_begin(env, nullptr, flags, &txn_);
    }
    check(rc, "mdb_txn_begin");
  }
  ~Txn() {
    if (txn_) mdb_txn_abort(txn_);
  }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  void commit() {
    int rc = mdb_txn_commit(txn_);
    txn_ = nullptr;
    check(rc, "mdb_txn_commit");
  }
  MDB_txn* get() const { return txn_; }

 private:
  MDB_txn* txn_ = nullptr;
};

class Cursor {
 public:
  Cursor(MDB_txn* txn, MDB_dbi dbi) { check(mdb_cursor_open(txn, dbi, &cursor_), "mdb_cursor_open"); }
  ~Cursor() { mdb_cursor_close(cursor_); }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  MDB_cursor* get() const { return cursor_; }

 private:
  MDB_cursor* cursor_ = nullptr;
};

bool present(MDB_txn* txn, MDB_dbi dbi, const std::string& k) {
  MDB_val kv = value(k), found{};
  int rc = mdb_get(txn, dbi, &kv, &found);
  if (rc == MDB_NOTFOUND) return false;
  check(rc, "read key index");
  return true;
}

void put(MDB_txn* txn, MDB_dbi dbi, const std::string& bucket, const std::string& key) {
  std::string k = entry(bucket, key), v = entryValue(key);
  MDB_val kv = value(k), vv = value(v);
  check(mdb_put(txn, dbi, &kv, &vv, 0), "index " + bucket + "/" + key);
}

}  // namespace

KeyIndex::KeyIndex(const std::string& volume) : volume_(volume) { openEnvironment(); }

KeyIndex::KeyIndex(const std::string& volume, Deferred) : volume_(volume) {}

KeyIndex::~KeyIndex() { closeEnvironment(); }

void KeyIndex::closeEnvironment() {
  if (current_.env) mdb_env_close(current_.env);
  current_ = Environment{};
}

namespace {

bool sameFile(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

// Whether `dir` still names the directory `held` is open on.
bool stillAt(int held, const std::string& dir) {
  struct stat was {}, now {};
  if (fstat(held, &was) != 0) reload::throwSysError("fstat " + dir);
  if (stat(dir.c_str(), &now) != 0) {
    if (errno == ENOENT) return false;  // moved aside, the new one not there yet
    reload::throwSysError("stat " + dir);
  }
  return sameFile(was, now);
}

// Whether the data file LMDB opened is the one in the directory `held`.
bool dataFileIn(MDB_env* env, int held, const std::string& dir) {
  int dataFd = -1;
  check(mdb_env_get_fd(env, &dataFd), "mdb_env_get_fd");
  struct stat opened {}, there {};
  if (fstat(dataFd, &opened) != 0) reload::throwSysError("fstat " + dir + "/data.mdb");
  if (fstatat(held, "data.mdb", &there, 0) != 0) {
    if (errno == ENOENT) return false;
    reload::throwSysError("stat " + dir + "/data.mdb");
  }
  return sameFile(opened, there);
}

// Bounds the opens of one openFiles: each retry needs another rebuild meanwhile.
constexpr int kMaxOpenAttempts = 16;

}  // namespace

KeyIndex::Environment KeyIndex::openFiles(const std::string& volume) {
  const std::string dir = volume + "/index";
  // mdb_env_open opens lock.mdb, then data.mdb, each by its path. A rebuild
  // in another process that moves the directory aside and creates a new one
  // between the two would leave this environment with the old lock file
  // over the new data file: its write lock would not be the one the other
  // processes take, and two writers would share one data file. So the
  // directory is held open across the open (its inode cannot be reused
  // meanwhile) and must still be the one at the path afterwards, with the
  // data file opened in it; otherwise the open is done again.
  for (int attempt = 1;; ++attempt) {
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) reload::throwSysError("mkdir " + dir);
    reload::Fd held(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!held) {
      if (errno == ENOENT && attempt < kMaxOpenAttempts) continue;  // moved aside after the mkdir
      reload::throwSysError("open " + dir);
    }
    Environment opened;
    check(mdb_env_create(&opened.env), "mdb_env_create");
    try {
      check(mdb_env_set_mapsize(opened.env, kMapSize), "mdb_env_set_mapsize");
      check(mdb_env_set_maxreaders(opened.env, 1024), "mdb_env_set_maxreaders");
      // NOTLS: read transactions run on whichever disk-pool thread takes the work.
      int rc = mdb_env_open(opened.env, dir.c_str(), MDB_NOTLS, 0644);
      // Checked before the first write transaction, which takes the lock
      // file's write lock.
      bool straddled = !stillAt(held.get(), dir) || (rc == MDB_SUCCESS && !dataFileIn(opened.env, held.get(), dir));
      if (straddled && attempt < kMaxOpenAttempts) {
        mdb_env_close(opened.env);
        continue;
      }
      check(rc, "open key index " + dir);
      if (straddled)
        throw std::system_error(EAGAIN, std::generic_category(),
                                "key index " + dir + " kept being replaced while it opened");
      int dead = 0;
      check(mdb_reader_check(opened.env, &dead), "clear stale readers of " + dir);
      Txn txn(opened.env, true);
      MDB_dbi dbi;
      check(mdb_dbi_open(txn.get(), nullptr, 0, &dbi), "mdb_dbi_open");
      txn.commit();
      opened.dbi = dbi;
      // The data file this environment holds: what every use compares with
      // the file at the path, to see a rebuild by another process.
      int dataFd = -1;
      check(mdb_env_get_fd(opened.env, &dataFd), "mdb_env_get_fd");
      struct stat data {};
      if (fstat(dataFd, &data) != 0) reload::throwSysError("fstat " + dir + "/data.mdb");
      opened.dataDevice = data.st_dev;
      opened.dataInode = data.st_ino;
      struct stat st {};
      if (fstat(held.get(), &st) != 0) reload::throwSysError("fstat " + dir);
      opened.directoryInode = st.st_ino;
    } catch (...) {
      mdb_env_close(opened.env);
      throw;
    }
    return opened;
  }
}

void KeyIndex::openEnvironment() { current_ = openFiles(volume_); }

bool KeyIndex::holdsCurrentFiles() const {
  std::string path = volume_ + "/index/data.mdb";
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return false;  // moved aside, the new one not there yet
    throw std::system_error(errno, std::generic_category(), "stat " + path);
  }
  return st.st_dev == current_.dataDevice && st.st_ino == current_.dataInode;
}

void KeyIndex::followReplaced() const {
  std::unique_lock<std::shared_mutex> lock(envMutex_);
  if (current_.env && holdsCurrentFiles()) return;
  if (current_.env)
    MOLT_LOG(kInfo) << "key index of " << volume_ << " was replaced (rebuilt by another process); opened again";
  // Never two environments of the same files in one process: the one held
  // names other files now (or none), and is closed before the open.
  const_cast<KeyIndex*>(this)->closeEnvironment();
  const_cast<KeyIndex*>(this)->openEnvironment();
}

void KeyIndex::openCurrent() { followReplaced(); }

bool KeyIndex::isOpen() const {
  std::shared_lock<std::shared_mutex> lock(envMutex_);
  return current_.env != nullptr;
}

void KeyIndex::reopen() {
  std::unique_lock<std::shared_mutex> lock(envMutex_);
  if (current_.env) {
    // Reopened by another thread already: its environment works.
    MDB_txn* probe = nullptr;
    int rc = mdb_txn_begin(current_.env, nullptr, MDB_RDONLY, &probe);
    if (rc == MDB_SUCCESS) {
      mdb_txn_abort(probe);
      return;
    }
    if (rc != MDB_PANIC) fail(rc, "mdb_txn_begin");
  }
  closeEnvironment();
  openEnvironment();
}

void KeyIndex::replaceFiles(const std::function<void()>& moveAside) {
  std::unique_lock<std::shared_mutex> lock(envMutex_);
  MDB_txn* holding = nullptr;
  // The old environment's write lock, which every process that still holds
  // those files waits for: once it has it again, its check sees new files.
  if (current_.env && mdb_txn_begin(current_.env, nullptr, 0, &holding) != MDB_SUCCESS) holding = nullptr;
  Environment fresh;
  try {
    moveAside();
    fresh = openFiles(volume_);
  } catch (...) {
    if (holding) mdb_txn_abort(holding);
    throw;
  }
  if (holding) mdb_txn_abort(holding);
  closeEnvironment();
  current_ = fresh;
}

ino_t KeyIndex::directoryInode() const {
  std::shared_lock<std::shared_mutex> lock(envMutex_);
  return current_.directoryInode;
}

namespace {

// The environment for one use; throws when a failed reopen left none.
MDB_env* usable(MDB_env* env, const std::string& volume) {
  if (!env)
    throw IndexPanicked(EIO, std::generic_category(), "key index of " + volume + " is closed after a failed reopen");
  return env;
}

// Bounds the follows of one use: each needs another rebuild meanwhile.
constexpr int kMaxFollows = 8;

}  // namespace

template <typename Body>
auto KeyIndex::inTransaction(bool write, Body&& body) const {
  for (int follows = 0;; ++follows) {
    {
      std::shared_lock<std::shared_mutex> envLock(envMutex_);
      Txn txn(usable(current_.env, volume_), write);
      // Checked once the transaction holds the write lock: a rebuilder moves
      // the files while it holds that lock, so files that pass here stay the
      // index until this transaction ends.
      if (holdsCurrentFiles()) return body(txn, current_.dbi);
    }
    if (follows == kMaxFollows)
      throw std::system_error(EAGAIN, std::generic_category(),
                              "key index of " + volume_ + " kept being replaced");
    followReplaced();
  }
}

void KeyIndex::add(const std::string& bucket, const std::string& key) {
  inTransaction(true, [&](Txn& txn, MDB_dbi dbi) {
    // A key already indexed (an object written again) needs no commit, and so
    // no sync of the index while every writer waits for its lock.
    if (present(txn.get(), dbi, entry(bucket, key))) return;
    put(txn.get(), dbi, bucket, key);
    txn.commit();
  });
}

void KeyIndex::placeIndexed(const std::string& bucket, const std::string& key,
                            const std::function<void()>& place) {
  std::string k = entry(bucket, key);
  // Each round that finds the entry gone follows a DELETE that saw no file;
  // every such DELETE needs a file to unlink first, so a few rounds end it.
  enum class Placement { kCommitted, kPlaced, kPlacedWhileMoved };
  for (int round = 0; round < 64; ++round) {
    Placement outcome = inTransaction(true, [&](Txn& txn, MDB_dbi dbi) {
      if (present(txn.get(), dbi, k)) {
        place();  // the entry is durable and no writer can drop it meanwhile
        // Files moved aside meanwhile by a rebuilder that could not hold
        // this lock: its scan may have missed the object, so the new index
        // gets the entry too.
        return holdsCurrentFiles() ? Placement::kPlaced : Placement::kPlacedWhileMoved;
      }
      put(txn.get(), dbi, bucket, key);
      txn.commit();
      return Placement::kCommitted;
    });
    if (outcome == Placement::kPlaced) return;  // nothing changed: the abort released the lock without a sync
    if (outcome == Placement::kPlacedWhileMoved) return add(bucket, key);
  }
  throw std::system_error(EBUSY, std::generic_category(),
                          "index " + bucket + "/" + key + ": its entry kept being dropped");
}

void KeyIndex::placeAllIndexed(const std::vector<std::pair<std::string, std::string>>& entries,
                               const std::function<void(size_t)>& place) {
  std::vector<std::string> keys;
  keys.reserve(entries.size());
  for (const auto& [bucket, key] : entries) keys.push_back(entry(bucket, key));
  std::vector<size_t> todo(entries.size());
  for (size_t i = 0; i < todo.size(); ++i) todo[i] = i;
  std::vector<size_t> placedWhileMoved;
  // As placeIndexed: a round that finds an entry gone follows a DELETE of it.
  for (int round = 0; round < 64 && !todo.empty(); ++round) {
    inTransaction(true, [&](Txn& txn, MDB_dbi dbi) {
      std::vector<size_t> added, placed;
      // Every entry is looked up before any is put: two uploads of one new
      // key in one batch must both wait for the commit, and a lookup after
      // the first one's put would see an entry not yet durable.
      std::vector<char> found(todo.size());
      for (size_t n = 0; n < todo.size(); ++n) found[n] = present(txn.get(), dbi, keys[todo[n]]);
      for (size_t n = 0; n < todo.size(); ++n) {
        size_t i = todo[n];
        if (found[n]) {
          place(i);  // durable, and no writer can drop it meanwhile
          placed.push_back(i);
        } else {
          put(txn.get(), dbi, entries[i].first, entries[i].second);
          added.push_back(i);
        }
      }
      if (!placed.empty() && !holdsCurrentFiles())
        placedWhileMoved.insert(placedWhileMoved.end(), placed.begin(), placed.end());
      if (!added.empty()) txn.commit();  // one sync for all of them; placed next round
      todo = std::move(added);
    });
  }
  if (!placedWhileMoved.empty()) {
    // Files moved aside while these were placed (see placeIndexed).
    std::vector<std::pair<std::string, std::string>> again;
    for (size_t i : placedWhileMoved) again.push_back(entries[i]);
    addAll(again);
  }
  if (!todo.empty())
    throw std::system_error(EBUSY, std::generic_category(), "index: entries kept being dropped");
}

void KeyIndex::whileLocked(const std::function<void()>& fn) {
  inTransaction(true, [&](Txn&, MDB_dbi) { fn(); });
}

bool KeyIndex::dropIfGone(const std::string& bucket, const std::string& key,
                          const std::function<bool()>& gone) {
  return inTransaction(true, [&](Txn& txn, MDB_dbi dbi) {
    std::string k = entry(bucket, key);
    if (!present(txn.get(), dbi, k) || !gone()) return false;
    MDB_val kv = value(k);
    int rc = mdb_del(txn.get(), dbi, &kv, nullptr);
    if (rc == MDB_NOTFOUND) return false;
    check(rc, "unindex " + bucket + "/" + key);
    txn.commit();
    return true;
  });
}

void KeyIndex::addAll(const std::vector<std::pair<std::string, std::string>>& entries) {
  inTransaction(true, [&](Txn& txn, MDB_dbi dbi) {
    for (const auto& [bucket, key] : entries) put(txn.get(), dbi, bucket, key);
    txn.commit();
  });
}

void KeyIndex::remove(const std::string& bucket, const std::string& key) {
  inTransaction(true, [&](Txn& txn, MDB_dbi dbi) {
    std::string k = entry(bucket, key);
    MDB_val kv = value(k);
    int rc = mdb_del(txn.get(), dbi, &kv, nullptr);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) fail(rc, "unindex " + bucket + "/" + key);
    txn.commit();
  });
}

namespace {

// keysAfter, read in the transaction `txn`.
std::vector<std::string> readKeysAfter(MDB_txn* txn, MDB_dbi dbi, const std::string& bucket,
                                       const std::string& marker, const std::string& prefix, size_t limit) {
  std::vector<std::string> keys;
  if (limit == 0) return keys;
  constexpr size_t kEntryKeyPrefix = KeyIndex::kEntryKeyPrefix;
  Cursor cursor(txn, dbi);
  const std::string bucketHead = head(bucket);
  // A long start key is sought by its prefix: the start of its group.
  std::string from = marker > prefix ? marker : prefix;
  std::string start = bucketHead + from.substr(0, std::min(from.size(), kEntryKeyPrefix));
  MDB_val k = value(start), v{};
  // Takes a key, in order; false once nothing after it can be wanted.
  auto take = [&](const std::string& key) {
    if (key.compare(0, prefix.size(), prefix) != 0) return key < prefix;
    if (key > marker) keys.push_back(key);
    return keys.size() < limit;
  };
  auto inBucket = [&](std::string_view found) {
    return found.size() >= bucketHead.size() && found.compare(0, bucketHead.size(), bucketHead) == 0;
  };
  int rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_SET_RANGE);
  bool more = true;
  while (more && rc == MDB_SUCCESS) {
    std::string_view found = view(k);
    if (!inBucket(found)) break;
    std::string_view rest = found.substr(bucketHead.size());
    if (!isLong(rest)) {
      more = take(std::string(rest));
      rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT);
      continue;
    }
    // Long keys that share a prefix: ordered by hash here, so read whole.
    std::string group(rest.substr(0, kEntryKeyPrefix));
    std::vector<std::string> members;
    while (rc == MDB_SUCCESS) {
      found = view(k);
      if (!inBucket(found)) break;
      rest = found.substr(bucketHead.size());
      if (!isLong(rest) || rest.compare(0, kEntryKeyPrefix, group) != 0) break;
      members.emplace_back(view(v));
      rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT);
    }
    std::sort(members.begin(), members.end());
    for (const auto& key : members)
      if (!(more = take(key))) break;
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) fail(rc, "read key index");
  return keys;
}

}  // namespace

std::vector<std::string> KeyIndex::keysAfter(const std::string& bucket, const std::string& marker,
                                             const std::string& prefix, size_t limit) const {
  return inTransaction(false, [&](Txn& txn, MDB_dbi dbi) {
    return readKeysAfter(txn.get(), dbi, bucket, marker, prefix, limit);
  });
}

std::optional<std::vector<std::string>> KeyIndex::keysAfterIfComplete(const std::string& bucket,
                                                                      const std::string& marker,
                                                                      const std::string& prefix,
                                                                      size_t limit) const {
  return inTransaction(false, [&](Txn& txn, MDB_dbi dbi) -> std::optional<std::vector<std::string>> {
    // In the transaction that reads the keys: the index a use follows to
    // (another process's rebuild) may still be filling.
    if (!present(txn.get(), dbi, kCompleteMarker)) return std::nullopt;
    return readKeysAfter(txn.get(), dbi, bucket, marker, prefix, limit);
  });
}

std::vector<std::pair<std::string, std::string>> KeyIndex::allEntries() const {
  return inTransaction(false, [&](Txn& txn, MDB_dbi dbi) {
  std::vector<std::pair<std::string, std::string>> out;
  Cursor cursor(txn.get(), dbi);
  MDB_val k{}, v{};
  int rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_FIRST);
  for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT)) {
    std::string_view found = view(k);
    auto nul = found.find('\0');
    if (nul == std::string_view::npos) continue;  // the completeness marker
    std::string_view rest = found.substr(nul + 1);
    out.emplace_back(std::string(found.substr(0, nul)),
                     isLong(rest) ? std::string(view(v)) : std::string(rest));
  }
  if (rc != MDB_NOTFOUND) fail(rc, "read key index");
  return out;
  });
}

bool KeyIndex::complete() const {
  return inTransaction(false, [&](Txn& txn, MDB_dbi dbi) { return present(txn.get(), dbi, kCompleteMarker); });
}

void KeyIndex::markComplete() {
  inTransaction(true, [&](Txn& txn, MDB_dbi dbi) {
    std::string marker = kCompleteMarker;
    MDB_val k = value(marker), empty{0, nullptr};
    check(mdb_put(txn.get(), dbi, &k, &empty, 0), "mark key index complete");
    txn.commit();
  });
}

}  // namespace server
