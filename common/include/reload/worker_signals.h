// The worker side of the reload contract: what the master's signals mean to
// a worker, read from a signalfd on the worker's event loop.
//
//   SIGTERM (from anyone), or the master gone   drain: stop accepting, close
//                                               this process's listener copies
//                                               (never shutdown(): the next
//                                               generation accepts on the same
//                                               sockets), finish what is open,
//                                               exit 0
//   SIGUSR1 from the master                     stand by (probation): stop
//                                               accepting, keep the copies
//   SIGHUP from the master                      take over again: accept
//   SIGINT, SIGQUIT                             quit at once
//   SIGUSR2                                     re-check the service's flags
//
// SIGUSR1 and SIGHUP from anyone else are ignored: only the master moves a
// worker between serving and standing by.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "reload/event_loop.h"
#include "reload/signals.h"

namespace reload {

struct WorkerContext;

enum class WorkerOrder { kDrain, kStandBy, kTakeOver, kQuit, kRecheck };

class WorkerSignals : public EventHandler {
 public:
  // Adds itself to `loop`. The handled signals must already be blocked
  // (the master forks its workers with them blocked).
  WorkerSignals(EventLoop& loop, pid_t masterPid);
  ~WorkerSignals() override;
  WorkerSignals(const WorkerSignals&) = delete;
  WorkerSignals& operator=(const WorkerSignals&) = delete;

  // Called as soon as a SIGTERM is read, before its order is taken: a
  // worker may treat connections that arrive in the same turn as drained.
  std::function<void()> onDrainAsked;

  // The orders since the last call, in the order they came; a drain is
  // also ordered, once, when the master is no longer this process's parent
  // (looked at on the first call, then at most every kParentCheckMs).
  static constexpr int64_t kParentCheckMs = 100;
  std::vector<WorkerOrder> take();

  void onEvents(uint32_t events) override;

 private:
  EventLoop& loop_;
  pid_t masterPid_;
  SignalFd signals_;
  std::vector<WorkerOrder> orders_;
  bool orphanReported_ = false;
  bool parentChecked_ = false;
  int64_t lastParentCheckMs_ = 0;
};

// Makes the kernel send SIGTERM (drain) to this worker when its master
// dies, and says whether the master is still its parent: false means it
// died already, and the worker should go. setuid() clears the parent-death
// signal, so call this after dropping privileges.
bool watchMaster(const WorkerContext& context);

}  // namespace reload
