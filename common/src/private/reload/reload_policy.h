// The master's decisions about reloads and worker exits, as pure functions
// of its state: no system calls, so every decision has a unit test.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace reload {

// kProbation: a reload's new generation serves while the last good one
// stands by (see probation.h); reloads are queued meanwhile.
enum class Phase {
  kStarting, kRunning, kValidating, kReloading, kPreflight, kHandoff, kProbation, kStopping
};
// Ordered: a queued reload is replaced only by a stronger one.
enum class ReloadKind { kNone = 0, kHup = 1, kSeamless = 2 };

const char* phaseName(Phase phase);
const char* reloadKindName(ReloadKind kind);

struct ReloadDecision {
  enum class Action { kStart, kQueue, kIgnore } action;
  ReloadKind pending;  // what is queued afterwards
};

// A reload of `requested` kind arrives in `phase`, with `pending` queued and,
// if `awaitingReport`, the synchronizer of the last seamless reload not yet
// heard from. Reloads start only from a steady state; any other time they
// are queued and coalesced to the strongest one; while stopping, ignored.
ReloadDecision decideReload(Phase phase, bool awaitingReport, ReloadKind pending,
                            ReloadKind requested);

// Whether a reload may start with `drainingGenerations` still draining:
// only below max_draining_generations. At the bound a reload waits (queued,
// coalesced) for a generation to finish draining, which graceful_timeout
// bounds, rather than cutting one that still serves: this is also what
// bounds the rate of reloads.
bool drainingAllowsReload(size_t drainingGenerations, int maxDrainingGenerations);

// Whether the queued reload may start now.
bool pendingMayStart(Phase phase, bool awaitingReport, ReloadKind pending);

enum class WorkerExit { kIgnore, kFailStart, kRespawn };

// What a worker's exit means: it was draining (nothing to do), it belonged
// to the generation being started (that start fails), or it belonged to the
// serving generation (respawn it), in any phase but stopping.
WorkerExit decideWorkerExit(Phase phase, bool draining, uint64_t generation,
                            uint64_t servingGeneration, std::optional<uint64_t> startingGeneration);

// Seconds before respawning a worker that exited after `quickFailures`
// consecutive exits within kQuickExitSeconds of its start: 0.1 s doubling,
// at most 10 s.
constexpr double kQuickExitSeconds = 2.0;
double respawnDelay(int quickFailures);

// Whether the master keeps the serving generation at full strength (respawns
// workers) in `phase`.
bool maintainsWorkersIn(Phase phase, uint64_t servingGeneration);

}  // namespace reload
