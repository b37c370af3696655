#include "reload/worker_signals.h"

#include <sys/epoll.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <stdexcept>
#include <utility>

#include "reload/master.h"
#include "reload/shared_counters.h"
#include "reload/sys_error.h"

namespace reload {

namespace {

SharedCounters& countersOf(const WorkerContext& context) {
  if (!context.counters) throw std::invalid_argument("WorkerSignals: the worker context has no shared counters");
  return *context.counters;
}

// kill() and tgkill() (SI_USER, SI_TKILL): the kernel sets si_pid, and
// refuses these codes from a sender that names a pid of its choosing.
// rt_sigqueueinfo() lets any sender choose si_pid with a negative code.
bool sentBy(const signalfd_siginfo& info, pid_t pid) {
  return static_cast<pid_t>(info.ssi_pid) == pid &&
         (info.ssi_code == SI_USER || info.ssi_code == SI_TKILL);
}

}  // namespace

WorkerSignals::WorkerSignals(EventLoop& loop, const WorkerContext& context)
    : loop_(loop),
      masterPid_(context.masterPid),
      generation_(context.generation),
      counters_(countersOf(context)),
      heartbeat_(context.heartbeat),
      heartbeatTimer_(loop, [this] { stampHeartbeat(); }) {
  loop_.add(signals_.fd(), EPOLLIN, this);
  if (heartbeat_) stampHeartbeat();
}

void WorkerSignals::stampHeartbeat() {
  heartbeat_->store(monotonicMs(), std::memory_order_relaxed);
  heartbeatTimer_.armIn(kHeartbeatIntervalMs);
}

WorkerSignals::~WorkerSignals() { loop_.remove(signals_.fd()); }

void WorkerSignals::onEvents(uint32_t /*events*/) {
  while (auto info = signals_.read()) {
    const int signo = static_cast<int>(info->ssi_signo);
    switch (signo) {
      case SIGTERM:
        orders_.push_back(WorkerOrder::kDrain);
        drainOrdered_ = true;
        if (onDrainAsked) onDrainAsked();
        break;
      case SIGUSR1:
      case SIGHUP:
        // A wake-up only: which of the two came last says nothing (see
        // the header); the standby word is read in take().
        if (sentBy(*info, masterPid_)) masterWoke_ = true;
        break;
      case SIGINT:
      case SIGQUIT:
        orders_.push_back(WorkerOrder::kQuit);
        break;
      case SIGUSR2:
        orders_.push_back(WorkerOrder::kRecheck);
        break;
      default:
        break;
    }
  }
}

std::vector<WorkerOrder> WorkerSignals::take() {
  // The master's death comes at once as the parent-death SIGTERM; this
  // fallback runs a few times a second, not at every turn of a busy loop.
  if (!orphanReported_ && (!parentChecked_ || loop_.nowMs() - lastParentCheckMs_ >= kParentCheckMs)) {
    parentChecked_ = true;
    lastParentCheckMs_ = loop_.nowMs();
    if (getppid() != masterPid_) {
      orphanReported_ = true;
      drainOrdered_ = true;
      orders_.push_back(WorkerOrder::kDrain);
    }
  }
  if (std::exchange(masterWoke_, false) && !drainOrdered_) {
    // Pairs with the master's release store before its signal.
    bool standBy = counters_[kStandbyGeneration].load(std::memory_order_acquire) == generation_;
    if (standBy != standingBy_) {
      standingBy_ = standBy;
      orders_.push_back(standBy ? WorkerOrder::kStandBy : WorkerOrder::kTakeOver);
    }
  }
  std::vector<WorkerOrder> taken;
  taken.swap(orders_);
  return taken;
}

int closeListenerCopy(EventLoop& loop, int& fd) {
  if (fd < 0) return 0;
  if (loop.watching(fd)) loop.remove(fd);
  int err = ::close(std::exchange(fd, -1)) == 0 ? 0 : errno;
  return err == EINTR ? 0 : err;  // Linux closed it anyway
}

bool watchMaster(const WorkerContext& context) {
  if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) throwSysError("prctl PR_SET_PDEATHSIG");
  // The master may have died before the prctl: then no signal comes.
  return getppid() == context.masterPid;
}

}  // namespace reload
