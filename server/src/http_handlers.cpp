#include "http_handlers.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <limits>
#include <mutex>
#include <system_error>
#include <thread>

#include "disk_pool.h"
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

struct AccessLog::State {
  State(reload::Fd file, size_t limit) : fd(std::move(file)), queueLimit(limit) {}
  reload::Fd fd;
  const size_t queueLimit;
  std::mutex mutex;
  std::condition_variable changed;
  std::string queued;   // whole lines, oldest first
  size_t writing = 0;  // bytes of the batch the writer took from `queued`
  bool started = false;
  bool stopping = false;
  bool dropping = false;  // the last line was dropped

  void writeAll(const std::string& batch) {
    size_t done = 0;
    while (done < batch.size()) {
      ssize_t n = ::write(fd.get(), batch.data() + done, batch.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        // Losing access-log lines must not fail requests; the reason is logged.
        MOLT_LOG(kError) << "cannot write " << batch.size() - done
                         << " bytes to the access log: " << std::strerror(errno);
        return;
      }
      done += static_cast<size_t>(n);
    }
  }

  static void run(std::shared_ptr<State> self) {
    std::unique_lock<std::mutex> lock(self->mutex);
    for (;;) {
      self->changed.wait(lock, [&] { return !self->queued.empty() || self->stopping; });
      if (self->queued.empty()) return;
      std::string batch;
      batch.swap(self->queued);
      self->writing = batch.size();
      lock.unlock();
      self->writeAll(batch);
      lock.lock();
      self->writing = 0;
      self->changed.notify_all();
    }
  }
};

AccessLog::AccessLog(const std::string& path, size_t queueLimit) {
  if (path == "off") return;
  reload::Fd fd(open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
  if (!fd) {
    MOLT_LOG(kError) << "cannot open access log " << path << ": " << std::strerror(errno);
    return;
  }
  state_ = std::make_shared<State>(std::move(fd), queueLimit);
  // The last copy of this log ends the writer once what is queued is
  // written; the thread holds the state, so it may outlive every copy.
  owner_ = std::shared_ptr<void>(nullptr, [state = state_](void*) {
    {
      std::lock_guard<std::mutex> lock(state->mutex);
      state->stopping = true;
    }
    state->changed.notify_all();
  });
}

bool AccessLog::write(const std::string& line) const {
  if (!state_) return true;
  State& state = *state_;
  {
    std::unique_lock<std::mutex> lock(state.mutex);
    // A destination that takes nothing must not grow the worker without
    // bound: the newest lines go, the ones queued keep their order.
    if (state.queued.size() + line.size() > state.queueLimit) {
      bool first = !state.dropping;
      state.dropping = true;
      lock.unlock();
      if (first)  // once per stall: the count is in /metrics
        MOLT_LOG(kWarning) << "access log takes nothing and " << state.queueLimit
                           << " bytes wait for it: lines are dropped (moltd_access_log_dropped_lines_total)";
      return false;
    }
    state.dropping = false;
    state.queued += line;
    // Started with the first line, after the worker dropped its
    // privileges and set its signal mask, which the thread inherits.
    if (!state.started) {
      try {
        std::thread(State::run, state_).detach();
        state.started = true;
      } catch (const std::system_error& e) {
        // The line stays queued: the next one tries again.
        MOLT_LOG(kError) << "cannot start the access log's writer: " << e.what();
      }
    }
  }
  state.changed.notify_all();
  return true;
}

size_t AccessLog::flush(int64_t timeoutMs) const {
  if (!state_) return 0;
  State& state = *state_;
  std::unique_lock<std::mutex> lock(state.mutex);
  state.changed.wait_for(lock, std::chrono::milliseconds(timeoutMs),
                         [&] { return state.queued.empty() && state.writing == 0; });
  return state.queued.size() + state.writing;
}

WorkerShared::WorkerShared(const ObjectServerConfig& cfg, uint64_t gen, AccessLog log,
                           reload::EventLoop& eventLoop)
    : config(cfg), store(cfg.storage), generation(gen), accessLog(std::move(log)), loop(eventLoop) {
  // The worker has not begun to serve: the tables it knows of now are
  // mapped here; a volume added later has its table mapped on the pool.
  // Workers start together: one creates a table while another may find it
  // half made (no size or magic yet) for a few microseconds.
  for (const auto& volume : store.volumes()) {
    if (volume.problem == "not a directory") continue;
    std::string error;
    std::unique_ptr<VersionTable> table;
    for (int attempt = 0; attempt < 100 && !table; ++attempt) {
      if (attempt > 0) {
        // Only a table that exists can be half made; otherwise the error stands.
        if (access((volume.path + "/versions").c_str(), F_OK) != 0) break;
        usleep(1000);
      }
      table = VersionTable::open(volume.path, error);
    }
    if (table) versions.add(std::move(table));
    else MOLT_LOG(kInfo) << "open-file cache off for now: " << error;
  }
}

const std::string& WorkerShared::dateHeader() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME_COARSE, &now);
  if (now.tv_sec != dateSecond_) {
    dateSecond_ = now.tv_sec;
    date_ = "Date: " + httpDate(static_cast<double>(now.tv_sec)) + "\r\n";
    checkCacheIfDue();
  }
  return date_;
}

void WorkerShared::checkCacheIfDue() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME_COARSE, &now);
  if (now.tv_sec == cacheCheckSecond_) return;
  cacheCheckSecond_ = now.tv_sec;
  checkCache();
}

void WorkerShared::checkCache() {
  // The list's version is read before the list: a rescan in between shows
  // as a newer version at the next GET, which checks again.
  const uint64_t listVersion = store.volumeListVersion();
  std::vector<std::string> uncovered;
  for (const auto& volume : store.volumes())
    if (volume.problem != "not a directory" && !versions.covers(volume.path))
      uncovered.push_back(volume.path);
  cache.sweep();
  const bool wasUsable = cache.usable();
  const bool usable = uncovered.empty() &&
                      versions.trusted(static_cast<uint64_t>(std::max<int64_t>(0, cacheCheckSecond_)));
  if (usable) coveredListVersion_ = listVersion;
  cache.setUsable(usable);
  if (usable && !cacheAnnounced_) {
    cacheAnnounced_ = true;
    MOLT_LOG(kInfo) << "open-file cache serving (" << versions.tables() << " version tables)";
  } else if (wasUsable && !usable) {
    MOLT_LOG(kInfo) << "open-file cache off: " << uncovered.size()
                    << " volumes have no version table mapped yet";
  }
  if (uncovered.empty() || mappingTables_ || !pool) return;
  // Opening a table touches the volume: the pool does it.
  mappingTables_ = true;
  auto mapped = std::make_shared<std::vector<std::unique_ptr<VersionTable>>>();
  auto errors = std::make_shared<std::vector<std::string>>();
  pool->submit(
      [uncovered, mapped, errors] {
        for (const auto& path : uncovered) {
          std::string error;
          if (auto table = VersionTable::open(path, error)) mapped->push_back(std::move(table));
          else errors->push_back(error);
        }
      },
      [this, mapped, errors] {
        mappingTables_ = false;
        for (auto& table : *mapped) versions.add(std::move(table));
        for (const auto& error : *errors) MOLT_LOG(kInfo) << "open-file cache off for now: " << error;
      });
}

static_assert(kAccessLogLinesDropped < reload::kGenerationAnswers, "moltd's counters stay out of the generations' ring");
static_assert(kStatus1xx > reload::kStandbyGeneration, "moltd's counters leave the standby word alone");
static_assert(kStatus1xx + 4 < reload::kLogRecordsDropped && kBytesReceived > reload::kLogRecordsDropped,
              "moltd's counters leave the log's drop count alone");

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

std::optional<int64_t> parseHttpDate(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  if (text.empty() || text.size() > 64) return std::nullopt;
  const std::string copy(text);
  // IMF-fixdate and asctime have a fixed length (strptime alone would take
  // a two-digit year for %Y); RFC 850's spells the weekday out.
  constexpr const char* kRfc850 = "%A, %d-%b-%y %H:%M:%S GMT";
  struct Form {
    const char* format;
    size_t length;  // 0: any
  };
  for (const Form& form : {Form{"%a, %d %b %Y %H:%M:%S GMT", 29}, Form{kRfc850, 0},
                           Form{"%a %b %e %H:%M:%S %Y", 24}}) {
    if (form.length != 0 && copy.size() != form.length) continue;
    tm parts{};
    const char* end = strptime(copy.c_str(), form.format, &parts);
    if (end == nullptr || *end != '\0') continue;
    if (form.format == kRfc850) {
      // RFC 9110 5.6.7: a two-digit year whose timestamp appears more than
      // 50 years ahead is the latest past year with those digits.
      tm now{};
      time_t clock = time(nullptr);
      gmtime_r(&clock, &now);
      int thisYear = now.tm_year + 1900;
      tm candidate = parts;
      candidate.tm_year = thisYear - thisYear % 100 + parts.tm_year % 100 - 1900;
      tm limit = now;
      limit.tm_year += 50;
      tm probe = candidate;
      if (timegm(&probe) > timegm(&limit)) candidate.tm_year -= 100;
      parts.tm_year = candidate.tm_year;
    }
    const tm asked = parts;
    errno = 0;
    time_t seconds = timegm(&parts);
    if (seconds == static_cast<time_t>(-1) && errno != 0) return std::nullopt;
    // timegm normalises: 30 February or a 60th second is no date.
    if (parts.tm_mday != asked.tm_mday || parts.tm_mon != asked.tm_mon || parts.tm_year != asked.tm_year ||
        parts.tm_hour != asked.tm_hour || parts.tm_min != asked.tm_min || parts.tm_sec != asked.tm_sec)
      return std::nullopt;
    return static_cast<int64_t>(seconds);
  }
  return std::nullopt;
}

std::string quoteEtag(const std::string& etag) { return "\"" + etag + "\""; }

std::string swiftTimestamp(double seconds) {
  if (!(seconds >= 0 && seconds < 1e13)) {
    char text[64];
    std::snprintf(text, sizeof text, "%.5f", seconds);
    return text;
  }
  auto units = static_cast<uint64_t>(std::llround(seconds * 1e5));
  std::string fraction = std::to_string(units % 100000);
  return std::to_string(units / 100000) + "." + std::string(5 - fraction.size(), '0') + fraction;
}


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
