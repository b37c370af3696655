#include "key_index.h"

#include <lmdb.h>
#include <sys/stat.h>

#include <system_error>

namespace server {
namespace {

constexpr char kCompleteMarker[] = "\x01index-complete";  // no bucket name starts with \x01
constexpr size_t kMapSize = size_t{64} << 30;           // address space only; the file grows as used

[[noreturn]] void fail(int rc, const std::string& what) {
  // LMDB returns errno values for system errors and its own codes otherwise.
  if (rc > 0) throw std::system_error(rc, std::generic_category(), what);
  throw std::system_error(EIO, std::generic_category(), what + ": " + mdb_strerror(rc));
}

void check(int rc, const std::string& what) {
  if (rc != MDB_SUCCESS) fail(rc, what);
}

std::string entry(const std::string& bucket, const std::string& key) {
  std::string e = bucket;
  e += '\0';
  e += key;
  return e;
}

MDB_val value(const std::string& s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

class Txn {
 public:
  Txn(MDB_env* env, bool write) {
    check(mdb_txn_begin(env, nullptr, write ? 0 : MDB_RDONLY, &txn_), "mdb_txn_begin");
  }
  ~Txn() {
    if (txn_) mdb_txn_abort(txn_);
  }
  void commit() {
    int rc = mdb_txn_commit(txn_);
    txn_ = nullptr;
    check(rc, "mdb_txn_commit");
  }
  MDB_txn* get() const { return txn_; }

 private:
  MDB_txn* txn_ = nullptr;
};

}  // namespace

KeyIndex::KeyIndex(const std::string& volume) {
  std::string dir = volume + "/index";
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    throw std::system_error(errno, std::generic_category(), "mkdir " + dir);
  check(mdb_env_create(&env_), "mdb_env_create");
  try {
    check(mdb_env_set_mapsize(env_, kMapSize), "mdb_env_set_mapsize");
    check(mdb_env_set_maxreaders(env_, 1024), "mdb_env_set_maxreaders");
    // NOTLS: read transactions run on whichever disk-pool thread takes the work.
    check(mdb_env_open(env_, dir.c_str(), MDB_NOTLS, 0644), "open key index " + dir);
    Txn txn(env_, true);
    MDB_dbi dbi;
    check(mdb_dbi_open(txn.get(), nullptr, 0, &dbi), "mdb_dbi_open");
    txn.commit();
    dbi_ = dbi;
  } catch (...) {
    mdb_env_close(env_);
    throw;
  }
}

KeyIndex::~KeyIndex() { mdb_env_close(env_); }

void KeyIndex::add(const std::string& bucket, const std::string& key) {
  Txn txn(env_, true);
  std::string k = entry(bucket, key);
  MDB_val kv = value(k), empty{0, nullptr}, found{};
  // A key already indexed (an object written again) needs no commit, and so
  // no sync of the index while every writer waits for its lock.
  if (mdb_get(txn.get(), dbi_, &kv, &found) == MDB_SUCCESS) return;
  check(mdb_put(txn.get(), dbi_, &kv, &empty, 0), "index " + bucket + "/" + key);
  txn.commit();
}

void KeyIndex::addAll(const std::vector<std::pair<std::string, std::string>>& entries) {
  Txn txn(env_, true);
  for (const auto& [bucket, key] : entries) {
    std::string k = entry(bucket, key);
    MDB_val kv = value(k), empty{0, nullptr};
    check(mdb_put(txn.get(), dbi_, &kv, &empty, 0), "index " + bucket + "/" + key);
  }
  txn.commit();
}

void KeyIndex::remove(const std::string& bucket, const std::string& key) {
  removeAll(bucket, {key});
}

void KeyIndex::removeAll(const std::string& bucket, const std::vector<std::string>& keys) {
  Txn txn(env_, true);
  for (const auto& key : keys) {
    std::string k = entry(bucket, key);
    MDB_val kv = value(k);
    int rc = mdb_del(txn.get(), dbi_, &kv, nullptr);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) fail(rc, "unindex " + bucket + "/" + key);
  }
  txn.commit();
}

std::vector<std::string> KeyIndex::keysAfter(const std::string& bucket, const std::string& marker,
                                             const std::string& prefix, size_t limit) const {
  std::vector<std::string> keys;
  if (limit == 0) return keys;
  Txn txn(env_, false);
  MDB_cursor* cursor = nullptr;
  check(mdb_cursor_open(txn.get(), dbi_, &cursor), "mdb_cursor_open");
  std::string start = entry(bucket, marker > prefix ? marker : prefix);
  MDB_val k = value(start), v{};
  std::string head = entry(bucket, "");
  int rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
  while (rc == MDB_SUCCESS && keys.size() < limit) {
    std::string found(static_cast<const char*>(k.mv_data), k.mv_size);
    if (found.compare(0, head.size(), head) != 0) break;  // past the bucket
    std::string key = found.substr(head.size());
    if (key.compare(0, prefix.size(), prefix) != 0) break;  // past the prefix
    if (key > marker) keys.push_back(std::move(key));
    rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
  }
  mdb_cursor_close(cursor);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) fail(rc, "read key index");
  return keys;
}

bool KeyIndex::complete() const {
  Txn txn(env_, false);
  std::string marker = kCompleteMarker;
  MDB_val k = value(marker), v{};
  return mdb_get(txn.get(), dbi_, &k, &v) == MDB_SUCCESS;
}

void KeyIndex::markComplete() {
  Txn txn(env_, true);
  std::string marker = kCompleteMarker;
  MDB_val k = value(marker), empty{0, nullptr};
  check(mdb_put(txn.get(), dbi_, &k, &empty, 0), "mark key index complete");
  txn.commit();
}

}  // namespace server
