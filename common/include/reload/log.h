// Process-wide logging on Boost.Log.
//
// Only synchronous sinks are used: the master must stay single-threaded so it
// can fork, and an asynchronous sink's feeder thread would not exist in a
// forked child. Every record carries the pid, the role (master, worker, sync,
// check) and the generation.
#pragma once

#include <boost/log/sources/global_logger_storage.hpp>
#include <boost/log/sources/record_ostream.hpp>
#include <boost/log/sources/severity_logger.hpp>
#include <cstdint>
#include <string>

namespace reload::log {

enum class Severity { kDebug, kInfo, kNotice, kWarning, kError, kCritical };

BOOST_LOG_GLOBAL_LOGGER(logger, boost::log::sources::severity_logger_mt<Severity>)

struct Settings {
  Severity level = Severity::kInfo;
  std::string target = "stderr";  // a file path, "stderr" or "syslog"
};

// Parses "debug", "info", "notice", "warning", "error", "critical".
// Throws std::invalid_argument.
Severity parseSeverity(const std::string& name);

// Replaces the sinks. Called at start, on reload and in every forked child
// (which must not write through its parent's stream objects). A log file is
// opened (for append, never truncated) before this returns, so a reload
// writes to the path as it is now (logrotate's "mv, then signal" pattern).
// If the file cannot be opened, logs why through the sinks in place, keeps
// them and returns false.
bool configure(const Settings& settings);

// Where records go now: the target of the last configure() that took
// effect, "stderr" before any.
const std::string& currentTarget();

// Tags this process's records. Call after fork and when the generation changes.
void setIdentity(const std::string& role, uint64_t generation);

// Drops every sink without writing through it (used in a child before it
// closes inherited descriptors).
void removeSinks();

void flush();

// The time now in UTC as ISO 8601 with `fractionDigits` (3 or 6) digits of
// the second, as every log line of the server carries it.
std::string utcTimestamp(int fractionDigits);

// Checks that a log target can be opened for append. Throws std::system_error.
void checkTarget(const std::string& target);

}  // namespace reload::log

#define MOLT_LOG(sev) BOOST_LOG_SEV(::reload::log::logger::get(), ::reload::log::Severity::sev)
