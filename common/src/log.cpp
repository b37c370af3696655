#include "reload/log.h"


#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <boost/core/null_deleter.hpp>
#include <boost/log/attributes/clock.hpp>
#include <boost/log/attributes/mutable_constant.hpp>
#include <boost/log/attributes/value_extraction.hpp>
#include <boost/log/core.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/log/support/date_time.hpp>
#include <boost/log/utility/exception_handler.hpp>
#include <boost/make_shared.hpp>
#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <memory>
#include <utility>
#include <ctime>
#include <ext/stdio_filebuf.h>
#include <iostream>
#include <stdexcept>
#include <system_error>

#include "reload/event_loop.h"
#include "reload/fd.h"
#include "reload/log_writer.h"
#include "reload/process.h"
#include "reload/shared_counters.h"
#include "reload/sys_error.h"

namespace reload::log {
namespace attrs = boost::log::attributes;
namespace sinks = boost::log::sinks;
namespace keywords = boost::log::keywords;

BOOST_LOG_GLOBAL_LOGGER_DEFAULT(logger, boost::log::sources::severity_logger_mt<Severity>)

BoundedLogWriter::BoundedLogWriter(std::unique_ptr<Destination> destination, size_t limit,
                                   Summary summary)
    : destination_(std::move(destination)), limit_(limit), summary_(std::move(summary)) {}

void BoundedLogWriter::drop(uint64_t records) {
  unreported_ += records;
  droppedTotal_ += records;
  unpublished_ += records;
}

uint64_t BoundedLogWriter::takeUnpublished() { return std::exchange(unpublished_, 0); }

void BoundedLogWriter::queueSummary() {
  uint64_t dropped = std::exchange(unreported_, 0);
  Entry entry{summary_(dropped), dropped};
  queuedBytes_ += entry.text.size();
  entries_.push_back(std::move(entry));
}

void BoundedLogWriter::write(std::string record) {
  flush();  // what waits goes first, in order
  // One record always fits in an empty queue, whatever its size.
  if (!entries_.empty() && queuedBytes_ + record.size() > limit_) {
    drop(1);
    return;
  }
  if (unreported_ != 0) queueSummary();  // the gap sits before this record
  queuedBytes_ += record.size();
  entries_.push_back(Entry{std::move(record), 0});
  flush();
}

bool BoundedLogWriter::flush() {
  for (;;) {
    if (entries_.empty()) {
      if (unreported_ == 0) return true;
      queueSummary();
    }
    Entry& front = entries_.front();
    ssize_t n = destination_->write(front.text.data() + written_, front.text.size() - written_);
    if (n == 0) {
      failuresInARow_ = 0;  // there, and full: tried at the base pace
      return false;  // takes nothing now: the next record or drain() tries again
    }
    if (n < 0) {
      // A destination that fails (a pipe whose reader is gone, EIO) takes
      // nothing of what waits: all of it is dropped and counted, once per
      // call, so that a failing summary cannot loop.
      ++failuresInARow_;
      abandon();
      return false;
    }
    failuresInARow_ = 0;
    written_ += static_cast<size_t>(n);
    if (written_ < front.text.size()) continue;
    queuedBytes_ -= front.text.size();
    written_ = 0;
    entries_.pop_front();
  }
}

bool BoundedLogWriter::drain(int timeoutMs) {
  const int64_t deadline = monotonicMs() + timeoutMs;
  for (;;) {
    if (flush()) return true;
    int64_t left = deadline - monotonicMs();
    if (left <= 0 || !destination_->waitWritable(static_cast<int>(left))) return false;
  }
}

void BoundedLogWriter::abandon() {
  for (const Entry& e : entries_) {
    if (e.summarizes != 0) {
      unreported_ += e.summarizes;  // counted when they were dropped
    } else {
      drop(1);
    }
  }
  entries_.clear();
  queuedBytes_ = 0;
  written_ = 0;
}

int BoundedLogWriter::retryWaitMs(int base, int longest) const {
  int64_t wait = base;
  for (unsigned i = 1; i < failuresInARow_ && wait < longest; ++i) wait *= 2;
  return static_cast<int>(std::min<int64_t>(wait, longest));
}

void BoundedLogWriter::reframe(const std::function<void(std::string&)>& change) {
  // Only whole records are changed: the first may be partly written.
  for (size_t i = written_ == 0 ? 0 : 1; i < entries_.size(); ++i) {
    queuedBytes_ -= entries_[i].text.size();
    change(entries_[i].text);
    queuedBytes_ += entries_[i].text.size();
  }
}

void BoundedLogWriter::forget() {
  entries_.clear();
  queuedBytes_ = 0;
  written_ = 0;
  unreported_ = 0;
  droppedTotal_ = 0;
  unpublished_ = 0;
}

void BoundedLogWriter::adopt(BoundedLogWriter& other) {
  // A record half written to the old destination is not written again: its
  // end is lost, and counted as a drop.
  if (other.written_ != 0 && !other.entries_.empty()) {
    other.queuedBytes_ -= other.entries_.front().text.size();
    other.entries_.pop_front();
    other.written_ = 0;
    drop(1);
  }
  while (!other.entries_.empty()) {
    entries_.push_front(std::move(other.entries_.back()));
    other.entries_.pop_back();
  }
  queuedBytes_ += std::exchange(other.queuedBytes_, 0);
  unreported_ += std::exchange(other.unreported_, 0);
  droppedTotal_ += other.droppedTotal_;
  unpublished_ += std::exchange(other.unpublished_, 0);
}

namespace {

bool pollWritable(int fd, int timeoutMs) {
  if (fd < 0) return false;
  pollfd p{fd, POLLOUT, 0};
  int n = poll(&p, 1, timeoutMs);
  if (n < 0 && errno != EINTR) return false;
  return (p.revents & (POLLERR | POLLNVAL)) == 0;
}

// Well under the daemon's socket buffer, so that one record is never too
// large to be sent.
constexpr size_t kMaxSyslogRecord = 16 * 1024;

// Where the log's own descriptors go: high, clear of the places an exec's
// handoff lays listeners out at (3 and up) and of the numbers the next
// descriptors of the process take, so that opening the log moves no other
// descriptor. Half the descriptor limit when that is lower.
constexpr int kLogFdFloor = 512;

int logFdFloor() {
  int floor = kLogFdFloor;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY &&
      limit.rlim_cur / 2 < static_cast<rlim_t>(floor))
    floor = static_cast<int>(limit.rlim_cur / 2);
  return floor;
}

// The log's own descriptor, placed high. With no room up there (EMFILE) the
// low number serves, but it may lie where an exec's layout puts its
// descriptors for a moment (dup2 onto 3 and up, undone when the exec
// fails): while that number is another file's, the log neither writes to
// it nor closes it, and takes it up again once it is its own once more.
class LogFd {
 public:
  LogFd() = default;
  explicit LogFd(Fd fd) {
    const int floor = logFdFloor();
    if (fd && fd.get() < floor) {
      Fd high(fcntl(fd.get(), F_DUPFD_CLOEXEC, floor));
      if (high) fd = std::move(high);
    }
    fd_ = std::move(fd);
    struct stat st {};
    if (fd_ && fd_.get() < floor && fstat(fd_.get(), &st) == 0) {
      checked_ = true;
      dev_ = st.st_dev;
      ino_ = st.st_ino;
    }
  }
  LogFd(const LogFd&) = delete;
  LogFd& operator=(const LogFd&) = delete;
  LogFd& operator=(LogFd&& other) noexcept {
    reset();
    fd_ = std::move(other.fd_);
    checked_ = std::exchange(other.checked_, false);
    dev_ = other.dev_;
    ino_ = other.ino_;
    return *this;
  }
  ~LogFd() { reset(); }

  explicit operator bool() const { return static_cast<bool>(fd_); }
  int get() const { return fd_.get(); }
  // False while the number is another file's.
  bool ours() const {
    if (!checked_) return true;
    struct stat st {};
    return fstat(fd_.get(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_;
  }
  void reset() {
    if (fd_ && !ours()) (void)fd_.release();  // what holds the number now is not the log's to close
    fd_.reset();
    checked_ = false;
  }

 private:
  Fd fd_;
  bool checked_ = false;  // placed low: checked before each use
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

// A descriptor written with write(2): a pipe, FIFO or terminal opened
// non-blocking (EAGAIN: takes nothing now), or a regular file, which the
// kernel cannot make non-blocking: its writes go to the page cache and
// return, except on a disk or network file system that hangs. `owned` is
// the log's own descriptor, or empty when `fd` is standard error's.
class FdDestination : public Destination {
 public:
  FdDestination(int fd, Fd owned) : owned_(std::move(owned)) { fd_ = owned_ ? owned_.get() : fd; }
  ssize_t write(const char* data, size_t size) override {
    if (!owned_.ours()) return 0;
    for (;;) {
      ssize_t n = ::write(fd_, data, size);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return 0;  // EWOULDBLOCK on Linux
      return -1;
    }
  }
  bool waitWritable(int timeoutMs) override { return owned_.ours() && pollWritable(fd_, timeoutMs); }
  int ownDescriptor() const override { return owned_ ? owned_.get() : -1; }

 private:
  int fd_ = -1;
  LogFd owned_;
};

// A stream socket (journald's stream on standard error): sent with
// MSG_DONTWAIT, which needs no flag on a description other processes share
// and so no descriptor of its own.
class SocketDestination : public Destination {
 public:
  explicit SocketDestination(int fd) : fd_(fd) {}
  ssize_t write(const char* data, size_t size) override {
    for (;;) {
      ssize_t n = ::send(fd_, data, size, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return 0;  // EWOULDBLOCK on Linux
      return -1;
    }
  }
  bool waitWritable(int timeoutMs) override { return pollWritable(fd_, timeoutMs); }

 private:
  int fd_;
};

// Standard error as a pipe, FIFO or terminal that could not be opened again
// (a FIFO without a reader, no /proc, no descriptor left): each write tries
// the reopen first. Until it works, a write goes to standard error itself
// only when poll says it can take a page, and takes at most PIPE_BUF bytes,
// which such a pipe takes whole at once; a FIFO without a reader fails at
// once (EPIPE), and its records are counted as dropped.
class GuardedStderrDestination : public Destination {
 public:
  ssize_t write(const char* data, size_t size) override {
    if (!reopened_) tryReopen();
    if (reopened_) return reopened_->write(data, size);
    pollfd p{STDERR_FILENO, POLLOUT, 0};
    if (poll(&p, 1, 0) < 0) return errno == EINTR ? 0 : -1;
    if (p.revents & (POLLERR | POLLNVAL)) {
      errno = EPIPE;
      return -1;
    }
    if (!(p.revents & POLLOUT)) return 0;
    for (;;) {
      ssize_t n = ::write(STDERR_FILENO, data, std::min(size, static_cast<size_t>(PIPE_BUF)));
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return 0;
      return -1;
    }
  }
  bool waitWritable(int timeoutMs) override {
    if (!reopened_) tryReopen();
    return reopened_ ? reopened_->waitWritable(timeoutMs) : pollWritable(STDERR_FILENO, timeoutMs);
  }
  int ownDescriptor() const override { return reopened_ ? reopened_->ownDescriptor() : -1; }

 private:
  void tryReopen();
  std::unique_ptr<FdDestination> reopened_;
};

// The local syslog daemon's datagram socket, sent to with MSG_DONTWAIT:
// syslog(3) sends with a blocking send() and waits as long as a daemon that
// stopped reading keeps its queue full. One record is one datagram, taken
// whole or not at all. A daemon that restarted (a new socket at the path:
// ECONNREFUSED) is connected to again once per write.
class SyslogDestination : public Destination {
 public:
  ssize_t write(const char* data, size_t size) override {
    // A record is cut to what a datagram may hold here, whatever framing it
    // was made in (one made for a file before the log moved here).
    const size_t sent = std::min(size, kMaxSyslogRecord);
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!fd_ && !connectToDaemon()) return -1;
      if (!fd_.ours()) return 0;
      for (;;) {
        if (::send(fd_.get(), data, sent, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
          return static_cast<ssize_t>(size);
        if (errno != EINTR) break;
      }
      if (errno == EAGAIN || errno == ENOBUFS) return 0;
      if (errno != ECONNREFUSED && errno != ENOTCONN && errno != EPIPE) return -1;
      fd_.reset();
    }
    return -1;
  }
  bool waitWritable(int timeoutMs) override {
    if (!fd_ && !connectToDaemon()) return false;
    return fd_.ours() && pollWritable(fd_.get(), timeoutMs);
  }
  int ownDescriptor() const override { return fd_ ? fd_.get() : -1; }

 private:
  bool connectToDaemon() {
    Fd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) return false;
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, _PATH_LOG, sizeof address.sun_path - 1);
    if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
      return false;
    fd_ = LogFd(std::move(fd));
    return true;
  }
  LogFd fd_;
};

// Standard error closed: records go nowhere, as they did to a closed stream.
class DiscardDestination : public Destination {
 public:
  ssize_t write(const char* /*data*/, size_t size) override { return static_cast<ssize_t>(size); }
  bool waitWritable(int /*timeoutMs*/) override { return true; }
};

// The destination for standard error, never changing the flags of the
// open file description it shares with other processes. A pipe, FIFO or
// terminal is opened again through /proc/self/fd, which gives a new
// description that may carry O_NONBLOCK (a descriptor of the log's own,
// placed high); a socket is sent to with MSG_DONTWAIT; a regular file
// cannot be made non-blocking and is written where it is.
std::unique_ptr<Destination> stderrDestination() {
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return std::make_unique<DiscardDestination>();
  if (S_ISSOCK(st.st_mode)) return std::make_unique<SocketDestination>(STDERR_FILENO);
  if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
    Fd own(open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_APPEND));
    if (own) return std::make_unique<FdDestination>(-1, std::move(own));
    return std::make_unique<GuardedStderrDestination>();
  }
  return std::make_unique<FdDestination>(STDERR_FILENO, Fd());
}

void GuardedStderrDestination::tryReopen() {
  Fd own(open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_APPEND));
  if (own) reopened_ = std::make_unique<FdDestination>(-1, std::move(own));
}

// O_NONBLOCK: a FIFO named as the log file opens at once (ENXIO without a
// reader, rather than waiting for one) and its writes never wait.
Fd openLogFile(const std::string& path) {
  Fd fd(open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640));
  if (!fd) throwSysError("open log " + path + " for append");
  return fd;
}

using BackendBase = sinks::basic_formatted_sink_backend<
    char, sinks::combine_requirements<sinks::synchronized_feeding, sinks::flushing>::type>;

std::atomic<SharedCounters*> dropCounter{nullptr};
// How long until records waiting in the sink for a log that took nothing
// are tried again, -1 when none wait: read by retryWaitMs() on every turn
// of a loop, so it must cost no lock.
std::atomic<int> retryWait{-1};

// How a formatted line becomes what the destination takes: a line of a
// stream, or a syslog datagram with its priority.
using Framing = std::function<std::string(Severity, const std::string& line)>;

class BoundedBackend : public BackendBase {
 public:
  BoundedBackend(std::unique_ptr<Destination> destination, Framing framing,
                 BoundedLogWriter::Summary summary)
      : framing_(std::move(framing)), writer_(std::move(destination), kLogBufferBytes, std::move(summary)) {}
  void consume(const boost::log::record_view& rec, const string_type& line) {
    auto sev = boost::log::extract<Severity>("Severity", rec);
    writer_.write(framing_(sev ? *sev : Severity::kInfo, line));
    publish();
  }
  void flush() {
    writer_.flush();
    publish();
  }
  bool drain(int timeoutMs) {
    bool done = writer_.drain(timeoutMs);
    if (!done) writer_.abandon();
    publish();
    return done;
  }
  uint64_t dropWaiting() {
    writer_.abandon();
    publish();
    return writer_.unreported();
  }
  void reportEarlierDrops(uint64_t records) {
    writer_.carryUnreported(records);
    publish();
  }
  void forget() {
    writer_.forget();
    publish();
  }
  BoundedLogWriter& writer() { return writer_; }

 private:
  void publish() {
    retryWait.store(writer_.idle() ? -1 : writer_.retryWaitMs(kLogRetryMs, kLogRetryLongestMs),
                    std::memory_order_relaxed);
    SharedCounters* counters = dropCounter.load(std::memory_order_relaxed);
    if (counters != nullptr) {
      if (uint64_t n = writer_.takeUnpublished()) counters->add(kLogRecordsDropped, n);
    }
  }
  Framing framing_;
  BoundedLogWriter writer_;
};

}  // namespace

namespace {

const char* severityName(Severity s) {
  switch (s) {
    case Severity::kDebug: return "debug";
    case Severity::kInfo: return "info";
    case Severity::kNotice: return "notice";
    case Severity::kWarning: return "warning";
    case Severity::kError: return "error";
    case Severity::kCritical: return "critical";
  }
  return "?";
}

struct State {
  attrs::mutable_constant<int> pid{0};
  attrs::mutable_constant<std::string> role{std::string("master")};
  attrs::mutable_constant<uint64_t> generation{0};
  std::string target = "stderr";
  bool attributesAdded = false;
  // The sink records go through now, and its backend: a replacing
  // configure() takes over what waits in it.
  boost::shared_ptr<sinks::synchronous_sink<BoundedBackend>> sink;
};

State& state() {
  static State s;
  return s;
}

int syslogLevel(Severity s) {
  switch (s) {
    case Severity::kDebug: return LOG_DEBUG;
    case Severity::kInfo: return LOG_INFO;
    case Severity::kNotice: return LOG_NOTICE;
    case Severity::kWarning: return LOG_WARNING;
    case Severity::kError: return LOG_ERR;
    case Severity::kCritical: return LOG_CRIT;
  }
  return LOG_INFO;
}

// A file's or a stream's record: the line the formatter made, and its newline.
std::string streamLine(Severity /*severity*/, const std::string& line) {
  std::string record;
  record.reserve(line.size() + 1);
  record.append(line).push_back('\n');
  return record;
}

// A syslog datagram as syslog(3) makes it (RFC 3164): <priority>, the local
// time, the service's name and pid, then the line without its own
// timestamp and name.
std::string syslogDatagram(Severity severity, const std::string& line) {
  time_t now = time(nullptr);
  tm local{};
  localtime_r(&now, &local);
  char stamp[32];
  size_t n = strftime(stamp, sizeof stamp, "%b %e %T", &local);
  std::string record = "<" + std::to_string(LOG_DAEMON | syslogLevel(severity)) + ">" +
                       std::string(stamp, n) + " " + serviceName() + "[" +
                       std::to_string(getpid()) + "]: " + line;
  if (record.size() > kMaxSyslogRecord) record.resize(kMaxSyslogRecord);
  return record;
}

// What follows the timestamp and the name in every record.
std::string roleAndSeverity(const std::string& role, uint64_t generation, Severity severity) {
  return role + " gen=" + std::to_string(generation) + " " + severityName(severity) + ": ";
}

std::string droppedText(uint64_t dropped) {
  return std::to_string(dropped) + " log records dropped while the log took nothing (" + serviceName() +
         "_log_dropped_records_total)";
}

// The record saying how many were dropped, in the format of every other.
std::string droppedSummary(uint64_t dropped) {
  State& st = state();
  return utcTimestamp(3) + " " + serviceName() + "[" + std::to_string(st.pid.get()) + "] " +
         roleAndSeverity(st.role.get(), st.generation.get(), Severity::kWarning) + droppedText(dropped) +
         "\n";
}

std::string droppedSyslogSummary(uint64_t dropped) {
  State& st = state();
  return syslogDatagram(Severity::kWarning,
                        roleAndSeverity(st.role.get(), st.generation.get(), Severity::kWarning) +
                            droppedText(dropped));
}

void formatRecord(const boost::log::record_view& rec, boost::log::formatting_ostream& out) {
  auto sev = boost::log::extract<Severity>("Severity", rec);
  auto pid = boost::log::extract<int>("Pid", rec);
  auto role = boost::log::extract<std::string>("Role", rec);
  auto gen = boost::log::extract<uint64_t>("Generation", rec);
  out << utcTimestamp(3) << " " << serviceName() << "[" << (pid ? *pid : 0) << "] " << (role ? *role : "?")
      << " gen=" << (gen ? *gen : 0) << " " << (sev ? severityName(*sev) : "?") << ": "
      << rec[boost::log::expressions::smessage];
}

// The same without the timestamp and the name, which the datagram carries.
void formatSyslogRecord(const boost::log::record_view& rec, boost::log::formatting_ostream& out) {
  auto sev = boost::log::extract<Severity>("Severity", rec);
  auto role = boost::log::extract<std::string>("Role", rec);
  auto gen = boost::log::extract<uint64_t>("Generation", rec);
  out << (role ? *role : "?") << " gen=" << (gen ? *gen : 0) << " " << (sev ? severityName(*sev) : "?")
      << ": " << rec[boost::log::expressions::smessage];
}

}  // namespace

Severity parseSeverity(const std::string& name) {
  for (auto s : {Severity::kDebug, Severity::kInfo, Severity::kNotice, Severity::kWarning,
                 Severity::kError, Severity::kCritical}) {
    if (name == severityName(s)) return s;
  }
  throw std::invalid_argument("unknown level '" + name +
                              "' (debug, info, notice, warning, error, critical)");
}

bool configure(const Settings& settings) {
  auto core = boost::log::core::get();
  State& st = state();
  if (!st.attributesAdded) {
    core->add_global_attribute("Pid", st.pid);
    core->add_global_attribute("Role", st.role);
    core->add_global_attribute("Generation", st.generation);
    core->set_exception_handler(boost::log::make_exception_suppressor());
    st.attributesAdded = true;
  }
  st.pid.set(static_cast<int>(getpid()));
  Severity level = settings.level;
  auto filter = [level](const boost::log::attribute_value_set& values) {
    auto sev = values["Severity"].extract<Severity>();
    return !sev || *sev >= level;
  };
  // A log file is opened now, by this process with its present
  // credentials: a worker opens its log as root, before it drops
  // privileges.
  std::unique_ptr<Destination> destination;
  try {
    if (settings.target == "stderr") {
      destination = stderrDestination();
    } else if (settings.target == "syslog") {
      // Connected at its first record: a daemon not there yet is not an error.
      destination = std::make_unique<SyslogDestination>();
    } else {
      // Opened O_NONBLOCK: a FIFO's writes never wait either.
      destination = std::make_unique<FdDestination>(-1, openLogFile(settings.target));
    }
  } catch (const std::system_error& e) {
    // The sinks in place stay: a log that cannot move must not go silent.
    MOLT_LOG(kError) << e.what() << "; logging continues where it was";
    return false;
  }
  const bool syslog = settings.target == "syslog";
  auto backend = boost::make_shared<BoundedBackend>(
      std::move(destination), syslog ? Framing(&syslogDatagram) : Framing(&streamLine),
      syslog ? &droppedSyslogSummary : &droppedSummary);
  auto sink = boost::make_shared<sinks::synchronous_sink<BoundedBackend>>(backend);
  sink->set_formatter(syslog ? &formatSyslogRecord : &formatRecord);
  sink->set_filter(filter);
  if (st.sink) {
    // What waits for the old log goes to the new one first, in its framing
    // as it was made; what the old log dropped is reported by the new one.
    auto old = st.sink->locked_backend();
    old->flush();
    backend->writer().adopt(old->writer());
    // A datagram taken into a file or a stream loses its <priority>, which
    // only a syslog daemon reads, and ends its line there; a line sent as a
    // datagram keeps its newline, which syslog daemons drop.
    if (!syslog && st.target == "syslog")
      backend->writer().reframe([](std::string& text) {
        if (!text.empty() && text.front() == '<') {
          size_t close = text.find('>');
          if (close != std::string::npos && close <= 4) text.erase(0, close + 1);
        }
        if (text.empty() || text.back() != '\n') text.push_back('\n');
      });
  }
  st.sink = sink;
  core->remove_all_sinks();
  core->add_sink(sink);
  st.target = settings.target;
  return true;
}

const std::string& currentTarget() { return state().target; }

void setIdentity(const std::string& role, uint64_t generation) {
  state().pid.set(static_cast<int>(getpid()));
  state().role.set(role);
  state().generation.set(generation);
}

void removeSinks() {
  // A forked child's copy of what waits in its parent is not its own to
  // write: dropped here without a write.
  state().sink.reset();
  retryWait.store(-1, std::memory_order_relaxed);
  boost::log::core::get()->remove_all_sinks();
}

bool hasSink() { return static_cast<bool>(state().sink); }

void flush() { boost::log::core::get()->flush(); }

int retryWaitMs() {
  if (retryWait.load(std::memory_order_relaxed) < 0) return -1;
  flush();
  return retryWait.load(std::memory_order_relaxed);
}

bool drain(int timeoutMs) {
  auto sink = state().sink;
  if (!sink) {
    flush();
    return true;
  }
  return sink->locked_backend()->drain(timeoutMs);
}

uint64_t dropWaiting() {
  auto sink = state().sink;
  return sink ? sink->locked_backend()->dropWaiting() : 0;
}

void reportEarlierDrops(uint64_t records) {
  if (records == 0) return;
  if (auto sink = state().sink) sink->locked_backend()->reportEarlierDrops(records);
}

void forgetInherited() {
  if (auto sink = state().sink) sink->locked_backend()->forget();
}

void countDropsIn(SharedCounters* counters) {
  dropCounter.store(counters, std::memory_order_relaxed);
  if (counters != nullptr) flush();  // what was dropped meanwhile is counted now
}

std::vector<int> ownDescriptors() {
  auto sink = state().sink;
  if (!sink) return {};
  int fd = sink->locked_backend()->writer().destination().ownDescriptor();
  if (fd < 0) return {};
  return {fd};
}

uint64_t droppedRecords() {
  auto sink = state().sink;
  return sink ? sink->locked_backend()->writer().droppedTotal() : 0;
}

std::string utcTimestamp(int fractionDigits) {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  tm utc{};
  gmtime_r(&now.tv_sec, &utc);
  char stamp[48];
  size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  long fraction = fractionDigits >= 6 ? now.tv_nsec / 1000 : now.tv_nsec / 1000000;
  snprintf(stamp + n, sizeof stamp - n, ".%0*ldZ", fractionDigits >= 6 ? 6 : 3, fraction);
  return stamp;
}

void checkTarget(const std::string& target) {
  if (target == "stderr" || target == "syslog") return;
  // Non-blocking, as the log opens it: a FIFO without a reader is refused
  // (ENXIO) rather than waited for.
  Fd fd(open(target.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640));
  if (!fd) throwSysError("open " + target + " for append");
}

}  // namespace reload::log
