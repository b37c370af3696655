// The decisions of a reload's probation, as pure functions: whether a
// generation on probation fails, passes or goes on, what a failure rolls
// back to and what becomes of a reload queued meanwhile. No system calls, so
// each has a unit test; the master does the I/O they call for.
//
// After every reload the new generation serves on probation while the last
// good one (the last that passed its own probation) stands by: its workers
// stopped accepting and finish what they hold, but keep their listeners, so
// taking over again is a signal.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "reload/reload_policy.h"

namespace reload {

struct ProbationLimits {
  double seconds = 10;           // reload_probation; 0: none
  double max5xxRatio = 0.5;      // probation_max_5xx_ratio
  uint64_t minRequests = 20;     // probation_min_requests
};

// How long the generation a reload of `kind` starts is on probation. The
// first start has no last good generation to fall back on, so none.
double probationSeconds(ReloadKind kind, double configured);

// How a worker process ended, as waitpid told it.
struct WorkerEnd {
  bool signaled = false;
  int signal = 0;      // when signaled
  int exitCode = 0;    // otherwise
  bool askedToStop = false;  // the master told it to drain or stop
};
// Why this end fails the probation of the worker's generation, or nothing.
// Any end the master did not ask for fails it: a signal or an error status
// is a crash, and even status 0 means the worker stopped being ready.
std::optional<std::string> exitFailsProbation(const WorkerEnd& end);

// Answers given by the generation on probation.
struct AnswerCounts {
  uint64_t total = 0;
  uint64_t serverErrors = 0;  // 5xx
};
// Why these answers fail probation, or nothing: more than max5xxRatio of
// them are 5xx, once there are at least minRequests.
std::optional<std::string> answersFailProbation(const AnswerCounts& answers,
                                                const ProbationLimits& limits);

// A worker's loop stamps its heartbeat word every 250 ms
// (WorkerSignals::kHeartbeatIntervalMs); one that has not for this long
// stopped being ready, alive or not. Two seconds are eight missed stamps:
// far more than a loop that serves from an event loop and leaves blocking
// work to a pool ever spends in one turn, even under a sanitizer on a
// loaded machine, and short beside a probation of seconds.
constexpr int64_t kHeartbeatTimeoutMs = 2000;
// Why a worker whose loop last stamped `stampMs` (0: never, so it has no
// heartbeat and is not judged by one) fails probation at `nowMs`, or
// nothing.
std::optional<std::string> heartbeatFailsProbation(int64_t stampMs, int64_t nowMs,
                                                   int64_t timeoutMs = kHeartbeatTimeoutMs);

enum class ProbationVerdict { kGoOn, kPass, kFail };
// A failure seen at any time fails; otherwise probation passes once `now`
// reaches `endsAt`.
ProbationVerdict judgeProbation(double now, double endsAt, bool failureSeen);

// What a failed probation rolls back to.
struct RollbackPlan {
  bool resumeLastGood = false;   // signal the standby workers to accept again
  bool startLastGood = false;    // none of them is left: start the last good configuration
  bool execLastGoodBinary = false;  // run the kept last good binary under the same PID
};
// `kind` is the reload on probation, `lastGoodWorkers` the standby workers
// still alive, `haveLastGoodBinary` whether this image holds the last good
// binary open (a seamless reload's new image does).
RollbackPlan planRollback(ReloadKind kind, size_t lastGoodWorkers, bool haveLastGoodBinary);

// A reload queued during probation: started once probation passed; dropped
// when it failed, since it would most likely start the same bad deploy
// again (the operator asks again once it is fixed).
ReloadKind pendingAfterProbation(ProbationVerdict verdict, ReloadKind pending);

}  // namespace reload
