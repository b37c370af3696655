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
#include <boost/log/sinks/text_file_backend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/log/support/date_time.hpp>
#include <boost/log/utility/exception_handler.hpp>
#include <boost/make_shared.hpp>
#include <ctime>
#include <iostream>
#include <stdexcept>

#include "reload/fd.h"
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
  boost::shared_ptr<sinks::synchronous_sink<sinks::text_file_backend>> fileSink;
  bool attributesAdded = false;
};

State& state() {
  static State s;
  return s;
}

void formatRecord(const boost::log::record_view& rec, boost::log::formatting_ostream& out) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm utc{};
  gmtime_r(&ts.tv_sec, &utc);
  char stamp[40];
  size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  snprintf(stamp + n, sizeof stamp - n, ".%03ldZ", ts.tv_nsec / 1000000);
  auto sev = boost::log::extract<Severity>("Severity", rec);
  auto pid = boost::log::extract<int>("Pid", rec);
  auto role = boost::log::extract<std::string>("Role", rec);
  auto gen = boost::log::extract<uint64_t>("Generation", rec);
  out << stamp << " moltd[" << (pid ? *pid : 0) << "] " << (role ? *role : "?")
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

void configure(const Settings& settings) {
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
  core->remove_all_sinks();
  st.fileSink.reset();
  Severity level = settings.level;
  auto filter = [level](const boost::log::attribute_value_set& values) {
    auto sev = values["Severity"].extract<Severity>();
    return !sev || *sev >= level;
  };
  if (settings.target == "stderr") {
    auto backend = boost::make_shared<sinks::text_ostream_backend>();
    backend->add_stream(boost::shared_ptr<std::ostream>(&std::clog, boost::null_deleter()));
    backend->auto_flush(true);
    auto sink = boost::make_shared<sinks::synchronous_sink<sinks::text_ostream_backend>>(backend);
    sink->set_formatter(&formatRecord);
    sink->set_filter(filter);
    core->add_sink(sink);
  } else if (settings.target == "syslog") {
    auto backend = boost::make_shared<sinks::syslog_backend>(
        keywords::facility = sinks::syslog::daemon);
    backend->set_severity_mapper(
        [](const boost::log::record_view& rec) {
          auto sev = boost::log::extract<Severity>("Severity", rec);
          return syslogLevel(sev ? *sev : Severity::kInfo);
        });
    auto sink = boost::make_shared<sinks::synchronous_sink<sinks::syslog_backend>>(backend);
    sink->set_formatter(&formatRecord);
    sink->set_filter(filter);
    core->add_sink(sink);
  } else {
    auto backend = boost::make_shared<sinks::text_file_backend>(
        keywords::file_name = settings.target,
        keywords::open_mode = std::ios_base::out | std::ios_base::app,
        keywords::auto_flush = true);
    auto sink = boost::make_shared<sinks::synchronous_sink<sinks::text_file_backend>>(backend);
    sink->set_formatter(&formatRecord);
    sink->set_filter(filter);
    core->add_sink(sink);
    st.fileSink = sink;
  }
}

void reopen() {
  if (state().fileSink) state().fileSink->locked_backend()->rotate_file();
}

void setIdentity(const std::string& role, uint64_t generation) {
  state().pid.set(static_cast<int>(getpid()));
  state().role.set(role);
  state().generation.set(generation);
}

void removeSinks() {
  boost::log::core::get()->remove_all_sinks();
  state().fileSink.reset();
}

void flush() { boost::log::core::get()->flush(); }

void checkTarget(const std::string& target) {
  if (target == "stderr" || target == "syslog") return;
  Fd fd(open(target.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
  if (!fd) throwSysError("open " + target + " for append");
}

}  // namespace reload::log
