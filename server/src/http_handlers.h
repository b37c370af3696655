// The public HTTP API (objects, bucket listings and /healthcheck) and what a
// worker's connections share: configuration, the store, the drain state,
// the access log and the shared counters.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "drain_state.h"
#include "http_request.h"
#include "object_store.h"
#include "object_versions.h"
#include "open_file_cache.h"
#include "reload/event_loop.h"
#include "reload/fd.h"
#include "reload/shared_counters.h"
#include "server_config.h"

namespace server {

class DiskPool;

// One byte range, resolved against an object's size.
struct ByteRange {
  uint64_t first = 0;
  uint64_t last = 0;  // inclusive
};
enum class RangeResult { kNone, kSatisfiable, kUnsatisfiable };
// Parses a single-range "bytes=..." header. Several ranges, or another unit,
// are ignored (kNone: serve the whole object), as RFC 9110 allows. A first
// position too large to represent lies past any object: kUnsatisfiable.
RangeResult parseRange(const std::string& header, uint64_t size, ByteRange& range);

// Whether an If-Match / If-None-Match list names `etag` ("*" names any).
// The strong comparison (If-Match) never matches a weak W/"..." tag.
bool etagListMatches(const std::string& header, const std::string& etag, bool strong = false);

// One line per request, appended (O_APPEND keeps lines from several
// workers whole). A worker opens it before it drops privileges, so that the
// log may belong to root. The loop only queues a line: a thread of the
// log's own writes them in the order they were queued, so a slow disk or a
// full pipe never holds the loop. What waits is bounded (kQueueLimit bytes
// queued besides the batch being written): a line past it is dropped, and
// the caller counts it.
class AccessLog {
 public:
  static constexpr size_t kQueueLimit = 1 << 20;
  explicit AccessLog(const std::string& path, size_t queueLimit = kQueueLimit);  // "off" disables
  bool enabled() const { return static_cast<bool>(state_); }
  // Queues `line`; false when it was dropped (the queue is full).
  bool write(const std::string& line) const;
  // Waits until every queued line is written or `timeoutMs` passes;
  // returns how many bytes are still queued.
  size_t flush(int64_t timeoutMs) const;

 private:
  struct State;
  std::shared_ptr<State> state_;
  std::shared_ptr<void> owner_;
};

// Slots of reload::SharedCounters that moltd uses.
enum CounterSlot : size_t {
  // 0: reload::kStandbyGeneration, which generation stands by.
  kStatus1xx = 1,  // kStatus1xx + (status / 100 - 1) for 1xx..5xx
  // 7: reload::kLogRecordsDropped, log records dropped by every process.
  kBytesReceived = 8,
  kBytesSent,
  kMethodGet,
  kMethodHead,
  kMethodPut,
  kMethodDelete,
  kMethodOther,
  kAccessLogLinesDropped,  // lines dropped because the access log's queue was full
  // 16 .. 31: reload::kGenerationAnswers, the answers of each generation.
  // Open connections of each current worker, by worker slot: the worker's
  // monotonic second in the high half, the count in the low half. Workers
  // read each other's to balance accepts.
  kWorkerLoad = 32,
  kWorkerLoadSlots = 32,
};

struct WorkerShared {
  WorkerShared(const ObjectServerConfig& config, uint64_t generation, AccessLog accessLog,
               reload::EventLoop& loop);
  const ObjectServerConfig& config;
  ObjectStore store;
  DrainState drain;
  bool readOnly = false;
  uint64_t generation;
  AccessLog accessLog;
  reload::EventLoop& loop;
  DiskPool* pool = nullptr;
  reload::SharedCounters* counters = nullptr;
  std::string serverHeader = "Server: moltd\r\n";
  int64_t clientTimeoutMs = 60000;
  int64_t headerTimeoutMs = 60000;  // for a whole request header
  int64_t keepaliveTimeoutMs = 5000;
  uint64_t minBodyRate = 0;  // bytes per second, over each client_timeout window
  HeaderLimits headerLimits;

  // "Date: ...\r\n", formatted at most once a second.
  const std::string& dateHeader();

  // The version tables of the volumes and what the worker keeps of the
  // objects it served (open_file_cache.h).
  ObjectVersions versions;
  OpenFileCache cache{versions, OpenFileCache::Limits{}};
  // Whether the cache may be used now: every volume the store reads has its
  // table, checked at the store's current volume list. One atomic load.
  bool cacheUsable() {
    if (!cache.usable()) return false;
    if (store.volumeListVersion() == coveredListVersion_) return true;
    cache.setUsable(false);  // the volumes moved: checked again within a second
    return false;
  }
  // Whether an object opened while the store's volume list was at
  // `listVersion` may be kept.
  bool mayKeep(uint64_t listVersion) {
    return cacheUsable() && listVersion == coveredListVersion_;
  }
  // Once a second (and at the start): maps the tables of volumes that have
  // none yet (on the pool), drops stale entries, decides whether the cache
  // serves.
  void checkCache();
  // checkCache() when a second passed since the last one.
  void checkCacheIfDue();

  // Request counters are summed here and added to the shared ones once per
  // turn of the loop: the shared slots are written by every worker, and an
  // atomic add per request and counter would bounce their cache lines.
  void count(size_t slot, uint64_t n) {
    pendingCounts_[slot % kPendingSlots] += n;
    countsPending_ = true;
  }
  void flushCounts();

 private:
  int64_t dateSecond_ = -1;
  int64_t cacheCheckSecond_ = -1;
  uint64_t coveredListVersion_ = UINT64_MAX;
  bool mappingTables_ = false;
  bool cacheAnnounced_ = false;
  std::string date_;
  static constexpr size_t kPendingSlots = 16;
  uint64_t pendingCounts_[kPendingSlots] = {};
  bool countsPending_ = false;
};

// Helpers the connection uses to answer.
std::string httpDate(double epochSeconds);
// An HTTP-date in any of the three forms RFC 9110 5.6.7 has recipients
// accept (IMF-fixdate, RFC 850, asctime), as seconds since the epoch;
// nullopt for anything else.
std::optional<int64_t> parseHttpDate(std::string_view text);
std::string quoteEtag(const std::string& etag);
// "1732950000.12345", as printf("%.5f") would write it for the times moltd
// stores (X-Timestamp, as Swift).
std::string swiftTimestamp(double seconds);
const char* reasonPhrase(int status);

}  // namespace server
