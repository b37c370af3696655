#include "reload/synchronizer.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
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


}  // namespace

const char* describeSyncExit(int code) {
  switch (code) {
    case kSyncDrained: return "old workers told to drain";
    case kSyncAborted: return "new image failed; old generation left serving";
    case kSyncMasterGone: return "new image closed the notify pipe without a word";
    case kSyncTimedOut: return "new image did not report in time";
    default: return "internal error";
  }
}

int runSynchronizer(const SyncParams& params) noexcept {
  try {
    setProcessName("moltd-sync");
    MOLT_LOG(kInfo) << "synchronizer pid " << getpid() << " holds " << params.listenerFds.size()
                    << " listeners and " << params.oldWorkers.size()
                    << " old workers; waiting for re-exec'ed master pid " << params.masterPid;
    bool timedOut = false;
    auto msg = awaitNotify(params.notifyFd, monotonicSeconds() + params.timeoutSeconds, timedOut);
    if (!msg) {
      int code = timedOut ? kSyncTimedOut : kSyncMasterGone;
      MOLT_LOG(kError) << "synchronizer: " << describeSyncExit(code)
                       << "; old workers keep serving";
      return code;
    }
    if (msg->kind == NotifyMessage::Kind::kFail) {
      MOLT_LOG(kWarning) << "synchronizer: new image failed (" << msg->reason
                         << "); old workers keep serving";
      return kSyncAborted;
    }
    SyncReport report;
    report.syncPid = getpid();
    report.drainSignalledUs = monotonicMicros();
    for (pid_t pid : params.oldWorkers) {
      // Only signal a process that is still the master's child: a pid that
      // was reaped and reused belongs to someone else.
      if (parentOf(pid) == params.masterPid && kill(pid, SIGTERM) == 0) {
        report.signalled.push_back(pid);
      } else {
        report.alreadyGone.push_back(pid);
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
    if (!writeAll(params.stateFd, encodeSyncReport(report)))
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
