// The master's reload state: its phase, the reload under way and the one
// queued behind it, the generation being started and the one serving. It
// makes the decisions of reload_policy.h and records their outcome, so that
// every transition is a method with a unit test and no fork; the master
// does the I/O each transition calls for.
#pragma once

#include <cstdint>
#include <optional>

#include "reload/reload_policy.h"

namespace reload {

class ReloadState {
 public:
  struct Starting {
    uint64_t generation = 0;
    ReloadKind kind = ReloadKind::kNone;  // kNone: the first start
  };
  // What an ended start leaves for the master to do.
  struct Ended {
    Starting started;
    uint64_t previousServing = 0;  // the generation that served before
  };

  Phase phase() const { return phase_; }
  ReloadKind pending() const { return pending_; }
  ReloadKind active() const { return active_; }
  const std::optional<Starting>& starting() const { return starting_; }
  // The generation on probation and the last good one standing by.
  struct Probation {
    uint64_t generation = 0;
    uint64_t lastGood = 0;
    ReloadKind kind = ReloadKind::kNone;
  };
  const std::optional<Probation>& probation() const { return probation_; }
  uint64_t servingGeneration() const { return serving_; }
  uint64_t lastGeneration() const { return last_; }

  // A new image took over from a handoff: a seamless reload is under way
  // until its generation is ready; `pending` came with it.
  void adoptHandoff(uint64_t lastGeneration, uint64_t servingGeneration, ReloadKind pending);

  // A reload is asked for. kStart makes it the active one; kQueue keeps the
  // strongest of the queued and the new; kIgnore (stopping) drops it.
  ReloadDecision request(ReloadKind kind, bool awaitingReport);
  // The queued reload, taken if it may start now; kNone otherwise.
  ReloadKind takePending(bool awaitingReport);

  // The active reload's configuration is being validated in a child.
  void beginValidation() { phase_ = Phase::kValidating; }
  // The new binary checks the new configuration (seamless reloads).
  void beginPreflight() { phase_ = Phase::kPreflight; }
  // Validation or the check ended (refused, or on to the next step).
  void endCheck();
  // The active reload ended (done, refused or failed).
  void finishReload() { active_ = ReloadKind::kNone; }

  // Starts `kind`'s generation: the next number after every one used.
  // In a new image the phase stays kHandoff until the start ends (a new
  // image that fails before its workers could start uses its number up and
  // fails the start at once).
  uint64_t beginGeneration(ReloadKind kind);
  // Every worker of the starting generation is ready: it serves now.
  Ended completeStart();
  // The start failed: the serving generation goes on, except at the first
  // start, which the master answers by stopping.
  Ended failStart();
  // Something unexpected broke the active reload (not a handoff's, which
  // ends only through its start). Returns whether one was failed.
  bool abandonActiveReload();

  // The generation that just started serves on probation; `lastGood` (the
  // one that served before) stands by. The reload stays active.
  void beginProbation(uint64_t lastGood);
  // Probation passed: the reload is done; returns it (lastGood drains).
  Probation passProbation();
  // Probation failed: the last good generation serves again; returns it.
  Probation failProbation();
  // A rolled back image took over: `serving` serves, nothing is under way.
  void adoptRollback(uint64_t lastGeneration, uint64_t servingGeneration);

  // Forgets the queued reload.
  void dropPending() { pending_ = ReloadKind::kNone; }

  void stop();

  // What an exited worker means now (see decideWorkerExit).
  WorkerExit workerExit(bool draining, uint64_t generation) const;
  // Whether the serving generation is kept at full strength now.
  bool maintainsWorkers() const { return maintainsWorkersIn(phase_, serving_); }

 private:
  Phase phase_ = Phase::kStarting;
  ReloadKind pending_ = ReloadKind::kNone;
  ReloadKind active_ = ReloadKind::kNone;
  std::optional<Starting> starting_;
  std::optional<Probation> probation_;
  ReloadKind lastStartedKind_ = ReloadKind::kNone;
  uint64_t serving_ = 0;
  uint64_t last_ = 0;
};

}  // namespace reload
