#include "reload/probation.h"

#include <string.h>

#include <cstdio>

namespace reload {

double probationSeconds(ReloadKind kind, double configured) {
  if (kind == ReloadKind::kNone || configured <= 0) return 0;
  return configured;
}

std::optional<std::string> exitFailsProbation(const WorkerEnd& end) {
  if (end.askedToStop) return std::nullopt;
  if (end.signaled) {
    const char* name = sigabbrev_np(end.signal);
    return std::string("killed by ") +
           (name ? std::string("SIG") + name : "signal " + std::to_string(end.signal));
  }
  if (end.exitCode != 0) return "exited with status " + std::to_string(end.exitCode);
  return std::string("stopped being ready (exited with status 0 unasked)");
}

std::optional<std::string> answersFailProbation(const AnswerCounts& answers,
                                                const ProbationLimits& limits) {
  if (answers.total == 0 || answers.total < limits.minRequests) return std::nullopt;
  // Integers first, so that a ratio of exactly the limit passes whatever
  // rounding a division would bring.
  double share = static_cast<double>(answers.serverErrors) / static_cast<double>(answers.total);
  if (share <= limits.max5xxRatio) return std::nullopt;
  char text[160];
  std::snprintf(text, sizeof text, "%llu of %llu answers were 5xx (%.0f%%, limit %.0f%%)",
                static_cast<unsigned long long>(answers.serverErrors),
                static_cast<unsigned long long>(answers.total), share * 100,
                limits.max5xxRatio * 100);
  return std::string(text);
}

std::optional<std::string> heartbeatFailsProbation(int64_t stampMs, int64_t nowMs,
                                                   int64_t timeoutMs) {
  if (stampMs == 0 || nowMs - stampMs <= timeoutMs) return std::nullopt;
  char text[120];
  std::snprintf(text, sizeof text, "stopped turning its loop: no turn for %.1f s (limit %.1f s)",
                static_cast<double>(nowMs - stampMs) / 1000.0,
                static_cast<double>(timeoutMs) / 1000.0);
  return std::string(text);
}

ProbationVerdict judgeProbation(double now, double endsAt, bool failureSeen) {
  if (failureSeen) return ProbationVerdict::kFail;
  return now >= endsAt ? ProbationVerdict::kPass : ProbationVerdict::kGoOn;
}

RollbackPlan planRollback(ReloadKind kind, size_t lastGoodWorkers, bool haveLastGoodBinary) {
  RollbackPlan plan;
  plan.resumeLastGood = lastGoodWorkers > 0;
  plan.startLastGood = lastGoodWorkers == 0;
  plan.execLastGoodBinary = kind == ReloadKind::kSeamless && haveLastGoodBinary;
  return plan;
}

ReloadKind pendingAfterProbation(ProbationVerdict verdict, ReloadKind pending) {
  return verdict == ProbationVerdict::kPass ? pending : ReloadKind::kNone;
}

}  // namespace reload
