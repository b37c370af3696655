// What a worker keeps of the objects it served: the metadata, the headers
// rendered from it and either the whole body (small objects) or the open
// descriptor (large ones), so that a GET of a hot key makes no system call
// but its read and its write. An entry is used only while the key's
// version stamp (object_versions.h) is what it was before the object was
// opened, so it is never older than the last acknowledged PUT or DELETE of
// the key, whichever worker or generation answered it.
//
// One per worker, used from its loop only. Bounded in entries, body bytes
// and descriptors (least recently used go first).
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "object_store.h"
#include "object_versions.h"
#include "reload/fd.h"

namespace server {

struct CachedObject {
  ObjectMeta meta;
  std::string volume;
  std::shared_ptr<const std::string> body;  // the whole body, or null
  std::shared_ptr<reload::Fd> file;         // when there is no body
  // "ETag: ...\r\nLast-Modified: ...\r\nX-Timestamp: ...\r\nAccept-Ranges:
  // bytes\r\n" and the X-Object-Meta-* lines: what every answer about the
  // object carries.
  std::string headers;
  std::string contentTypeHeader;  // "Content-Type: ...\r\n"
  size_t slot = 0;
  VersionStamp stamp;
};

// Renders what CachedObject holds for an object just opened.
std::shared_ptr<CachedObject> describeObject(OpenObject&& object);

class OpenFileCache {
 public:
  struct Limits {
    size_t entries = 4096;
    size_t bodyBytes = 32 << 20;
    size_t files = 64;  // descriptors of large objects
  };
  OpenFileCache(ObjectVersions& versions, Limits limits);

  // Whether entries may be used now; false turns the cache off (every GET
  // opens its object) without dropping what it holds.
  void setUsable(bool usable) { usable_ = usable; }
  bool usable() const { return usable_; }

  // The key's entry if it is still current (a stale one is dropped).
  std::shared_ptr<const CachedObject> find(const std::string& bucket, const std::string& key,
                                           size_t slot);
  // Keeps `object` (opened after `before` was taken) unless a writer was in
  // flight or the stamp moved since. Without a body, only when
  // `mayKeepFile`: a small object opened without its body (a HEAD, a read
  // by the pool) waits for a GET that reads it whole.
  void keep(const std::string& bucket, const std::string& key,
            const std::shared_ptr<CachedObject>& object, VersionStamp before,
            bool mayKeepFile = true);
  // Drops every entry whose key was written since it was kept (so that the
  // descriptor of a deleted file does not hold its space).
  void sweep();
  size_t size() const { return entries_.size(); }
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }

 private:
  struct Entry {
    std::shared_ptr<const CachedObject> object;
    std::list<std::string>::iterator lru;
  };
  using Map = std::unordered_map<std::string, Entry>;
  void erase(Map::iterator it);
  void trim();

  ObjectVersions& versions_;
  Limits limits_;
  bool usable_ = false;
  Map entries_;
  std::list<std::string> lru_;  // most recent first
  std::string lookup_;          // the key being looked up, reused
  size_t bodyBytes_ = 0;
  size_t files_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

}  // namespace server
