#include "reload/reload_policy.h"

#include <algorithm>
#include <cmath>

namespace reload {

const char* phaseName(Phase p) {
  switch (p) {
    case Phase::kStarting: return "starting";
    case Phase::kRunning: return "running";
    case Phase::kValidating: return "validating-config";
    case Phase::kReloading: return "reloading";
    case Phase::kPreflight: return "checking-new-binary";
    case Phase::kHandoff: return "handing-over";
    case Phase::kProbation: return "probation";
    case Phase::kStopping: return "stopping";
  }
  return "?";
}

const char* reloadKindName(ReloadKind k) {
  switch (k) {
    case ReloadKind::kHup: return "reload";
    case ReloadKind::kSeamless: return "seamless";
    default: return "none";
  }
}

ReloadDecision decideReload(Phase phase, bool awaitingReport, ReloadKind pending,
                            ReloadKind requested) {
  if (phase == Phase::kStopping) return {ReloadDecision::Action::kIgnore, pending};
  if (phase != Phase::kRunning || awaitingReport)
    return {ReloadDecision::Action::kQueue, std::max(pending, requested)};
  return {ReloadDecision::Action::kStart, pending};
}

bool drainingAllowsReload(size_t drainingGenerations, int maxDrainingGenerations) {
  return maxDrainingGenerations <= 0 ||
         drainingGenerations < static_cast<size_t>(maxDrainingGenerations);
}

bool pendingMayStart(Phase phase, bool awaitingReport, ReloadKind pending) {
  return pending != ReloadKind::kNone && phase == Phase::kRunning && !awaitingReport;
}

WorkerExit decideWorkerExit(Phase phase, bool draining, uint64_t generation,
                            uint64_t servingGeneration, std::optional<uint64_t> startingGeneration) {
  if (draining || phase == Phase::kStopping) return WorkerExit::kIgnore;
  if (startingGeneration && generation == *startingGeneration) return WorkerExit::kFailStart;
  if (generation == servingGeneration) return WorkerExit::kRespawn;
  return WorkerExit::kIgnore;
}

double respawnDelay(int quickFailures) {
  return std::min(10.0, 0.1 * std::pow(2.0, std::max(0, quickFailures)));
}

bool maintainsWorkersIn(Phase phase, uint64_t servingGeneration) {
  return servingGeneration != 0 &&
         (phase == Phase::kRunning || phase == Phase::kValidating ||
          phase == Phase::kReloading || phase == Phase::kPreflight);
}

}  // namespace reload
