#include "reload/synchronizer.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "reload/handoff.h"
#include "reload/log.h"
#include "reload/process.h"
#include "reload/sys_error.h"

namespace reload {
namespace {

// Reads the notify line, or nothing on EOF or timeout (`timedOut` tells which).
std::optional<NotifyMessage> awaitNotify(int fd, double deadline, bool& timedOut) {
  std::string buffer;
  timedOut = false;
  for (;;) {
    if (auto msg = decodeNotify(buffer)) return msg;
    double left = deadline - monotonicSeconds();
    if (left <= 0) {
      timedOut = true;
      return std::nullopt;
    }
    pollfd pfd{fd, POLLIN, 0};
    int rc = poll(&pfd, 1, static_cast<int>(std::ceil(left * 1000)));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return std::nullopt;
    if (rc == 0) continue;
    char chunk[512];
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return std::nullopt;
    buffer.append(chunk, static_cast<size_t>(n));
    if (buffer.size() > 4096) return NotifyMessage{NotifyMessage::Kind::kFail, 0, 0, "notify line too long"};
  }
}


// Whether the master is gone: this process was reparented. An exiting
// process closes its descriptors before it is reaped and its children are
// reparented, so EOF on the notify pipe comes first; this waits up to
// `patience` seconds for the reparenting.
bool masterGone(pid_t masterPid, double patience) {
  double until = monotonicSeconds() + patience;
  for (;;) {
    if (getppid() != masterPid) return true;
    if (monotonicSeconds() >= until) return false;
    usleep(5000);
  }
}

// The new image is dead or hung: run the last good one here. Returns the
// exit code if that is impossible.
int rescue(const SyncParams& params, const std::string& why, bool hung) {
  if (!params.rescue) return hung ? kSyncTimedOut : kSyncMasterGone;
  if (hung) {
    MOLT_LOG(kCritical) << "synchronizer: " << why << "; killing pid " << params.masterPid;
    if (getppid() == params.masterPid) kill(params.masterPid, SIGKILL);
    if (!masterGone(params.masterPid, 5)) {
      MOLT_LOG(kCritical) << "synchronizer: pid " << params.masterPid << " does not die";
      return kSyncRescueFailed;
    }
  }
  MOLT_LOG(kCritical) << "synchronizer: " << why << "; running the last good binary as pid "
                      << getpid() << " with the listeners it holds";
  // The master it becomes pings systemd's watchdog from this PID. It never
  // did so while it waited: it cannot tell that the new image's loop turns.
  const char* watchdogPid = getenv("WATCHDOG_PID");
  if (watchdogPid && std::strtoll(watchdogPid, nullptr, 10) == params.masterPid)
    setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  params.rescue(why);
  return kSyncRescueFailed;
}

}  // namespace

const char* describeSyncExit(int code) {
  switch (code) {
    case kSyncDrained: return "old workers told to drain";
    case kSyncAborted: return "new image failed; old generation left serving";
    case kSyncMasterGone: return "new image closed the notify pipe without a word";
    case kSyncTimedOut: return "new image did not report in time";
    case kSyncRescueFailed: return "new image died and the last good one could not be run";
    case kSyncStopped: return "the master stops; both generations stop with it";
    default: return "internal error";
  }
}

int runSynchronizer(const SyncParams& params) noexcept {
  try {
    setProcessName(serviceName() + "-sync");
    MOLT_LOG(kInfo) << "synchronizer pid " << getpid() << " holds " << params.listenerFds.size()
                    << " listeners and " << params.oldWorkers.size()
                    << " old workers; waiting for re-exec'ed master pid " << params.masterPid;
    bool timedOut = false;
    auto msg = awaitNotify(params.notifyFd, monotonicSeconds() + params.timeoutSeconds, timedOut);
    if (!msg && timedOut && params.rescue && getppid() == params.masterPid)
      return rescue(params, "new image pid " + std::to_string(params.masterPid) +
                                " hangs: not ready nor failed within its reload_timeout",
                    true);
    if (!msg && !timedOut && params.rescue && masterGone(params.masterPid, 2))
      return rescue(params, "new image pid " + std::to_string(params.masterPid) +
                                " died before it was ready", false);
    if (!msg) {
      int code = timedOut ? kSyncTimedOut : kSyncMasterGone;
      MOLT_LOG(kError) << "synchronizer: " << describeSyncExit(code)
                       << "; old workers keep serving";
      return code;
    }
    if (msg->kind == NotifyMessage::Kind::kStop) {
      MOLT_LOG(kInfo) << "synchronizer: the master stops (" << msg->reason
                      << "); nothing to hand over";
      return kSyncStopped;
    }
    if (msg->kind == NotifyMessage::Kind::kFail) {
      MOLT_LOG(kWarning) << "synchronizer: new image failed (" << msg->reason
                         << "); old workers keep serving";
      return kSyncAborted;
    }
    SyncReport report;
    report.syncPid = getpid();
    report.drainSignalledUs = monotonicMicros();
    if (msg->probation) {
      // The new image puts the old workers on standby itself (it is their
      // parent) and rolls back by itself if its generation fails; this
      // process keeps its copies of the old sockets until it passes.
      if (!writeAll(params.stateFd, encodeSyncReport(report)))
        MOLT_LOG(kWarning) << "synchronizer: could not pass state to pid " << params.masterPid
                           << ": " << std::strerror(errno);
      MOLT_LOG(kInfo) << "synchronizer: generation " << msg->generation
                      << " serves on probation in pid " << msg->pid;
      auto verdict = awaitNotify(params.notifyFd,
                                 monotonicSeconds() + params.probationSeconds + 10, timedOut);
      if (!verdict && timedOut && getppid() == params.masterPid)
        return rescue(params, "new image pid " + std::to_string(params.masterPid) +
                                  " hangs: no verdict on the probation of generation " +
                                  std::to_string(msg->generation),
                      true);
      if (!verdict && !timedOut && masterGone(params.masterPid, 2))
        return rescue(params, "new image pid " + std::to_string(params.masterPid) +
                                  " died while generation " + std::to_string(msg->generation) +
                                  " was on probation",
                      false);
      if (verdict && verdict->kind == NotifyMessage::Kind::kStop) {
        MOLT_LOG(kInfo) << "synchronizer: the master stops (" << verdict->reason
                        << ") during the probation of generation " << msg->generation
                        << "; both generations stop with it";
        return kSyncStopped;
      }
      if (!verdict || verdict->kind != NotifyMessage::Kind::kPass) {
        MOLT_LOG(kWarning) << "synchronizer: probation of generation " << msg->generation
                           << " did not pass ("
                           << (verdict ? verdict->reason
                                       : timedOut ? "no verdict in time" : "notify pipe closed")
                           << ")";
        return verdict ? kSyncAborted : timedOut ? kSyncTimedOut : kSyncMasterGone;
      }
    } else {
      for (pid_t pid : params.oldWorkers) {
        // Only signal a process that is still the master's child: a pid
        // that was reaped and reused belongs to someone else.
        if (parentOf(pid) == params.masterPid && kill(pid, params.drainSignal) == 0) {
          report.signalled.push_back(pid);
        } else {
          report.alreadyGone.push_back(pid);
        }
      }
    }
    for (int fd : params.listenerFds) {
      // shutdown() acts on the socket, for every holder: only the sockets
      // rebind mode replaced get it (the new image, now serving, has
      // closed its copies).
      if (std::find(params.shutdownFds.begin(), params.shutdownFds.end(), fd) !=
          params.shutdownFds.end())
        shutdown(fd, SHUT_RDWR);
      close(fd);
    }
    if (!msg->probation && !writeAll(params.stateFd, encodeSyncReport(report)))
      MOLT_LOG(kWarning) << "synchronizer: could not pass state to pid " << params.masterPid
                         << ": " << std::strerror(errno);
    MOLT_LOG(kInfo) << "synchronizer: new generation " << msg->generation << " is serving in pid "
                    << msg->pid << "; told " << report.signalled.size()
                    << " old workers to drain"
                    << (params.shutdownFds.empty() ? "" : " and shut down the listeners it rebound");
    return kSyncDrained;
  } catch (...) {
    return kSyncInternal;
  }
}

}  // namespace reload
