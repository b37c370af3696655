#include "reload/worker_registry.h"

#include <algorithm>
#include <set>

namespace reload {

const char* workerStateName(WorkerState state) {
  switch (state) {
    case WorkerState::kStarting: return "starting";
    case WorkerState::kReady: return "ready";
    case WorkerState::kStandby: return "standby";
    case WorkerState::kDraining: return "draining";
  }
  return "?";
}

void WorkerRegistry::add(const WorkerInfo& info) { workers_[info.pid] = info; }

WorkerInfo* WorkerRegistry::find(pid_t pid) {
  auto it = workers_.find(pid);
  return it == workers_.end() ? nullptr : &it->second;
}

std::optional<WorkerInfo> WorkerRegistry::remove(pid_t pid) {
  auto it = workers_.find(pid);
  if (it == workers_.end()) return std::nullopt;
  WorkerInfo info = it->second;
  workers_.erase(it);
  return info;
}

void WorkerRegistry::markReady(pid_t pid) {
  if (auto* w = find(pid); w != nullptr && w->state == WorkerState::kStarting)
    w->state = WorkerState::kReady;
}

std::vector<pid_t> WorkerRegistry::standBy(uint64_t generation) {
  std::vector<pid_t> pids;
  for (auto& [pid, w] : workers_) {
    if (w.generation != generation || w.state != WorkerState::kReady) continue;
    w.state = WorkerState::kStandby;
    pids.push_back(pid);
  }
  return pids;
}

std::vector<pid_t> WorkerRegistry::resume(uint64_t generation) {
  std::vector<pid_t> pids;
  for (auto& [pid, w] : workers_) {
    if (w.generation != generation || w.state != WorkerState::kStandby) continue;
    w.state = WorkerState::kReady;
    pids.push_back(pid);
  }
  return pids;
}

std::vector<pid_t> WorkerRegistry::startDraining(uint64_t generation, double now,
                                                 double killAt) {
  std::vector<pid_t> pids;
  for (auto& [pid, w] : workers_) {
    if (w.generation != generation || w.state == WorkerState::kDraining) continue;
    w.state = WorkerState::kDraining;
    w.drainStartedAt = now;
    w.killAt = killAt;
    pids.push_back(pid);
  }
  return pids;
}

std::vector<WorkerInfo> WorkerRegistry::ofGeneration(uint64_t generation) const {
  std::vector<WorkerInfo> out;
  for (const auto& [pid, w] : workers_)
    if (w.generation == generation) out.push_back(w);
  return out;
}

std::vector<WorkerInfo> WorkerRegistry::draining() const {
  std::vector<WorkerInfo> out;
  for (const auto& [pid, w] : workers_)
    if (w.state == WorkerState::kDraining) out.push_back(w);
  return out;
}

std::vector<WorkerInfo> WorkerRegistry::all() const {
  std::vector<WorkerInfo> out;
  for (const auto& [pid, w] : workers_) out.push_back(w);
  return out;
}

size_t WorkerRegistry::readyCount(uint64_t generation) const {
  return static_cast<size_t>(std::count_if(workers_.begin(), workers_.end(), [&](const auto& e) {
    return e.second.generation == generation && e.second.state == WorkerState::kReady;
  }));
}

std::vector<int> WorkerRegistry::missingSlots(uint64_t generation, int wanted) const {
  std::set<int> live;
  for (const auto& [pid, w] : workers_)
    if (w.generation == generation && w.state != WorkerState::kDraining) live.insert(w.slot);
  std::vector<int> missing;
  for (int slot = 0; slot < wanted; ++slot)
    if (!live.count(slot)) missing.push_back(slot);
  return missing;
}

std::vector<uint64_t> WorkerRegistry::drainingGenerations() const {
  std::set<uint64_t> gens;
  for (const auto& [pid, w] : workers_)
    if (w.state == WorkerState::kDraining) gens.insert(w.generation);
  return {gens.begin(), gens.end()};
}

std::vector<pid_t> WorkerRegistry::overdue(double now) const {
  std::vector<pid_t> out;
  for (const auto& [pid, w] : workers_)
    if (w.state == WorkerState::kDraining && w.killAt > 0 && w.killAt <= now) out.push_back(pid);
  return out;
}

std::optional<double> WorkerRegistry::nextKillAt() const {
  std::optional<double> next;
  for (const auto& [pid, w] : workers_)
    if (w.state == WorkerState::kDraining && w.killAt > 0 && (!next || w.killAt < *next))
      next = w.killAt;
  return next;
}

}  // namespace reload
