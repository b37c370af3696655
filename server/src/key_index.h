// An ordered index of the keys stored on one volume, so that a listing
// reads only the keys it returns. It lives in VOLUME/index as an LMDB
// environment (multi-process, crash-safe). The object files stay the truth:
// a key is added before its object is renamed into place and removed after
// the object is deleted, so the index may name an object that is gone (the
// listing skips and removes it) but never misses one that is there. A
// volume that holds objects from before the index gets it built by a scan,
// once, on its first listing.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

struct MDB_env;

namespace server {

class KeyIndex {
 public:
  // Opens (creating if needed) the index of `volume`. Throws
  // std::system_error when it cannot.
  explicit KeyIndex(const std::string& volume);
  ~KeyIndex();
  KeyIndex(const KeyIndex&) = delete;
  KeyIndex& operator=(const KeyIndex&) = delete;

  // Durable when they return (LMDB commits with fsync). Throw std::system_error.
  void add(const std::string& bucket, const std::string& key);
  void remove(const std::string& bucket, const std::string& key);
  void removeAll(const std::string& bucket, const std::vector<std::string>& keys);
  // Many (bucket, key) entries in one transaction (building the index).
  void addAll(const std::vector<std::pair<std::string, std::string>>& entries);

  // Keys of `bucket` after `marker` that start with `prefix`, in order, at
  // most `limit`.
  std::vector<std::string> keysAfter(const std::string& bucket, const std::string& marker,
                                     const std::string& prefix, size_t limit) const;

  // Whether every object the volume held before the index existed is in it.
  bool complete() const;
  void markComplete();

 private:
  MDB_env* env_ = nullptr;
  unsigned dbi_ = 0;
};

}  // namespace server
