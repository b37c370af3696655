#include "http_handlers.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <limits>

#include "reload/event_loop.h"
#include "reload/log.h"

namespace server {

namespace {

bool allDigits(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

// A decimal number; values past uint64_t saturate (a position that large
// lies past any object).
uint64_t saturatingNumber(const std::string& s) {
  uint64_t n = 0;
  for (char c : s) {
    auto digit = static_cast<uint64_t>(c - '0');
    if (n > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::numeric_limits<uint64_t>::max();
    n = n * 10 + digit;
  }
  return n;
}

}  // namespace

RangeResult parseRange(const std::string& header, uint64_t size, ByteRange& range) {
  if (header.rfind("bytes=", 0) != 0) return RangeResult::kNone;
  std::string spec = header.substr(6);
  if (spec.find(',') != std::string::npos) return RangeResult::kNone;
  auto dash = spec.find('-');
  if (dash == std::string::npos) return RangeResult::kNone;
  std::string a = spec.substr(0, dash), b = spec.substr(dash + 1);
  if (a.empty()) {  // suffix: the last N bytes
    if (!allDigits(b)) return RangeResult::kNone;
    uint64_t n = saturatingNumber(b);
    if (n == 0 || size == 0) return RangeResult::kUnsatisfiable;
    range.first = n >= size ? 0 : size - n;
    range.last = size - 1;
    return RangeResult::kSatisfiable;
  }
  if (!allDigits(a) || (!b.empty() && !allDigits(b))) return RangeResult::kNone;
  uint64_t first = saturatingNumber(a);
  uint64_t last = b.empty() ? (size == 0 ? 0 : size - 1) : saturatingNumber(b);
  if (!b.empty() && last < first) return RangeResult::kNone;  // invalid: ignore, per RFC
  if (first >= size) return RangeResult::kUnsatisfiable;
  range.first = first;
  range.last = std::min(last, size - 1);
  return RangeResult::kSatisfiable;
}

bool etagListMatches(const std::string& header, const std::string& etag, bool strong) {
  size_t pos = 0;
  while (pos <= header.size()) {
    size_t comma = header.find(',', pos);
    std::string item = header.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? header.size() + 1 : comma + 1;
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item == "*") return true;
    if (item.rfind("W/", 0) == 0) {
      if (strong) continue;
      item = item.substr(2);
    }
    if (item.size() >= 2 && item.front() == '"' && item.back() == '"')
      item = item.substr(1, item.size() - 2);
    if (item == etag) return true;
  }
  return false;
}

AccessLog::AccessLog(const std::string& path) {
  if (path == "off") return;
  fd_ = reload::Fd(open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
  if (!fd_) MOLT_LOG(kError) << "cannot open access log " << path << ": " << std::strerror(errno);
}

void AccessLog::write(const std::string& line) const {
  if (!fd_) return;
  if (::write(fd_.get(), line.data(), line.size()) < 0) {
    // Losing an access-log line must not fail the request.
  }
}

WorkerShared::WorkerShared(const ObjectServerConfig& cfg, uint64_t gen, AccessLog log,
                           reload::EventLoop& eventLoop)
    : config(cfg), store(cfg.storage), generation(gen), accessLog(std::move(log)), loop(eventLoop) {}

const std::string& WorkerShared::dateHeader() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME_COARSE, &now);
  if (now.tv_sec != dateSecond_) {
    dateSecond_ = now.tv_sec;
    date_ = "Date: " + httpDate(static_cast<double>(now.tv_sec)) + "\r\n";
  }
  return date_;
}

void WorkerShared::flushCounts() {
  if (!countsPending_) return;
  countsPending_ = false;
  if (counters) {
    uint64_t answers = 0;
    for (size_t c = 0; c < 5; ++c) answers += pendingCounts_[kStatus1xx + c];
    if (answers) {
      counters->add(reload::generationAnswersSlot(generation), answers);
      counters->add(reload::generationServerErrorsSlot(generation), pendingCounts_[kStatus1xx + 4]);
    }
  }
  for (size_t slot = 0; slot < kPendingSlots; ++slot) {
    if (!pendingCounts_[slot]) continue;
    if (counters) counters->add(slot, pendingCounts_[slot]);
    pendingCounts_[slot] = 0;
  }
}

std::string httpDate(double epochSeconds) {
  // The same object is often served many times a second: the last answer
  // is kept (one loop thread formats dates).
  static time_t lastTime = -1;
  static std::string last;
  time_t t = static_cast<time_t>(epochSeconds);
  if (t == lastTime) return last;
  tm parts{};
  gmtime_r(&t, &parts);
  char text[64];
  strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &parts);
  lastTime = t;
  last = text;
  return last;
}

std::string quoteEtag(const std::string& etag) { return "\"" + etag + "\""; }

const char* reasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 416: return "Range Not Satisfiable";
    case 422: return "Unprocessable Entity";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: return "Unknown";
  }
}

}  // namespace server
