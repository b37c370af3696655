#include "reload/log.h"


#include <fcntl.h>
#include <unistd.h>

#include <boost/core/null_deleter.hpp>
#include <boost/log/attributes/clock.hpp>
#include <boost/log/attributes/mutable_constant.hpp>
#include <boost/log/attributes/value_extraction.hpp>
#include <boost/log/core.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/sinks/syslog_backend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/log/support/date_time.hpp>
#include <boost/log/utility/exception_handler.hpp>
#include <boost/make_shared.hpp>
#include <ctime>
#include <ext/stdio_filebuf.h>
#include <iostream>
#include <stdexcept>
#include <system_error>

#include "reload/fd.h"
#include "reload/process.h"
#include "reload/sys_error.h"

namespace reload::log {
namespace attrs = boost::log::attributes;
namespace sinks = boost::log::sinks;
namespace keywords = boost::log::keywords;

BOOST_LOG_GLOBAL_LOGGER_DEFAULT(logger, boost::log::sources::severity_logger_mt<Severity>)

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
};

State& state() {
  static State s;
  return s;
}

// A log file opened now, by this process with its present credentials: a
// worker opens its log as root, before it drops privileges. (Boost's
// text_file_backend opens on the first record, which in a worker comes after
// setuid, so every worker record was lost when the file was root's.) The
// descriptor is close-on-exec and the file is created 0640.
class LogFileStream : public std::ostream {
 public:
  explicit LogFileStream(const std::string& path)
      : std::ostream(nullptr), buffer_(openForAppend(path), std::ios::out | std::ios::app) {
    rdbuf(&buffer_);
  }

 private:
  static int openForAppend(const std::string& path) {
    int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) throwSysError("open log " + path + " for append");
    return fd;
  }
  __gnu_cxx::stdio_filebuf<char> buffer_;  // owns and closes the descriptor
};

void formatRecord(const boost::log::record_view& rec, boost::log::formatting_ostream& out) {
  auto sev = boost::log::extract<Severity>("Severity", rec);
  auto pid = boost::log::extract<int>("Pid", rec);
  auto role = boost::log::extract<std::string>("Role", rec);
  auto gen = boost::log::extract<uint64_t>("Generation", rec);
  out << utcTimestamp(3) << " " << serviceName() << "[" << (pid ? *pid : 0) << "] " << (role ? *role : "?")
      << " gen=" << (gen ? *gen : 0) << " " << (sev ? severityName(*sev) : "?") << ": "
      << rec[boost::log::expressions::smessage];
}

sinks::syslog::level syslogLevel(Severity s) {
  switch (s) {
    case Severity::kDebug: return sinks::syslog::debug;
    case Severity::kInfo: return sinks::syslog::info;
    case Severity::kNotice: return sinks::syslog::notice;
    case Severity::kWarning: return sinks::syslog::warning;
    case Severity::kError: return sinks::syslog::error;
    case Severity::kCritical: return sinks::syslog::critical;
  }
  return sinks::syslog::info;
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
  boost::shared_ptr<sinks::sink> sink;
  if (settings.target == "syslog") {
    auto backend = boost::make_shared<sinks::syslog_backend>(
        keywords::facility = sinks::syslog::daemon);
    backend->set_severity_mapper(
        [](const boost::log::record_view& rec) {
          auto sev = boost::log::extract<Severity>("Severity", rec);
          return syslogLevel(sev ? *sev : Severity::kInfo);
        });
    auto syslogSink = boost::make_shared<sinks::synchronous_sink<sinks::syslog_backend>>(backend);
    syslogSink->set_formatter(&formatRecord);
    syslogSink->set_filter(filter);
    sink = syslogSink;
  } else {
    boost::shared_ptr<std::ostream> stream;
    if (settings.target == "stderr") {
      stream.reset(&std::clog, boost::null_deleter());
    } else {
      try {
        stream = boost::make_shared<LogFileStream>(settings.target);
      } catch (const std::system_error& e) {
        // The sinks in place stay: a log that cannot move must not go silent.
        MOLT_LOG(kError) << e.what() << "; logging continues where it was";
        return false;
      }
    }
    auto backend = boost::make_shared<sinks::text_ostream_backend>();
    backend->add_stream(stream);
    backend->auto_flush(true);
    auto streamSink = boost::make_shared<sinks::synchronous_sink<sinks::text_ostream_backend>>(backend);
    streamSink->set_formatter(&formatRecord);
    streamSink->set_filter(filter);
    sink = streamSink;
  }
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
  boost::log::core::get()->remove_all_sinks();
}

void flush() { boost::log::core::get()->flush(); }

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
  Fd fd(open(target.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
  if (!fd) throwSysError("open " + target + " for append");
}

}  // namespace reload::log
