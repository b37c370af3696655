// The worker side of the reload contract: what the master's signals mean to
// a worker, read from a signalfd on the worker's event loop.
//
//   SIGTERM (from anyone), or the master gone   drain: stop accepting, close
//                                               this process's listener copies
//                                               (never shutdown(): the next
//                                               generation accepts on the same
//                                               sockets), finish what is open,
//                                               exit 0
//   SIGUSR1 or SIGHUP from the master           stand by or serve, as the
//                                               shared standby word says
//   SIGINT, SIGQUIT                             quit at once
//   SIGUSR2                                     re-check the service's flags
//
// Standing by (probation) is a state, not an order carried by the signal:
// the master stores the generation that stands by in the shared counters
// (kStandbyGeneration, 0 for none) before it sends SIGUSR1 (stand by) or
// SIGHUP (take over again), and a worker woken by either reads the word
// and stands by iff it names the worker's generation. Two signals pending
// at once are read lowest number first (SIGHUP before SIGUSR1), so an order
// carried by the signal would be applied backwards; the word is always the
// latest. A worker reads it only when such a signal wakes it: none is lost
// before the signalfd exists (the master forks its workers with them
// blocked, so they wait pending), and a word left naming a generation that
// has drained is never read by anyone it could mislead.
//
// SIGUSR1 and SIGHUP count only when the master sent them with kill() or
// tgkill() (si_code SI_USER or SI_TKILL, whose si_pid the kernel fills in):
// from anyone else, or queued with a si_pid the sender chose
// (rt_sigqueueinfo), they are ignored.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "reload/event_loop.h"
#include "reload/signals.h"

namespace reload {

class SharedCounters;
struct WorkerContext;

enum class WorkerOrder { kDrain, kStandBy, kTakeOver, kQuit, kRecheck };

class WorkerSignals : public EventHandler {
 public:
  // Adds itself to `loop`. The handled signals must already be blocked
  // (the master forks its workers with them blocked). Takes the master's
  // pid, the worker's generation and the shared counters (which must
  // outlive this; std::invalid_argument when `context.counters` is null)
  // from `context`.
  WorkerSignals(EventLoop& loop, const WorkerContext& context);
  ~WorkerSignals() override;
  WorkerSignals(const WorkerSignals&) = delete;
  WorkerSignals& operator=(const WorkerSignals&) = delete;

  // Called as soon as a SIGTERM is read, before its order is taken: a
  // worker may treat connections that arrive in the same turn as drained.
  std::function<void()> onDrainAsked;

  // The orders since the last call, in the order they came; a drain is
  // also ordered, once, when the master is no longer this process's parent
  // (looked at on the first call, then at most every kParentCheckMs).
  // kStandBy and kTakeOver come only as changes (never twice in a row),
  // at most one per call, after any other order of the call; none comes
  // once a drain was ordered: a draining worker never accepts again.
  static constexpr int64_t kParentCheckMs = 100;
  // How often the loop stamps the worker's heartbeat word
  // (WorkerContext::heartbeat), from a timer of its own: a loop that stops
  // turning stops stamping.
  static constexpr int64_t kHeartbeatIntervalMs = 250;
  std::vector<WorkerOrder> take();

  void onEvents(uint32_t events) override;

 private:
  void stampHeartbeat();
  EventLoop& loop_;
  pid_t masterPid_;
  uint64_t generation_;
  SharedCounters& counters_;
  SignalFd signals_;
  std::atomic<int64_t>* heartbeat_;
  FunctionTimer heartbeatTimer_;
  std::vector<WorkerOrder> orders_;
  bool masterWoke_ = false;  // a SIGUSR1 or SIGHUP from the master since the last take()
  bool standingBy_ = false;  // as last ordered
  bool drainOrdered_ = false;
  bool orphanReported_ = false;
  bool parentChecked_ = false;
  int64_t lastParentCheckMs_ = 0;
};

// Closes this process's copy of a listener (a drain ends with it): takes it
// off `loop` if it is watched there, then close(), never shutdown(). The
// socket is shared with every worker of every generation; shutdown() would
// stop it for all of them and reset the connections in its accept queue,
// which the next generation accepts. Sets `fd` to -1 and returns 0, or the
// errno of close() (the copy is gone either way); a negative `fd` is left
// alone.
int closeListenerCopy(EventLoop& loop, int& fd);

// Makes the kernel send SIGTERM (drain) to this worker when its master
// dies, and says whether the master is still its parent: false means it
// died already, and the worker should go. setuid() clears the parent-death
// signal, so call this after dropping privileges.
bool watchMaster(const WorkerContext& context);

}  // namespace reload
