// The seamless reload's exec side, in the image that is replaced: the
// synchronizer child that holds the listeners and the old workers across
// the exec, the exec of the checked binary with the handoff, and the runs
// of the last good binary (from the descriptor kept across the exec) on a
// rollback, by this image or by the synchronizer as a rescue.
#include "master_impl.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "reload/exec_handoff.h"
#include "reload/handoff.h"
#include "reload/listeners.h"
#include "reload/log.h"
#include "reload/process.h"
#include "reload/synchronizer.h"

namespace reload {

namespace {

// How long the master answers admin connections it accepted before it
// re-executes (it blocks for that long at most, on those sockets only).
constexpr int64_t kAdminFinishBeforeExecMs = 200;

}  // namespace

void MasterImpl::openOwnBinary() {
  // /proc/self/exe names the file this image runs even once it is replaced
  // or deleted; a rollback runs it from this descriptor.
  ownBinary_.reset(open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  if (!ownBinary_)
    MOLT_LOG(kWarning) << "cannot open this image's binary (/proc/self/exe): "
                       << std::strerror(errno)
                       << "; a seamless reload that fails its probation keeps this binary";
}

// What every image this one execs takes over: generations, timings and the
// workers it must go on supervising.
HandoffEnv MasterImpl::runningStateForExec() const {
  HandoffEnv env;
  env.lastGeneration = state_.lastGeneration();
  env.servingGeneration = state_.servingGeneration();
  env.startedEpoch = startedEpoch_;
  env.reloadStartedUs = reloadStartedUs_;
  env.workerNice = workerNice_;
  env.counters = counters_;
  env.workerNotifyFd = workerNotify_ ? workerNotify_.get() : -1;
  for (const auto& w : registry_.all()) {
    HandoffChild c;
    c.pid = w.pid;
    c.generation = w.generation;
    c.slot = w.slot;
    c.draining = w.state == WorkerState::kDraining;
    c.killAtUs = static_cast<int64_t>(w.killAt * 1e6);
    c.state = w.state;
    c.startedUs = static_cast<int64_t>(w.startedAt * 1e6);
    c.drainStartedUs = static_cast<int64_t>(w.drainStartedAt * 1e6);
    env.children.push_back(c);
  }
  for (const auto& [generation, sig] : drainSignals_)
    if (registry_.ofGeneration(generation).size() > 0) env.drainSignals.emplace_back(generation, sig);
  for (const auto& [announced, worker] : mainPids_) env.mainPids.emplace_back(announced, worker);
  for (const auto& [slot, count] : quickFailures_)
    if (count > 0) env.quickFailures.emplace_back(slot, count);
  return env;
}

// A seamless reload failed its probation: the old workers already accept
// again under this process. The last good binary takes this PID back, from
// the descriptor kept across the exec (its file may be gone), with the last
// good configuration in the handoff; it adopts the workers and starts
// nothing. If the exec fails, this image goes on supervising them with the
// last good configuration.
void MasterImpl::execLastGoodBinary() {
  HandoffEnv env = runningStateForExec();
  env.rollback = true;
  env.syncPid = 0;
  env.config = encodeValidated(describeValidated(*config_));
  if (lastReload_)
    env.lastReload = HandoffReload{lastReload_->kind, lastReload_->result, lastReload_->reason,
                                   lastReload_->durationMs, lastReload_->finishedEpoch,
                                   lastReload_->generation};
  std::vector<int> fds;
  std::vector<std::string> roles;
  for (const auto& h : listeners_.held()) {
    fds.push_back(h.listener.fd.get());
    roles.push_back(handoffFdName(h.listener));
  }
  std::string failure;
  try {
    env.syncPid = syncPid_;
    ExecLayout layout(std::move(env), notifyFd_ ? notifyFd_.get() : -1, -1,
                      counters_shared_->fd(), fds, roles);
    Fd binary = layout.copyClearOfListeners(lastGoodBinary_.get(), "last good binary");
    admin_.finishBeforeExec(kAdminFinishBeforeExecMs);  // answered, not reset
    layout.apply(pid_);
    MOLT_LOG(kInfo) << "running the last good binary again in pid " << pid_;
    log::flush();
    handLogDropsOn(log::dropWaiting());  // this image's memory goes with the exec
    std::vector<char*> args;
    for (const auto& a : options_.argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execveat(binary.get(), "", args.data(), environ, AT_EMPTY_PATH);
    failure = std::string("execveat: ") + std::strerror(errno);
  } catch (const std::exception& e) {
    failure = e.what();
  }
  serveAdmin();
  MOLT_LOG(kError) << "cannot run the last good binary again (" << failure
                   << "); this image supervises generation " << state_.servingGeneration()
                   << " with the last good configuration";
}

// In the synchronizer (a fork of this image, the last good one) when the
// new image died or hung: runs this image's binary in the synchronizer's
// process, with the listeners it holds and this image's validated
// configuration. It becomes the master under a new PID, starts a
// generation, and rewrites the pid file; the old workers drain once their
// parent is gone. Returns only if the exec failed.
void MasterImpl::rescueInSynchronizer(const std::string& why, const std::vector<int>& listeners,
                                      const std::vector<std::string>& roles) {
  try {
    HandoffEnv env;
    env.rollback = true;
    env.rescue = true;
    env.syncPid = 0;
    // The new image may have used the next number.
    env.lastGeneration = state_.lastGeneration() + 2;
    env.servingGeneration = env.lastGeneration;
    env.startedEpoch = startedEpoch_;
    env.reloadStartedUs = reloadStartedUs_;
    env.workerNice = workerNice_;
    env.counters = counters_;
    ++env.counters.reloadsFailed;
    ++env.counters.rollbacks;
    env.config = encodeValidated(describeValidated(*config_));
    env.lastReload = HandoffReload{"seamless", "rolled_back",
                                   why + "; the last good binary runs again as pid " +
                                       std::to_string(getpid()),
                                   0, time(nullptr), env.servingGeneration};
    ExecLayout layout(std::move(env), -1, -1, counters_shared_->fd(), listeners, roles);
    // This image's binary was opened early in its start, at a low number
    // the listeners' layout may take.
    Fd binary = layout.copyClearOfListeners(ownBinary_.get(), "this image's binary");
    layout.apply(getpid());
    log::flush();
    handLogDropsOn(log::dropWaiting());  // this image's memory goes with the exec
    std::vector<char*> args;
    for (const auto& a : options_.argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execveat(binary.get(), "", args.data(), environ, AT_EMPTY_PATH);
    MOLT_LOG(kCritical) << "synchronizer: execveat the last good binary: " << std::strerror(errno);
  } catch (const std::exception& e) {
    MOLT_LOG(kCritical) << "synchronizer: cannot run the last good binary: " << e.what();
  }
}

void MasterImpl::performExec(std::shared_ptr<const LoadedConfig> next,
                             const std::string& executable) {
  // Adopting: the workers keep every socket they hold, so nothing is
  // rebound, and the synchronizer has no old generation to drain; the new
  // image serves with the configuration they were started with.
  const bool adopt = service_.seamlessReload() == SeamlessReload::kAdoptWorkers;
  const LoadedConfig& guarded = adopt ? *config_ : *next;
  bool inherit = adopt || next->master.listenerHandoff == ListenerHandoff::kInherit;
  int notifyPipe[2];
  int statePipe[2];
  if (pipe2(notifyPipe, O_CLOEXEC) != 0) {
    finishReload(ReloadKind::kSeamless, "failed", std::string("pipe: ") + std::strerror(errno),
                 state_.servingGeneration());
    processPending();
    return;
  }
  Fd notifyRead(notifyPipe[0]), notifyWrite(notifyPipe[1]);
  if (pipe2(statePipe, O_CLOEXEC) != 0) {
    finishReload(ReloadKind::kSeamless, "failed", std::string("pipe: ") + std::strerror(errno),
                 state_.servingGeneration());
    processPending();
    return;
  }
  Fd stateRead(statePipe[0]), stateWrite(statePipe[1]);

  std::vector<pid_t> oldWorkers;
  if (!adopt)
    for (const auto& w : registry_.all())
      if (w.state != WorkerState::kDraining) oldWorkers.push_back(w.pid);
  std::vector<int> allListeners;
  std::vector<int> passedListeners;  // to the new image, as LISTEN_FDS
  // Rebind mode: TCP listeners the new generation binds afresh. The new
  // image still gets them, to hold for the old generation should its start
  // fail; once it serves, the synchronizer shuts them down.
  std::vector<int> rebound;
  std::vector<std::string> roles;
  for (const auto& h : listeners_.held()) {
    allListeners.push_back(h.listener.fd.get());
    passedListeners.push_back(h.listener.fd.get());
    roles.push_back(handoffFdName(h.listener));
    if (!inherit && h.listener.address.kind == ListenAddress::Kind::kTcp)
      rebound.push_back(h.listener.fd.get());
  }

  log::flush();
  pid_t sync = 0;
  try {
    sync = spawnChild("", [&]() -> int {
      std::vector<int> keep = allListeners;
      keep.push_back(notifyRead.get());
      keep.push_back(stateWrite.get());
      // For a rescue: the last good binary (this image's) and the counters.
      if (ownBinary_) keep.push_back(ownBinary_.get());
      keep.push_back(counters_shared_->fd());
      log::removeSinks();
      closeAllFdsExcept(keep);
      log::configure(config_->master.log);
      log::setIdentity("sync", state_.servingGeneration());
      SyncParams params;
      params.notifyFd = notifyRead.release();
      params.stateFd = stateWrite.release();
      params.listenerFds = allListeners;
      params.oldWorkers = oldWorkers;
      params.masterPid = pid_;
      params.drainSignal = drainSignalOf(state_.servingGeneration());
      params.shutdownFds = rebound;
      // An adopting image starts nothing: reload_timeout is ample.
      params.timeoutSeconds = guarded.master.reloadTimeout + (adopt ? 0 : 10);
      params.probationSeconds = guarded.master.reloadProbation;
      if (ownBinary_)
        params.rescue = [this, &allListeners, &roles](const std::string& why) {
          rescueInSynchronizer(why, allListeners, roles);
        };
      int code = runSynchronizer(params);
      log::flush();
      return code;
    });
  } catch (const std::exception& e) {
    finishReload(ReloadKind::kSeamless, "failed", std::string("synchronizer: ") + e.what(),
                 state_.servingGeneration());
    processPending();
    return;
  }
  notifyRead.reset();
  stateWrite.reset();

  HandoffEnv env = runningStateForExec();
  env.syncPid = sync;
  env.pending = state_.pending() == ReloadKind::kHup        ? "hup"
                : state_.pending() == ReloadKind::kSeamless ? "usr1"
                                                            : "";
  env.previousConfig = encodeValidated(describeValidated(*config_));
  // The new image runs what was validated, never the file again.
  env.config = encodeValidated(describeValidated(guarded));
  env.binaryFd = ownBinary_ ? ownBinary_.get() : -1;
  env.probation = true;
  env.adopt = adopt;
  if (adopt)
    for (const auto& [token, ready] : readyPipes_)
      if (ready.fd && ready.pid > 0) env.readyPipes.emplace_back(ready.pid, ready.fd.get());
  std::optional<ExecLayout> layout;
  try {
    layout.emplace(std::move(env), notifyWrite.get(), stateRead.get(), counters_shared_->fd(),
                   passedListeners, roles);
  } catch (const std::exception& e) {
    syncPid_ = sync;
    finishReload(ReloadKind::kSeamless, "failed", std::string("handoff: ") + e.what(),
                 state_.servingGeneration());
    processPending();
    return;  // the synchronizer sees EOF and leaves everything alone
  }
  notifyWrite.reset();
  stateRead.reset();
  std::string failure;
  // Admin connections go first: once the listeners sit at 3 and up, closing
  // a connection by its old fd number could close a listener.
  admin_.finishBeforeExec(kAdminFinishBeforeExecMs);
  try {
    layout->apply(pid_);
    MOLT_LOG(kInfo) << "re-executing " << executable << " in pid " << pid_
                    << "; synchronizer pid " << sync << " holds the old listeners"
                    << (adopt ? "; the new image adopts the running workers" : "");
    log::flush();
    handLogDropsOn(log::dropWaiting());  // this image's memory goes with the exec
    std::vector<char*> args;
    for (const auto& a : options_.argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(executable.c_str(), args.data());
    failure = "exec " + executable + ": " + std::strerror(errno);
  } catch (const std::exception& e) {
    failure = e.what();
  }
  // Still the old image: put everything back and go on serving.
  layout.reset();
  syncPid_ = sync;
  serveAdmin();
  finishReload(ReloadKind::kSeamless, "failed", failure, state_.servingGeneration());
  processPending();
}

}  // namespace reload
