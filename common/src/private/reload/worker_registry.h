// Bookkeeping of the master's worker processes. Pure: no system calls, so the
// reload logic can be tested without forking.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace reload {

// kStandby: the last good generation during a reload's probation; it does
// not accept, finishes what it holds and keeps its listeners to take over.
enum class WorkerState { kStarting, kReady, kStandby, kDraining };

const char* workerStateName(WorkerState state);

struct WorkerInfo {
  pid_t pid = 0;
  uint64_t generation = 0;
  int slot = 0;
  WorkerState state = WorkerState::kStarting;
  double startedAt = 0;      // monotonic seconds
  double drainStartedAt = 0; // monotonic seconds; draining only
  double killAt = 0;         // monotonic seconds; draining only, 0 = never
};

class WorkerRegistry {
 public:
  void add(const WorkerInfo& info);
  WorkerInfo* find(pid_t pid);
  // Forgets the worker and returns what was known, or nothing for a pid that
  // is not a worker (a synchronizer, a config checker, a stranger).
  std::optional<WorkerInfo> remove(pid_t pid);

  void markReady(pid_t pid);
  // Marks every ready worker of `generation` as standing by, or every
  // standing-by one as ready again. Returns their pids.
  std::vector<pid_t> standBy(uint64_t generation);
  std::vector<pid_t> resume(uint64_t generation);
  // Marks every worker of `generation` as draining. Returns their pids.
  std::vector<pid_t> startDraining(uint64_t generation, double now, double killAt);

  std::vector<WorkerInfo> ofGeneration(uint64_t generation) const;
  std::vector<WorkerInfo> draining() const;
  std::vector<WorkerInfo> all() const;
  size_t readyCount(uint64_t generation) const;
  // Slots of `generation` in [0, wanted) with no live worker.
  std::vector<int> missingSlots(uint64_t generation, int wanted) const;
  // Draining generations, oldest first.
  std::vector<uint64_t> drainingGenerations() const;
  // Draining workers whose kill deadline has passed.
  std::vector<pid_t> overdue(double now) const;
  // Earliest kill deadline of a draining worker, if any.
  std::optional<double> nextKillAt() const;
  size_t size() const { return workers_.size(); }

 private:
  std::map<pid_t, WorkerInfo> workers_;
};

}  // namespace reload
