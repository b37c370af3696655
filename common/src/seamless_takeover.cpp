// The seamless reload's takeover side, in the image that was exec'ed: it
// adopts the old image's workers, listeners and counters from the handoff,
// reads the synchronizer's report, and hands the old generation back to
// itself if its own start fails; the image a rollback ran adopts the last
// good generation. Sockets inherited from systemd are adopted here too.
#include "master_impl.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "reload/handoff.h"
#include "reload/listen_address.h"
#include "reload/listeners.h"
#include "reload/log.h"
#include "reload/notify.h"
#include "reload/process.h"
#include "reload/systemd.h"

namespace reload {

namespace {

// The address a socket key ("tcp:HOST:PORT", "unix:PATH") names.
ListenAddress addressOfKey(const std::string& key) {
  try {
    if (key.rfind("unix:", 0) == 0 || key.rfind("udp:", 0) == 0) return ListenAddress::parse(key);
    if (key.rfind("tcp:", 0) == 0) return ListenAddress::parse(key.substr(4));
  } catch (const std::invalid_argument&) {
  }
  return ListenAddress{};
}

}  // namespace

// Rebind mode, once this image serves for good: the old image's sockets
// close, after the admin endpoint stopped watching them.
void MasterImpl::releaseOldGenerationSockets() {
  std::vector<Listener> old = std::move(oldGenerationSockets_);
  oldGenerationSockets_.clear();
  serveAdmin();
}

void MasterImpl::startFromHandoff(const HandoffEnv& env) {
  if (env.rollback) {
    startRollbackImage(env);
    return;
  }
  openOwnBinary();
  if (env.binaryFd >= 0) {
    lastGoodBinary_.reset(env.binaryFd);
    try {
      setCloseOnExec(env.binaryFd, true);
    } catch (const std::exception&) {
      lastGoodBinary_.reset();
    }
  }
  syncWaitsForProbation_ = env.probation;
  // Recorded as the last good one only once its reload passed.
  lastGoodReport_.dir = options_.lastGoodDir;
  lastGoodReport_.startedFrom = "seamless_reload";
  if (env.workerNotifyFd >= 0) adoptWorkerNotifySocket(env.workerNotifyFd);
  startedEpoch_ = env.startedEpoch;
  workerNice_ = env.workerNice;
  counters_ = env.counters;
  reloadStartedUs_ = env.reloadStartedUs;
  if (env.lastReload)
    lastReload_ = ReloadRecord{env.lastReload->kind, env.lastReload->result,
                               env.lastReload->reason, env.lastReload->durationMs,
                               env.lastReload->finishedEpoch, env.lastReload->generation};
  notifyFd_.reset(env.notifyFd);
  stateFd_.watch(Fd(env.stateFd), EPOLLIN);
  std::vector<std::string> notes;
  // Only our own children are ever signalled: a pid that is not one is
  // dropped here, and signalChild checks again when it acts.
  if (parentOf(env.syncPid) == pid_) syncPid_ = env.syncPid;
  else notes.push_back("synchronizer pid " + std::to_string(env.syncPid) + " is not a child; ignored");
  for (const auto& child : env.children) {
    if (parentOf(child.pid) != pid_) {
      notes.push_back("pid " + std::to_string(child.pid) + " is not a child; ignored");
      continue;
    }
    WorkerInfo info;
    info.pid = child.pid;
    info.generation = child.generation;
    info.slot = child.slot;
    // The old generation serves until this image's does; adopted workers
    // go on as they were.
    info.state = child.draining ? WorkerState::kDraining
                 : env.adopt    ? child.state.value_or(WorkerState::kReady)
                                : WorkerState::kReady;
    info.killAt = static_cast<double>(child.killAtUs) / 1e6;
    info.startedAt = static_cast<double>(child.startedUs) / 1e6;
    info.drainStartedAt = static_cast<double>(child.drainStartedUs) / 1e6;
    registry_.add(info);
    if (!child.draining && !env.adopt) handoffOldWorkers_.push_back(child.pid);
  }
  for (const auto& [generation, sig] : env.drainSignals) drainSignals_[generation] = sig;
  for (const auto& [announced, worker] : env.mainPids)
    if (registry_.find(worker)) mainPids_[announced] = worker;
  for (const auto& [worker, fd] : env.readyPipes) {
    Fd pipe(fd);
    const WorkerInfo* w = registry_.find(worker);
    if (!env.adopt || !w || w->state != WorkerState::kStarting) continue;  // closed
    setCloseOnExec(fd, true);
    const uint64_t token = nextToken_++;
    auto& ready = readyPipes_
                      .try_emplace(token, worker, loop_,
                                   [this, token](uint32_t) {
                                     guard("worker readiness", [this, token] { onReadyPipe(token); });
                                   })
                      .first->second;
    ready.fd.watch(std::move(pipe), EPOLLIN);
  }
  std::string failure;
  try {
    setCloseOnExec(notifyFd_.get(), true);
    setCloseOnExec(stateFd_.get(), true);
  } catch (const std::exception& e) {
    failure = e.what();
  }
  try {
    counters_shared_ = std::make_unique<SharedCounters>(env.countersFd);
  } catch (const std::exception& e) {
    if (env.countersFd >= 0) notes.push_back(std::string("fresh request counters: ") + e.what());
    counters_shared_ = std::make_unique<SharedCounters>();
  }
  std::shared_ptr<const LoadedConfig> previous;
  if (!env.previousConfig.empty()) {
    try {
      previous = loadValidatedConfig(options_.configPath, decodeValidated(env.previousConfig),
                                     service_);
    } catch (const std::exception& e) {
      notes.push_back(std::string("the previous configuration is unusable: ") + e.what());
    }
  }
  if (failure.empty()) {
    try {
      // The configuration the old image validated comes with the handoff:
      // no disk, no name lookup on this loop, and no file that nothing
      // validated. Only an old image that does not carry it makes this one
      // load the file.
      config_ = env.config.empty()
                    ? loadConfig(options_.configPath, service_)
                    : loadValidatedConfig(options_.configPath, decodeValidated(env.config), service_);
    } catch (const std::exception& e) {
      failure = std::string("cannot load the configuration: ") + e.what();
    }
  }
  previousConfig_ = previous;
  if (!config_) config_ = previous;
  if (!config_) {
    // Nothing to serve with: the synchronizer leaves the old workers alone,
    // and they keep serving until they are stopped.
    MOLT_LOG(kCritical) << "re-exec'ed image has no usable configuration: " << failure;
    std::string msg = encodeNotify({NotifyMessage::Kind::kFail, 0, 0, failure});
    if (write(notifyFd_.get(), msg.data(), msg.size()) < 0) { /* synchronizer gone */ }
    throw std::runtime_error(failure);
  }
  log::configure(config_->master.log);
  log::setIdentity("master", env.servingGeneration);
  applyMasterNice();
  for (const auto& n : notes) MOLT_LOG(kWarning) << "handoff: " << n;
  for (const auto& w : config_->warnings) MOLT_LOG(kWarning) << w;
  if (env.adopt)
    MOLT_LOG(kInfo) << "re-exec'ed master pid " << pid_ << " version " << service_.version()
                    << " took over from synchronizer pid " << syncPid_ << "; adopting "
                    << registry_.ofGeneration(env.servingGeneration).size()
                    << " workers of generation " << env.servingGeneration << " as they run";
  else
    MOLT_LOG(kInfo) << "re-exec'ed master pid " << pid_ << " version " << service_.version()
                    << " took over from synchronizer pid " << syncPid_ << "; "
                    << handoffOldWorkers_.size() << " old workers of generation "
                    << env.servingGeneration << " keep serving until generation "
                    << env.lastGeneration + 1 << " is ready";
  state_.adoptHandoff(env.lastGeneration, env.servingGeneration,
                      env.pending == "hup"    ? ReloadKind::kHup
                      : env.pending == "usr1" ? ReloadKind::kSeamless
                                              : ReloadKind::kNone);
  if (!boot_.inheritedProblem.empty() && failure.empty()) failure = boot_.inheritedProblem;
  // Adopted workers accept on the sockets they hold: every one is kept.
  bool inherit = env.adopt || config_->master.listenerHandoff == ListenerHandoff::kInherit;
  try {
    adoptInheritedListeners(inherit || !failure.empty());
  } catch (const std::exception& e) {
    if (failure.empty()) failure = e.what();
  }
  if (!failure.empty()) {
    handBack(failure);
    return;
  }
  try {
    if (env.adopt) writePidFile();
    // In rebind mode the old image's sockets still accept on these
    // addresses, by design.
    listeners_.bindMissing(wantedListeners(*config_), inherit);
  } catch (const std::exception& e) {
    handBack(e.what());
    return;
  }
  serveAdmin();
  armDrainKills();
  if (env.adopt) {
    startProbe("reload");
    adoptRunningWorkers(env);
    return;
  }
  startGeneration(config_, ReloadKind::kSeamless);
  // The pid file is looked at while the new workers start, not before; one
  // that cannot be written fails the start as before (the workers that
  // started drain). The disk checks start once the generation serves
  // (completeStarting).
  if (!state_.starting()) return;  // failed to start already
  try {
    refreshPidFile();
  } catch (const std::exception& e) {
    failStarting(e.what());
  }
}

// The seamless reload of a service whose new image adopts the workers
// (SeamlessReload::kAdoptWorkers): they are the serving generation already,
// so this image serves as soon as it has taken them over. Those still
// starting are watched as the old image watched them; a worker that ended
// during the exec is reaped by run() right after this and respawned. The
// synchronizer, which drains nothing, waits through reload_probation (and
// runs the last good binary if this image dies meanwhile); reloads wait
// until it has gone.
void MasterImpl::adoptRunningWorkers(const HandoffEnv& env) {
  const GenerationPolicy policy = service_.generationPolicy(*config_);
  for (const auto& w : registry_.ofGeneration(state_.servingGeneration())) {
    if (w.state != WorkerState::kStarting) continue;
    awaitingReady_.insert(w.pid);
    if (policy.readiness.mode == Readiness::kReadyPipe) {
      bool piped = std::any_of(readyPipes_.begin(), readyPipes_.end(),
                               [&](const auto& entry) { return entry.second.pid == w.pid; });
      if (!piped) {
        // Its pipe did not come: nothing could tell this image it is ready.
        MOLT_LOG(kWarning) << "adopted worker pid " << w.pid
                           << " is starting and its ready pipe was not handed over; taken as ready";
        workerReady(w.pid, "adoption");
      }
      continue;
    }
    watchReadiness(w.pid, w.slot, policy);
    if (policy.readiness.mode == Readiness::kDelay && readyTimers_.count(w.pid))
      readyTimers_.at(w.pid).arm(msAt(w.startedAt + policy.readiness.delaySeconds));
  }
  // Reloads queued behind this one stay queued (the state pipe is open).
  ReloadKind pending = state_.pending();
  state_.adoptRollback(env.lastGeneration, env.servingGeneration);
  if (pending != ReloadKind::kNone) state_.request(pending, true);
  lastGoodConfig_.reset();
  armPeriodicProbe();
  // A slot that kept failing waits its delay again (from now): the exec
  // gives a crash loop no free respawn.
  for (const auto& [slot, count] : env.quickFailures) quickFailures_[slot] = count;
  for (int slot : registry_.missingSlots(state_.servingGeneration(), config_->master.workers)) {
    auto failing = quickFailures_.find(slot);
    scheduleRespawn(slot, failing == quickFailures_.end() ? 0 : respawnDelay(failing->second));
  }
  const double probation = config_->master.reloadProbation;
  NotifyMessage ready{NotifyMessage::Kind::kReady, pid_, state_.servingGeneration(), ""};
  ready.probation = probation > 0;
  std::string msg = encodeNotify(ready);
  bool told = notifyFd_ && write(notifyFd_.get(), msg.data(), msg.size()) ==
                               static_cast<ssize_t>(msg.size());
  MOLT_LOG(kInfo) << "generation " << state_.servingGeneration() << " adopted: "
                  << registry_.ofGeneration(state_.servingGeneration()).size()
                  << " workers serve on under version " << service_.version()
                  << (told && ready.probation
                          ? "; the synchronizer stands by for reload_probation " +
                                std::to_string(probation) + "s"
                          : "");
  if (!told) {
    notifyFd_.reset();
    MOLT_LOG(kWarning) << "synchronizer pid " << syncPid_ << " is gone";
    // The reload's record first: closing the handoff state may start a
    // queued reload, whose record this must not end.
    finishReload(ReloadKind::kSeamless, "ok", "", state_.servingGeneration());
    closeHandoffState("synchronizer gone");
    return;
  }
  if (!ready.probation) {
    notifyFd_.reset();
    lastGoodBinary_.reset();
    finishReload(ReloadKind::kSeamless, "ok", "", state_.servingGeneration());
    stateTimer_.arm(msAt(monotonicSeconds() + 10));
    return;
  }
  adoptionOnProbation_ = true;
  adoptionPassTimer_.arm(msAt(monotonicSeconds() + probation));
}

// This image lived through reload_probation: its binary is the last good
// one, and the synchronizer may go.
void MasterImpl::passAdoption() {
  if (!adoptionOnProbation_ || state_.phase() == Phase::kStopping) return;
  adoptionOnProbation_ = false;
  if (notifyFd_) {
    std::string msg =
        encodeNotify({NotifyMessage::Kind::kPass, pid_, state_.servingGeneration(), ""});
    if (write(notifyFd_.get(), msg.data(), msg.size()) < 0) {
      // The synchronizer is gone: it had nothing left to do.
    }
    notifyFd_.reset();
  }
  lastGoodBinary_.reset();
  finishReload(ReloadKind::kSeamless, "ok", "", state_.servingGeneration());
  // It exits now; its state pipe's end lets queued reloads start.
  stateTimer_.arm(msAt(monotonicSeconds() + 10));
}

// The image a rollback ran: the last good binary with the last good
// configuration, both from the handoff. Its generation's workers already
// accept again; it adopts them and every other child, and starts nothing
// unless a slot is empty.
void MasterImpl::startRollbackImage(const HandoffEnv& env) {
  openOwnBinary();
  if (env.workerNotifyFd >= 0) adoptWorkerNotifySocket(env.workerNotifyFd);
  startedEpoch_ = env.startedEpoch;
  workerNice_ = env.workerNice;
  counters_ = env.counters;
  reloadStartedUs_ = env.reloadStartedUs;
  if (env.lastReload)
    lastReload_ = ReloadRecord{env.lastReload->kind, env.lastReload->result,
                               env.lastReload->reason, env.lastReload->durationMs,
                               env.lastReload->finishedEpoch, env.lastReload->generation};
  std::vector<std::string> notes;
  try {
    counters_shared_ = std::make_unique<SharedCounters>(env.countersFd);
  } catch (const std::exception& e) {
    notes.push_back(std::string("fresh request counters: ") + e.what());
    counters_shared_ = std::make_unique<SharedCounters>();
  }
  config_ = loadValidatedConfig(options_.configPath, decodeValidated(env.config), service_);
  log::configure(config_->master.log);
  log::setIdentity("master", env.servingGeneration);
  applyMasterNice();
  size_t serving = 0;
  for (const auto& child : env.children) {
    if (parentOf(child.pid) != pid_) {
      notes.push_back("pid " + std::to_string(child.pid) + " is not a child; ignored");
      continue;
    }
    WorkerInfo info;
    info.pid = child.pid;
    info.generation = child.generation;
    info.slot = child.slot;
    bool current = child.generation == env.servingGeneration && !child.draining;
    info.state = current ? WorkerState::kReady : WorkerState::kDraining;
    info.killAt = static_cast<double>(child.killAtUs) / 1e6;
    registry_.add(info);
    serving += current;
  }
  for (const auto& n : notes) MOLT_LOG(kWarning) << "handoff: " << n;
  if (env.syncPid > 1 && parentOf(env.syncPid) == pid_) syncPid_ = env.syncPid;
  state_.adoptRollback(env.lastGeneration, env.servingGeneration);
  adoptInheritedListeners(true);
  listeners_.commit();  // inherited sockets this configuration does not have
  listeners_.bindMissing(wantedListeners(*config_), false);
  serveAdmin();
  armDrainKills();
  armPeriodicProbe();
  MOLT_LOG(kInfo) << "rolled back: master pid " << pid_ << " version " << service_.version()
                  << " runs again with generation " << env.servingGeneration << " (" << serving
                  << " workers)";
  for (int slot : registry_.missingSlots(env.servingGeneration, config_->master.workers))
    scheduleRespawn(slot, 0);
  // A rescue runs in the synchronizer's process: a new PID for the pid
  // file and for systemd (which takes MAINPID= only with NotifyAccess=all).
  try {
    writePidFile();
  } catch (const std::exception& e) {
    MOLT_LOG(kError) << "rolled back: " << e.what();
  }
  systemd::notify("MAINPID=" + std::to_string(pid_));
  if (env.notifyFd >= 0) {
    // The failed reload's synchronizer guarded this start: it may go now.
    Fd guard(env.notifyFd);
    std::string msg = encodeNotify({NotifyMessage::Kind::kFail, 0, 0, "rolled back"});
    if (write(guard.get(), msg.data(), msg.size()) < 0) {
      // It is gone already.
    }
  }
  notify::ready("rolled back: generation " + std::to_string(env.servingGeneration) +
                " serves with version " + service_.version() +
                (lastReload_ ? " (" + lastReload_->reason + ")" : ""));
  // The last good binary and configuration again, recorded already as a
  // rule. The note of the reload that failed stays until this image has
  // served reload_probation seconds: a rescue under systemd is killed with
  // its unit, whose restart then says what happened.
  imageIsGood_ = true;
  lastGoodReport_.dir = options_.lastGoodDir;
  lastGoodReport_.startedFrom = env.rescue ? "rescue" : "rollback";
  rescued_ = env.rescue;
  armStartRecord();
}

// Every failure of a new image before it is ready ends here: the old
// generation keeps serving under this master, the synchronizer is told, and
// the failure is visible in /status, the log and STATUS=.
void MasterImpl::handBack(const std::string& reason) {
  state_.beginGeneration(ReloadKind::kSeamless);
  startingConfig_ = config_;
  failStarting(reason);
}

// The old generation goes on serving with its own configuration: its log
// settings, worker count and listeners, not those of the start that failed.
void MasterImpl::revertToPreviousConfig() {
  if (previousConfig_ && previousConfig_ != config_) {
    config_ = previousConfig_;
    log::configure(config_->master.log);
    applyMasterNice();
  }
  // Rebind mode: the old generation accepts on the old image's TCP
  // sockets, so those are the ones to hold. A socket this image bound in
  // their place would share their SO_REUSEPORT group, and the kernel would
  // queue part of every new connection on it with no worker accepting.
  for (auto& old : oldGenerationSockets_) listeners_.replace(std::move(old));
  oldGenerationSockets_.clear();
  // The inherited sockets the failed configuration dropped are the old
  // generation's again: its respawned workers get them. Without the old
  // configuration, every inherited socket is kept.
  auto wanted = wantedListeners(*config_);
  std::vector<std::string> keys;
  if (previousConfig_) {
    for (const auto& w : wanted) keys.push_back(w.key);
  } else {
    keys = inheritedKeys_;
  }
  listeners_.keepOnly(keys);
  serveAdmin();  // before any of them closes
  armPeriodicProbe();
  listeners_.closeRemoving("only the failed configuration had it");
  // An admin address with no socket left (the inherited ones could not be
  // taken) is bound again: the master accepts there itself. A public one is
  // not: a socket no old worker accepts on would hold connections unserved.
  for (const auto& w : wanted) {
    if (w.role != "admin") continue;
    try {
      listeners_.bindMissing({w}, false);
    } catch (const std::exception& e) {
      MOLT_LOG(kError) << "handing back: " << e.what();
    }
  }
  serveAdmin();
}

void MasterImpl::adoptInheritedListeners(bool keep) {
  systemd::InheritedFds inherited = std::exchange(boot_.inherited, systemd::InheritedFds{});
  const int n = inherited.count;
  const std::vector<WantedListener> wanted = wantedListeners(*config_);
  for (int i = 0; i < n; ++i) {
    int fd = systemd::kListenFdsStart + i;
    std::string name = static_cast<size_t>(i) < inherited.names.size() ? inherited.names[static_cast<size_t>(i)] : "";
    std::string key = listeningSocketKey(fd);
    auto match = std::find_if(wanted.begin(), wanted.end(),
                              [&](const WantedListener& w) { return w.key == key; });
    bool taken = listeners_.holds(key);
    bool unixSocket = key.rfind("unix:", 0) == 0;
    bool udpSocket = key.rfind("udp:", 0) == 0;
    // A Unix socket's path cannot be bound twice, and a UDP socket's
    // receive queue must outlive every worker (closing it drops what is
    // queued), so rebind mode hands those over too; only TCP listeners are
    // bound afresh.
    bool adopt = keep || unixSocket || udpSocket;
    if (!key.empty()) inheritedKeys_.push_back(key);
    if (!adopt && !key.empty() && !taken) {
      MOLT_LOG(kInfo) << "holding inherited socket fd " << fd << " (" << key
                      << ") for the old generation until this image serves: "
                         "listener_handoff = rebind";
      Listener old;
      old.key = key;
      old.role = match != wanted.end() ? match->role : roleOfHandoffFdName(name);
      old.address = addressOfKey(key);
      old.fd.reset(fd);
      setCloseOnExec(fd, true);
      oldGenerationSockets_.push_back(std::move(old));
      continue;
    }
    if (!adopt || key.empty() || taken) {
      MOLT_LOG(kInfo) << "closing inherited socket fd " << fd << " (" << (key.empty() ? name : key)
                      << "): " << (adopt ? "not a listener wanted" : "listener_handoff = rebind");
      close(fd);
      continue;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0 && !(flags & O_NONBLOCK)) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    Listener listener;
    listener.key = key;
    listener.ownsPath = !fromSocketActivation(name, boot_.afterExec);
    if (match == wanted.end()) {
      // Not in this configuration: closed once this image's generation
      // serves; if it fails first, the old generation has it back.
      listener.role = roleOfHandoffFdName(name);
      listener.address = addressOfKey(key);
      listener.fd.reset(fd);
      MOLT_LOG(kInfo) << "keeping inherited socket fd " << fd << " (" << key
                      << ") until this image serves: not in the configuration";
      listeners_.adopt(std::move(listener), HeldListener::State::kRemoving);
      continue;
    }
    listener.role = match->role;
    listener.address = match->address;
    listener.fd.reset(fd);
    MOLT_LOG(kInfo) << "adopted inherited " << listener.role << " listener "
                    << listener.address.toString() << " on fd " << fd;
    listeners_.adopt(std::move(listener));
  }
}

void MasterImpl::readSyncReport() {
  char buf[4096];
  ssize_t n = read(stateFd_.get(), buf, sizeof buf);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n > 0) {
    stateBuffer_.append(buf, static_cast<size_t>(n));
    try {
      auto report = decodeSyncReport(stateBuffer_);
      if (!report) return;
      for (pid_t pid : report->signalled)
        handoffOldWorkers_.erase(
            std::remove(handoffOldWorkers_.begin(), handoffOldWorkers_.end(), pid),
            handoffOldWorkers_.end());
      for (pid_t pid : report->alreadyGone)
        handoffOldWorkers_.erase(
            std::remove(handoffOldWorkers_.begin(), handoffOldWorkers_.end(), pid),
            handoffOldWorkers_.end());
      MOLT_LOG(kInfo) << "synchronizer pid " << report->syncPid << " told "
                      << report->signalled.size() << " old workers to drain";
      if (adoptionOnProbation_) {
        // It waits for the verdict: the pipe stays open (reloads wait)
        // until it exits.
        stateBuffer_.clear();
        syncReported_ = true;
        stateTimer_.cancel();
        return;
      }
      closeHandoffState("");
    } catch (const std::invalid_argument& e) {
      closeHandoffState(std::string("bad state message: ") + e.what());
    }
    return;
  }
  closeHandoffState(std::exchange(syncReported_, false)
                        ? ""
                        : "synchronizer closed the state pipe without a report");
}

void MasterImpl::closeHandoffState(const std::string& why) {
  stateFd_.reset();
  stateTimer_.cancel();
  stateBuffer_.clear();
  if (!why.empty() && !handoffOldWorkers_.empty())
    MOLT_LOG(kWarning) << why << "; telling " << handoffOldWorkers_.size()
                       << " old workers to drain from the master";
  for (pid_t pid : handoffOldWorkers_)
    if (auto* w = registry_.find(pid)) signalChild(pid, drainSignalOf(w->generation));
  handoffOldWorkers_.clear();
  // A synchronizer we could not talk to has nothing left to do: it would
  // only wait out its timeout.
  if (!why.empty() && syncPid_) signalChild(syncPid_, SIGKILL);
  processPending();
}

}  // namespace reload
