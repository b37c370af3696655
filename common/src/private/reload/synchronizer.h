// The synchronizer: a child forked by the master just before it execs itself.
// It holds the old listening sockets and knows the old workers, waits for the
// new image to say it is serving, and only then tells the old workers to drain
// and lets go of the sockets.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

namespace reload {

struct SyncParams {
  int notifyFd = -1;              // read end; the new image writes READY or FAIL
  int stateFd = -1;               // write end; our SyncReport goes here
  std::vector<int> listenerFds;   // our copies of the old listeners
  // Those of listenerFds the new image did not take (listener_handoff =
  // rebind, Swift's behaviour): shut down, not just closed, so the old
  // workers stop accepting on them for good.
  std::vector<int> shutdownFds;
  std::vector<pid_t> oldWorkers;  // workers serving when the reload began
  pid_t masterPid = 0;
  int drainSignal = SIGTERM;      // tells the old workers to drain
  double timeoutSeconds = 30;
  // The longest probation the new generation may be on; the synchronizer
  // waits that long (and a margin) for its verdict.
  double probationSeconds = 0;
  // Runs the last good image in this process (an exec that returns only if
  // it failed), given why. Called when the new image dies (its PID is gone)
  // or hangs (no word by the deadline: it is killed first) before its
  // generation passed probation, so that something serves again: the old
  // workers drain once their parent is gone, and these listeners never
  // closed. Empty: no rescue, the old behaviour.
  std::function<void(const std::string&)> rescue;
};

// Exit codes of the synchronizer, for the master's log.
enum SyncExit : int {
  kSyncDrained = 0,      // new image ready; old workers told to drain
  kSyncAborted = 1,      // new image reported a failure; nothing touched
  kSyncMasterGone = 2,   // notify pipe closed without a message
  kSyncTimedOut = 3,     // no word from the new image in time
  kSyncInternal = 4,
  kSyncRescueFailed = 5,  // the new image died and the last good one could not be run
  kSyncStopped = 6,       // the master stops; everything stops with it
};

const char* describeSyncExit(int code);

// Runs the synchronizer's whole life; returns its exit code. Never throws.
int runSynchronizer(const SyncParams& params) noexcept;

}  // namespace reload
