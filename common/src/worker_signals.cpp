#include "reload/worker_signals.h"

#include <sys/epoll.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>

#include "reload/master.h"
#include "reload/sys_error.h"

namespace reload {

WorkerSignals::WorkerSignals(EventLoop& loop, pid_t masterPid) : loop_(loop), masterPid_(masterPid) {
  loop_.add(signals_.fd(), EPOLLIN, this);
}

WorkerSignals::~WorkerSignals() { loop_.remove(signals_.fd()); }

void WorkerSignals::onEvents(uint32_t /*events*/) {
  while (auto info = signals_.read()) {
    const int signo = static_cast<int>(info->ssi_signo);
    const bool fromMaster = static_cast<pid_t>(info->ssi_pid) == masterPid_;
    switch (signo) {
      case SIGTERM:
        orders_.push_back(WorkerOrder::kDrain);
        if (onDrainAsked) onDrainAsked();
        break;
      case SIGUSR1:
        if (fromMaster) orders_.push_back(WorkerOrder::kStandBy);
        break;
      case SIGHUP:
        if (fromMaster) orders_.push_back(WorkerOrder::kTakeOver);
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
      orders_.push_back(WorkerOrder::kDrain);
    }
  }
  std::vector<WorkerOrder> taken;
  taken.swap(orders_);
  return taken;
}

bool watchMaster(const WorkerContext& context) {
  if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) throwSysError("prctl PR_SET_PDEATHSIG");
  // The master may have died before the prctl: then no signal comes.
  return getppid() == context.masterPid;
}

}  // namespace reload
