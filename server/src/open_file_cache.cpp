#include "open_file_cache.h"

#include <fcntl.h>

#include <cstring>

#include "http_handlers.h"
#include "reload/log.h"

namespace server {

std::shared_ptr<CachedObject> describeObject(OpenObject&& object) {
  auto cached = std::make_shared<CachedObject>();
  const ObjectMeta& meta = object.meta;
  std::string& h = cached->headers;
  h.reserve(160);
  h += "ETag: \"";
  h += meta.etag;
  h += "\"\r\nLast-Modified: ";
  h += httpDate(meta.timestamp);
  h += "\r\nX-Timestamp: ";
  h += swiftTimestamp(meta.timestamp);
  h += "\r\nAccept-Ranges: bytes\r\n";
  for (const auto& [name, value] : meta.userMeta) {
    h += "X-Object-Meta-";
    h += name;
    h += ": ";
    h += value;
    h += "\r\n";
  }
  cached->contentTypeHeader = "Content-Type: " + meta.contentType + "\r\n";
  if (object.dataLoaded) {
    cached->body = std::make_shared<const std::string>(std::move(object.data));
  } else if (object.fd) {
    // No read-ahead through this descriptor: pages the kernel only began to
    // read would pass for cached ones, and sendfile() would wait for them.
    // The pool reads whole windows in itself.
    if (int err = posix_fadvise(object.fd.get(), 0, 0, POSIX_FADV_RANDOM); err != 0)
      MOLT_LOG(kDebug) << "posix_fadvise(RANDOM) on an object: " << std::strerror(err)
                       << "; a cold body may hold the loop";
    cached->file = std::make_shared<reload::Fd>(std::move(object.fd));
  }
  cached->volume = std::move(object.volume);
  cached->meta = std::move(object.meta);
  return cached;
}

OpenFileCache::OpenFileCache(ObjectVersions& versions, Limits limits)
    : versions_(versions), limits_(limits) {}

std::shared_ptr<const CachedObject> OpenFileCache::find(const std::string& bucket,
                                                        const std::string& key, size_t slot) {
  if (!usable_ || entries_.empty()) return nullptr;
  lookup_.assign(bucket);
  lookup_ += '\0';
  lookup_ += key;
  auto it = entries_.find(lookup_);
  if (it == entries_.end()) {
    ++misses_;
    return nullptr;
  }
  // The one check that keeps the entry honest: written since it was kept
  // (or being written now), and it is not used.
  if (!(versions_.stamp(slot) == it->second.object->stamp)) {
    erase(it);
    ++misses_;
    return nullptr;
  }
  ++hits_;
  if (it->second.lru != lru_.begin()) lru_.splice(lru_.begin(), lru_, it->second.lru);
  return it->second.object;
}

void OpenFileCache::keep(const std::string& bucket, const std::string& key,
                         const std::shared_ptr<CachedObject>& object, VersionStamp before,
                         bool mayKeepFile) {
  if (!usable_ || !before.usable()) return;
  if (!object->body && (!object->file || !mayKeepFile)) return;
  if (!(versions_.stamp(object->slot) == before)) return;  // written while it was opened
  if (object->body && object->body->size() > limits_.bodyBytes / 8) return;
  object->stamp = before;
  std::string name = bucket;
  name += '\0';
  name += key;
  if (auto old = entries_.find(name); old != entries_.end()) erase(old);
  lru_.push_front(name);
  entries_.emplace(std::move(name), Entry{object, lru_.begin()});
  if (object->body) bodyBytes_ += object->body->size();
  if (object->file) ++files_;
  trim();
}

void OpenFileCache::sweep() {
  for (auto it = entries_.begin(); it != entries_.end();) {
    auto next = std::next(it);
    if (!(versions_.stamp(it->second.object->slot) == it->second.object->stamp)) erase(it);
    it = next;
  }
}

void OpenFileCache::erase(Map::iterator it) {
  const auto& object = it->second.object;
  if (object->body) bodyBytes_ -= object->body->size();
  if (object->file) --files_;
  lru_.erase(it->second.lru);
  entries_.erase(it);
}

void OpenFileCache::trim() {
  while (!lru_.empty() &&
         (entries_.size() > limits_.entries || bodyBytes_ > limits_.bodyBytes || files_ > limits_.files)) {
    auto it = entries_.find(lru_.back());
    if (it == entries_.end()) {
      lru_.pop_back();
      continue;
    }
    erase(it);
  }
}

}  // namespace server
