#include "reload/reload_state.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace reload {

void ReloadState::adoptHandoff(uint64_t lastGeneration, uint64_t servingGeneration,
                               ReloadKind pending) {
  last_ = lastGeneration;
  serving_ = servingGeneration;
  pending_ = pending;
  active_ = ReloadKind::kSeamless;
  phase_ = Phase::kHandoff;
}

ReloadDecision ReloadState::request(ReloadKind kind, bool awaitingReport) {
  auto decision = decideReload(phase_, awaitingReport, pending_, kind);
  pending_ = decision.pending;
  if (decision.action == ReloadDecision::Action::kStart) active_ = kind;
  return decision;
}

ReloadKind ReloadState::takePending(bool awaitingReport) {
  if (!pendingMayStart(phase_, awaitingReport, pending_)) return ReloadKind::kNone;
  return std::exchange(pending_, ReloadKind::kNone);
}

void ReloadState::endCheck() {
  if (phase_ == Phase::kValidating || phase_ == Phase::kPreflight) phase_ = Phase::kRunning;
}

uint64_t ReloadState::beginGeneration(ReloadKind kind) {
  uint64_t generation = ++last_;
  starting_ = Starting{generation, kind};
  if (phase_ != Phase::kHandoff)
    phase_ = kind == ReloadKind::kNone ? Phase::kStarting : Phase::kReloading;
  return generation;
}

ReloadState::Ended ReloadState::completeStart() {
  if (!starting_) throw std::logic_error("no generation is starting");
  Ended ended{*starting_, serving_};
  starting_.reset();
  lastStartedKind_ = ended.started.kind;
  serving_ = ended.started.generation;
  phase_ = Phase::kRunning;
  return ended;
}

ReloadState::Ended ReloadState::failStart() {
  if (!starting_) throw std::logic_error("no generation is starting");
  Ended ended{*starting_, serving_};
  starting_.reset();
  if (ended.started.kind != ReloadKind::kNone) phase_ = Phase::kRunning;
  return ended;
}

void ReloadState::beginProbation(uint64_t lastGood) {
  if (phase_ != Phase::kRunning || serving_ == 0 || lastGood == 0 || lastGood == serving_)
    throw std::logic_error("no generation to put on probation");
  probation_ = Probation{serving_, lastGood, lastStartedKind_};
  phase_ = Phase::kProbation;
}

ReloadState::Probation ReloadState::passProbation() {
  if (!probation_) throw std::logic_error("no generation is on probation");
  Probation passed = *probation_;
  probation_.reset();
  phase_ = Phase::kRunning;
  return passed;
}

ReloadState::Probation ReloadState::failProbation() {
  if (!probation_) throw std::logic_error("no generation is on probation");
  Probation failed = *probation_;
  probation_.reset();
  serving_ = failed.lastGood;
  phase_ = Phase::kRunning;
  return failed;
}

void ReloadState::adoptRollback(uint64_t lastGeneration, uint64_t servingGeneration) {
  last_ = lastGeneration;
  serving_ = servingGeneration;
  pending_ = ReloadKind::kNone;
  active_ = ReloadKind::kNone;
  probation_.reset();
  phase_ = Phase::kRunning;
}

bool ReloadState::abandonActiveReload() {
  if (active_ == ReloadKind::kNone || phase_ == Phase::kHandoff ||
      phase_ == Phase::kStopping || phase_ == Phase::kProbation)
    return false;
  phase_ = Phase::kRunning;
  return true;
}

void ReloadState::stop() {
  phase_ = Phase::kStopping;
  starting_.reset();
  probation_.reset();
}

WorkerExit ReloadState::workerExit(bool draining, uint64_t generation) const {
  std::optional<uint64_t> startingGeneration;
  if (starting_) startingGeneration = starting_->generation;
  return decideWorkerExit(phase_, draining, generation, serving_, startingGeneration);
}

}  // namespace reload
