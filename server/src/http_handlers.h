// The public HTTP API: objects, bucket listings and /healthcheck.
#pragma once

#include <Poco/Net/HTTPRequestHandlerFactory.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

#include "drain_state.h"
#include "object_store.h"
#include "reload/shared_counters.h"
#include "server_config.h"

namespace server {

// One byte range, resolved against an object's size.
struct ByteRange {
  uint64_t first = 0;
  uint64_t last = 0;  // inclusive
};
enum class RangeResult { kNone, kSatisfiable, kUnsatisfiable };
// Parses a single-range "bytes=..." header. Several ranges, or another unit,
// are ignored (kNone: serve the whole object), as RFC 9110 allows.
RangeResult parseRange(const std::string& header, uint64_t size, ByteRange& range);

// Whether an If-Match / If-None-Match list names `etag` ("*" names any).
bool etagListMatches(const std::string& header, const std::string& etag);

// Appends one line per request with a single write() (O_APPEND keeps lines
// from several workers whole).
class AccessLog {
 public:
  explicit AccessLog(const std::string& path);  // "off" disables
  ~AccessLog();
  bool enabled() const { return fd_ >= 0; }
  void write(const std::string& line) const;

 private:
  int fd_ = -1;
};

// Slots of reload::SharedCounters that moltd uses.
enum CounterSlot : size_t {
  kStatus1xx = 1,  // kStatus1xx + (status / 100 - 1) for 1xx..5xx
  kBytesReceived = 8,
  kBytesSent,
  kMethodGet,
  kMethodHead,
  kMethodPut,
  kMethodDelete,
  kMethodOther,
};

struct WorkerShared {
  WorkerShared(const ObjectServerConfig& config, uint64_t generation);
  const ObjectServerConfig& config;
  ObjectStore store;
  DrainState drain;
  std::atomic<bool> readOnly{false};
  uint64_t generation;
  AccessLog accessLog;
  double clientTimeout = 60;
  reload::SharedCounters* counters = nullptr;
};

class ObjectHandlerFactory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit ObjectHandlerFactory(WorkerShared& shared) : shared_(shared) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(
      const Poco::Net::HTTPServerRequest& request) override;

 private:
  WorkerShared& shared_;
};

}  // namespace server
