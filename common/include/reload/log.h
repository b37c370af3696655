// Process-wide logging on Boost.Log.
//
// Only synchronous sinks are used: the master must stay single-threaded so it
// can fork, and an asynchronous sink's feeder thread would not exist in a
// forked child (nor would a queue's mutex it held at the fork be released).
// Every record carries the pid, the role (master, worker, sync, check) and
// the generation.
//
// A record never waits for its destination, so that a log nobody reads (a
// full pipe or journald stream, a terminal stopped with ^S, a FIFO) holds
// neither the master's loop nor a worker's. A pipe, FIFO or terminal on
// standard error is opened again through /proc/self/fd with O_NONBLOCK
// (the flag stays off the description other processes share), a socket is
// sent to with MSG_DONTWAIT; a descriptor the log opens itself sits high,
// clear of the places an exec's handoff lays listeners out at. What the
// destination does
// not take waits in memory, in order, up to kLogBufferBytes per process;
// past it records are dropped, counted in the shared counters'
// kLogRecordsDropped slot, and once the destination takes bytes again one
// record says how many. What waits is written with the next record, on
// flush() and retry() (every turn of a loop), and with a deadline on
// drain() when a process leaves. A regular
// file cannot be made non-blocking: its writes go to the page cache.
#pragma once

#include <boost/log/sources/global_logger_storage.hpp>
#include <boost/log/sources/record_ostream.hpp>
#include <boost/log/sources/severity_logger.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace reload {
class SharedCounters;
}

namespace reload::log {

// Bytes of records a process keeps while its log takes nothing.
constexpr size_t kLogBufferBytes = 64 * 1024;
// How long a process that leaves waits for its log to take what waits.
constexpr int kLogExitDrainMs = 2000;

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

// Whether records go anywhere: false once removeSinks() ran.
bool hasSink();

// Writes what waits, without waiting for the destination.
void flush();

// How long a loop sleeps at most while records wait for a log that takes
// nothing now; and at most, while its writes keep failing (the wait
// doubles with each failure in a row).
constexpr int kLogRetryMs = 200;
constexpr int kLogRetryLongestMs = 6400;

// Writes what waits, if anything does (one atomic load when nothing
// does); returns -1 when nothing waits any more, else how long the loop
// may sleep at most before it calls this again: kLogRetryMs, or longer
// while the log's writes fail. A loop calls it on every turn, so that a
// log that takes bytes again gets what waited, and the count of what was
// dropped, without waiting for a new record.
int retryWaitMs();

// Writes what waits, waiting at most `timeoutMs` for the destination (a
// process that leaves); what is still not written is counted as dropped.
// True when everything was written.
bool drain(int timeoutMs);

// Counts what still waits as dropped and forgets it: an image about to be
// replaced by exec, whose memory goes with it. Returns the drops that no
// summary record has reported yet (those just counted among them), for the
// image the exec starts to report. (Should the exec fail, this image
// reports them with the next record written.)
uint64_t dropWaiting();

// Drops an earlier image counted but did not report before its exec: the
// next summary record includes them. They are not counted again.
void reportEarlierDrops(uint64_t records);

// In a forked child that keeps its parent's log: forgets the parent's
// records still waiting (the parent writes and counts them), so that the
// child writes only its own.
void forgetInherited();

// Where this process counts the records it drops (the kLogRecordsDropped
// slot), or nullptr. Drops before it was set are counted when it is.
void countDropsIn(SharedCounters* counters);

// The descriptors the log holds of its own (a log file, standard error
// opened again), placed high: a process that closes every other
// descriptor with its log in place keeps these.
std::vector<int> ownDescriptors();

// Records this process's log dropped since its sink was configured
// (carried across configure()).
uint64_t droppedRecords();

// The time now in UTC as ISO 8601 with `fractionDigits` (3 or 6) digits of
// the second, as every log line of the server carries it.
std::string utcTimestamp(int fractionDigits);

// Checks that a log target can be opened for append. Throws std::system_error.
void checkTarget(const std::string& target);

}  // namespace reload::log

#define MOLT_LOG(sev) BOOST_LOG_SEV(::reload::log::logger::get(), ::reload::log::Severity::sev)
