// The generation supervisor: starts a generation's workers, decides when it
// serves or failed to start, keeps its slots filled, drains the generations
// it replaces with their deadlines, and runs the probation of a reloaded
// generation with its verdict (pass, or roll back to the last good one).
// The decisions themselves are pure functions (reload_state.h,
// reload_policy.h, probation.h); this is where the master acts on them.
#include "master_impl.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "reload/handoff.h"
#include "reload/log.h"
#include "reload/notify.h"
#include "reload/probation.h"
#include "reload/process.h"
#include "reload/sys_error.h"

namespace reload {

void MasterImpl::startGeneration(std::shared_ptr<const LoadedConfig> config, ReloadKind kind) {
  uint64_t generation = state_.beginGeneration(kind);
  startingConfig_ = config;
  (*counters_shared_)[generationAnswersSlot(generation)].store(0, std::memory_order_relaxed);
  (*counters_shared_)[generationServerErrorsSlot(generation)].store(0, std::memory_order_relaxed);
  startTimer_.arm(msAt(monotonicSeconds() + config->master.reloadTimeout));
  try {
    for (int slot = 0; slot < config->master.workers; ++slot)
      spawnWorker(generation, slot, config, true);
  } catch (const std::exception& e) {
    failStarting(std::string("cannot start workers: ") + e.what());
  }
}

pid_t MasterImpl::spawnWorker(uint64_t generation, int slot,
                              std::shared_ptr<const LoadedConfig> config, bool newSet) {
  const GenerationPolicy policy = service_.generationPolicy(*config);
  drainSignals_[generation] = policy.drainSignal;
  const bool usePipe = policy.readiness.mode == Readiness::kReadyPipe;
  const std::string notifySocket =
      policy.readiness.mode == Readiness::kNotify ? ensureWorkerNotifySocket() : std::string();
  Fd readEnd, writeEnd;
  if (usePipe) {
    int pipeFds[2];
    if (pipe2(pipeFds, O_CLOEXEC) != 0) throwSysError("pipe for worker readiness");
    readEnd.reset(pipeFds[0]);
    writeEnd.reset(pipeFds[1]);
    if (fcntl(readEnd.get(), F_SETFL, O_NONBLOCK) != 0) throwSysError("O_NONBLOCK on a ready pipe");
  }
  std::vector<int> publicFds = listenerFds("public", newSet);
  std::vector<WorkerListener> publicListeners;
  for (const Listener* l : listeners_.listeners("public", newSet))
    publicListeners.push_back(WorkerListener{l->fd.get(), l->address.name, l->address.kind,
                                             l->address.toString()});
  const uint64_t token = nextToken_++;
  if (usePipe) {
    auto& ready = readyPipes_
                      .try_emplace(token, 0, loop_,
                                   [this, token](uint32_t) {
                                     guard("worker readiness", [this, token] { onReadyPipe(token); });
                                   })
                      .first->second;
    try {
      ready.fd.watch(std::move(readEnd), EPOLLIN);
    } catch (...) {
      readyPipes_.erase(token);
      throw;
    }
  }
  std::optional<size_t> heartbeat = heartbeats_.take();
  log::flush();
  pid_t pid = 0;
  try {
    pid = spawnChild("", [&]() -> int {
    std::vector<int> keep = publicFds;
    if (writeEnd) keep.push_back(writeEnd.get());
    log::removeSinks();
    closeAllFdsExcept(keep);  // the ready pipe's read end too
    log::configure(config->master.log);
    log::setIdentity("worker", generation);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");  // the master's alone
    unsetenv("WATCHDOG_PID");
    WorkerContext context;
    context.generation = generation;
    context.slot = slot;
    context.masterPid = pid_;
    context.listenerFds = publicFds;
    context.listeners = publicListeners;
    context.readyFd = writeEnd ? writeEnd.release() : -1;
    context.notifySocket = notifySocket;
    context.nice = workerNice_;
    context.config = config;
    context.counters = counters_shared_.get();
    context.heartbeat = heartbeat ? heartbeats_.word(*heartbeat) : nullptr;
    int code = service_.runWorker(context);
    log::flush();
    return code;
    });
  } catch (...) {
    readyPipes_.erase(token);
    if (heartbeat) heartbeats_.giveBack(*heartbeat);
    throw;
  }
  if (heartbeat) heartbeatOf_[pid] = *heartbeat;
  if (usePipe) readyPipes_.at(token).pid = pid;
  WorkerInfo info;
  info.pid = pid;
  info.generation = generation;
  info.slot = slot;
  info.startedAt = monotonicSeconds();
  registry_.add(info);
  awaitingReady_.insert(pid);
  watchReadiness(pid, slot, policy);
  MOLT_LOG(kDebug) << "started worker pid " << pid << " generation " << generation << " slot "
                   << slot;
  return pid;
}

int MasterImpl::drainSignalOf(uint64_t generation) const {
  auto it = drainSignals_.find(generation);
  if (it != drainSignals_.end()) return it->second;
  // Workers an earlier image started: the signal of the configuration in force.
  return config_ ? service_.generationPolicy(*config_).drainSignal : SIGTERM;
}

void MasterImpl::completeStarting() {
  auto ended = state_.completeStart();
  const auto& gen = ended.started;
  auto config = std::exchange(startingConfig_, nullptr);
  startTimer_.cancel();
  uint64_t previous = ended.previousServing;
  log::setIdentity("master", gen.generation);
  switch (gen.kind) {
    case ReloadKind::kNone:
      MOLT_LOG(kInfo) << "serving generation " << gen.generation << " with "
                      << config->master.workers << " workers";
      for (pid_t pid : std::exchange(orphans_, {})) {
        if (!signalChild(pid, drainSignalOf(0))) continue;
        WorkerInfo info;
        info.pid = pid;
        info.state = WorkerState::kDraining;
        info.drainStartedAt = monotonicSeconds();
        info.killAt = info.drainStartedAt + config_->master.gracefulTimeout + 2;
        registry_.add(info);
      }
      notify::ready("serving generation " + std::to_string(gen.generation));
      armStartRecord();
      break;
    case ReloadKind::kHup: {
      auto lastGood = config_;
      config_ = config;
      log::configure(config_->master.log);
      applyMasterNice();
      if (beginProbation(previous, ReloadKind::kHup, lastGood)) {
        serveAdmin();
        break;  // the listener transaction ends with the probation
      }
      listeners_.commit();  // what it dropped is no longer served since the reload began
      serveAdmin();
      drainGeneration(previous, true);
      finishReload(ReloadKind::kHup, "ok", "", gen.generation);
      break;
    }
    case ReloadKind::kSeamless: {
      if (syncWaitsForProbation_ && notifyFd_ &&
          beginProbation(previous, ReloadKind::kSeamless, previousConfig_)) {
        // The old workers stand by (told by this image, their parent); the
        // synchronizer keeps its sockets until the verdict.
        handoffOldWorkers_.clear();
        NotifyMessage ready{NotifyMessage::Kind::kReady, pid_, gen.generation, ""};
        ready.probation = true;
        std::string msg = encodeNotify(ready);
        if (write(notifyFd_.get(), msg.data(), msg.size()) != static_cast<ssize_t>(msg.size())) {
          MOLT_LOG(kWarning) << "synchronizer pid " << syncPid_ << " is gone";
          notifyFd_.reset();
          closeHandoffState("synchronizer gone");
        } else {
          stateTimer_.arm(msAt(monotonicSeconds() + 10));
        }
        break;
      }
      drainGeneration(previous, false);
      listeners_.commit();  // closes the inherited sockets this configuration dropped
      releaseOldGenerationSockets();
      lastGoodBinary_.reset();  // no probation: this image's binary is the last good one
      std::string msg = encodeNotify({NotifyMessage::Kind::kReady, pid_, gen.generation, ""});
      bool told = notifyFd_ && write(notifyFd_.get(), msg.data(), msg.size()) ==
                                   static_cast<ssize_t>(msg.size());
      notifyFd_.reset();
      // The reload's record first: closing the handoff state may start a
      // queued reload, whose record this must not end.
      finishReload(ReloadKind::kSeamless, "ok", "", gen.generation);
      if (!told) {
        MOLT_LOG(kWarning) << "synchronizer pid " << syncPid_
                           << " is gone; draining the old generation from the master";
        closeHandoffState("synchronizer gone");
      } else {
        stateTimer_.arm(msAt(monotonicSeconds() + 10));
      }
      break;
    }
  }
  // The new image's disk checks: after the old generation was told, so
  // that their fork and their work are not on the way to serving.
  if (gen.kind == ReloadKind::kSeamless && state_.phase() != Phase::kStopping) startProbe("reload");
  enforceDrainingLimit();
  armDrainKills();
  armPeriodicProbe();
  respawnWaiting();
  processPending();
}

void MasterImpl::failStarting(const std::string& reason) {
  auto ended = state_.failStart();
  const auto& gen = ended.started;
  auto config = std::exchange(startingConfig_, nullptr);
  startTimer_.cancel();
  double now = monotonicSeconds();
  // Workers of the failed generation may already accept and hold requests:
  // they drain like any old generation rather than being killed mid-request.
  // One still starting is told once it reports ready (onReadyPipe), so that
  // it is never stopped half-way through its start.
  for (const auto& w : registry_.ofGeneration(gen.generation)) {
    // A worker whose readiness is not the ready pipe (a notification, a
    // delay, a probe) serves whatever it said: one that missed the
    // deadline is told at once, not left serving until graceful_timeout.
    bool pipeWorker = std::any_of(readyPipes_.begin(), readyPipes_.end(),
                                  [&](const auto& entry) { return entry.second.pid == w.pid; });
    if (w.state == WorkerState::kReady || !pipeWorker) {
      awaitingReady_.erase(w.pid);
      signalChild(w.pid, drainSignalOf(gen.generation));
    }
  }
  double grace = (config_ ? config_ : config)->master.gracefulTimeout;
  registry_.startDraining(gen.generation, now, now + grace + 2);
  armDrainKills();
  switch (gen.kind) {
    case ReloadKind::kNone:
      MOLT_LOG(kCritical) << "cannot start: " << reason;
      exitCode_ = 1;
      beginStop(false);
      return;
    case ReloadKind::kHup:
      listeners_.rollback();
      serveAdmin();  // the spares stay open: no longer served here
      finishReload(ReloadKind::kHup, "failed", reason, state_.servingGeneration());
      break;
    case ReloadKind::kSeamless: {
      revertToPreviousConfig();
      std::string msg = encodeNotify({NotifyMessage::Kind::kFail, 0, 0, reason});
      if (notifyFd_ && write(notifyFd_.get(), msg.data(), msg.size()) < 0) {
        // The synchronizer is gone; the old workers are ours either way.
      }
      notifyFd_.reset();
      stateFd_.reset();
      handoffOldWorkers_.clear();
      serveAdmin();
      finishReload(ReloadKind::kSeamless, "failed", reason, state_.servingGeneration());
      break;
    }
  }
  respawnWaiting();
  processPending();
}

// ---------------------------------------------------------------- probation

namespace {

// Which generation stands by is a word the workers read when the master's
// SIGUSR1 or SIGHUP wakes them (worker_signals.h), never the signal itself:
// both may be pending at once and are read in number order. The word is
// stored before the signals are sent.
void storeStandbyGeneration(SharedCounters& counters, uint64_t generation) {
  counters[kStandbyGeneration].store(generation, std::memory_order_release);
}

}  // namespace

// The generation that just became ready serves on probation while
// `previous`, the last good one, stands by. Returns false (nothing
// changed) when there is no probation: turned off, or no last good
// generation alive to go back to, or no configuration to go back to.
bool MasterImpl::beginProbation(uint64_t previous, ReloadKind kind,
                                const std::shared_ptr<const LoadedConfig>& lastGood) {
  double seconds = probationSeconds(kind, config_->master.reloadProbation);
  if (seconds <= 0 || previous == 0 || !lastGood) return false;
  auto standing = registry_.standBy(previous);
  if (standing.empty()) return false;
  state_.beginProbation(previous);
  // In rebind mode the last good workers accept on sockets of their own,
  // which the new generation does not: paused, the connections the kernel
  // queues there would wait for the verdict. They go on serving instead.
  // Canary: they go on serving, untouched, until the verdict.
  probationStyle_ = service_.generationPolicy(*config_).probation;
  bool pause = probationStyle_ == ProbationStyle::kStandby &&
               (kind != ReloadKind::kSeamless ||
                config_->master.listenerHandoff == ListenerHandoff::kInherit);
  if (pause) {
    storeStandbyGeneration(*counters_shared_, previous);
    for (pid_t pid : standing) signalChild(pid, SIGUSR1);
  }
  lastGoodConfig_ = lastGood;
  probationLimits_ = ProbationLimits{seconds, config_->master.probationMax5xxRatio,
                                     static_cast<uint64_t>(config_->master.probationMinRequests)};
  probationReadyAt_ = monotonicSeconds();
  probationServingMs_ = static_cast<double>(monotonicMicros() - reloadStartedUs_) / 1000.0;
  probationTimer_.arm(msAt(probationReadyAt_ + seconds));
  probationCheckTimer_.arm(loop_.nowMs() + 100);
  uint64_t generation = state_.servingGeneration();
  MOLT_LOG(kInfo) << reloadKindName(kind) << ": generation " << generation << " serving after "
                  << probationServingMs_ << " ms, on probation for " << seconds
                  << "s; generation " << previous
                  << (pause ? " stands by (" : probationStyle_ == ProbationStyle::kCanary ? " serves on, a canary probation (" : " serves on (") << standing.size()
                  << " workers)";
  notify::status("generation " + std::to_string(generation) + " on probation for " +
                 std::to_string(static_cast<int>(std::ceil(seconds))) + "s; generation " +
                 std::to_string(previous) + " stands by");
  return true;
}

void MasterImpl::checkProbation() {
  const auto& probation = state_.probation();
  if (!probation) return;
  AnswerCounts answers;
  answers.total = counters_shared_->load(generationAnswersSlot(probation->generation));
  answers.serverErrors = counters_shared_->load(generationServerErrorsSlot(probation->generation));
  std::optional<std::string> failure;
  if (auto why = answersFailProbation(answers, probationLimits_))
    failure = "generation " + std::to_string(probation->generation) + ": " + *why;
  const int64_t nowMs = monotonicMs();
  for (const auto& w : registry_.ofGeneration(probation->generation)) {
    if (failure) break;
    auto word = heartbeatOf_.find(w.pid);
    if (w.state == WorkerState::kDraining || word == heartbeatOf_.end()) continue;
    if (auto why = heartbeatFailsProbation(heartbeats_.load(word->second), nowMs))
      failure = "worker " + std::to_string(w.generation) + "." + std::to_string(w.slot) +
                " (pid " + std::to_string(w.pid) + ") " + *why;
  }
  switch (judgeProbation(monotonicSeconds(), probationReadyAt_ + probationLimits_.seconds,
                         failure.has_value())) {
    case ProbationVerdict::kFail: failProbation(*failure); return;
    case ProbationVerdict::kPass: passProbation(); return;
    case ProbationVerdict::kGoOn: break;
  }
  probationCheckTimer_.arm(loop_.nowMs() + 100);
}

void MasterImpl::passProbation() {
  probationTimer_.cancel();
  probationCheckTimer_.cancel();
  auto passed = state_.passProbation();
  MOLT_LOG(kInfo) << "generation " << passed.generation << " passed probation; generation "
                  << passed.lastGood << " drains";
  listeners_.commit();  // what the new configuration dropped is served no more
  drainGeneration(passed.lastGood, true);
  if (passed.kind == ReloadKind::kSeamless) {
    releaseOldGenerationSockets();
    if (notifyFd_) {
      std::string msg = encodeNotify({NotifyMessage::Kind::kPass, pid_, passed.generation, ""});
      if (write(notifyFd_.get(), msg.data(), msg.size()) < 0) {
        // The synchronizer is gone: it had nothing left to do.
      }
      notifyFd_.reset();
    }
    lastGoodBinary_.reset();  // this image's own binary is the last good one now
  }
  lastGoodConfig_.reset();
  // A rescued master that has since passed a reload of its own is stopped
  // like any other: its stop removes the record.
  rescued_ = false;
  serveAdmin();
  finishReload(passed.kind, "ok", "", passed.generation, probationServingMs_);
  enforceDrainingLimit();
  armDrainKills();
  respawnWaiting();
  processPending();
}

// The last good generation takes over again at once (one signal to each of
// its workers), the failed one drains, and the last good configuration
// (and, after a seamless reload, binary) is back.
void MasterImpl::failProbation(const std::string& reason) {
  probationTimer_.cancel();
  probationCheckTimer_.cancel();
  auto failed = state_.failProbation();
  MOLT_LOG(kError) << "generation " << failed.generation << " failed probation: " << reason;
  auto resumed = registry_.resume(failed.lastGood);
  // Canary: the last good workers never stopped serving; nothing to tell.
  if (probationStyle_ == ProbationStyle::kStandby) {
    storeStandbyGeneration(*counters_shared_, 0);
    for (pid_t pid : resumed) signalChild(pid, SIGHUP);
  }
  double now = monotonicSeconds();
  for (const auto& w : registry_.ofGeneration(failed.generation))
    if (w.state != WorkerState::kDraining) signalChild(w.pid, drainSignalOf(failed.generation));
  registry_.startDraining(failed.generation, now,
                          now + lastGoodConfig_->master.gracefulTimeout + 2);
  MOLT_LOG(kWarning) << "generation " << failed.lastGood << " (" << resumed.size()
                     << " workers) accepts again";
  auto plan = planRollback(failed.kind, resumed.size(), static_cast<bool>(lastGoodBinary_));
  ReloadKind dropped = state_.pending();
  if (pendingAfterProbation(ProbationVerdict::kFail, dropped) == ReloadKind::kNone &&
      dropped != ReloadKind::kNone) {
    state_.dropPending();
    MOLT_LOG(kWarning) << "dropping the " << reloadKindName(dropped)
                       << " queued during the failed probation; ask again";
  }
  if (failed.kind == ReloadKind::kHup) {
    config_ = lastGoodConfig_;
    log::configure(config_->master.log);
    applyMasterNice();
    listeners_.rollback();
  } else {
    // The synchronizer stays until the last good image runs (it is told so
    // by that image, or below if the exec fails): should this process die
    // before, it still runs the last good binary itself.
    previousConfig_ = lastGoodConfig_;
    revertToPreviousConfig();
  }
  lastGoodConfig_.reset();
  serveAdmin();
  std::string binaryNote = plan.execLastGoodBinary ? "; running the last good binary again" : "";
  finishReload(failed.kind, "rolled_back", reason, failed.lastGood, probationServingMs_);
  armDrainKills();
  if (plan.startLastGood)
    for (int slot : registry_.missingSlots(failed.lastGood, config_->master.workers))
      respawnsWaiting_.insert(slot);
  respawnWaiting();
  if (plan.execLastGoodBinary) execLastGoodBinary();  // returns only if the exec failed
  if (notifyFd_) {
    std::string msg = encodeNotify({NotifyMessage::Kind::kFail, 0, 0, "rolled back: " + reason});
    if (write(notifyFd_.get(), msg.data(), msg.size()) < 0) {
      // The synchronizer is gone; nothing of it is needed.
    }
    notifyFd_.reset();
  }
  processPending();
}

// -------------------------------------------------------- drain and respawn

void MasterImpl::drainGeneration(uint64_t generation, bool signal) {
  if (generation == 0) return;
  double now = monotonicSeconds();
  double killAt = now + config_->master.gracefulTimeout + 2;
  auto pids = registry_.startDraining(generation, now, killAt);
  armDrainKills();
  if (signal)
    for (pid_t pid : pids) signalChild(pid, drainSignalOf(generation));
  if (!pids.empty())
    MOLT_LOG(kInfo) << "draining generation " << generation << " (" << pids.size()
                    << " workers, graceful_timeout " << config_->master.gracefulTimeout << "s)";
}

// Reloads start only below the bound (reloadMustWait), so it is passed only
// when a new image adopted more than its configuration allows. Draining
// workers are never cut for it: graceful_timeout bounds their drain.
void MasterImpl::enforceDrainingLimit() {
  auto gens = registry_.drainingGenerations();
  size_t limit = static_cast<size_t>(config_->master.maxDrainingGenerations);
  if (gens.size() > limit)
    MOLT_LOG(kWarning) << gens.size() << " generations drain, over max_draining_generations "
                       << limit << "; no reload starts until they are fewer";
}

bool MasterImpl::maintainsWorkers() const { return state_.maintainsWorkers(); }

void MasterImpl::scheduleRespawn(int slot, double delaySeconds) {
  respawnsWaiting_.erase(slot);
  auto it = respawnTimers_.try_emplace(slot, loop_, guarded("respawn", [this, slot] {
                                         respawnSlot(slot);
                                       })).first;
  it->second.arm(msAt(monotonicSeconds() + delaySeconds));
}

void MasterImpl::respawnSlot(int slot) {
  if (!maintainsWorkers()) {
    // A new image is starting: its end decides (respawnWaiting).
    if (state_.phase() != Phase::kStopping) respawnsWaiting_.insert(slot);
    return;
  }
  // A slot no longer missing (its generation was replaced meanwhile) needs
  // nothing.
  auto missing = registry_.missingSlots(state_.servingGeneration(), config_->master.workers);
  if (std::find(missing.begin(), missing.end(), slot) == missing.end()) return;
  try {
    pid_t pid = spawnWorker(state_.servingGeneration(), slot, config_, state_.phase() != Phase::kReloading);
    MOLT_LOG(kInfo) << "respawned worker slot " << slot << " of generation "
                    << state_.servingGeneration() << " as pid " << pid;
  } catch (const std::exception& e) {
    MOLT_LOG(kError) << "cannot respawn worker slot " << slot << ": " << e.what();
    scheduleRespawn(slot, 1);
  }
}

void MasterImpl::respawnWaiting() {
  for (int slot : std::exchange(respawnsWaiting_, {})) respawnSlot(slot);
}

void MasterImpl::armDrainKills() {
  auto next = registry_.nextKillAt();
  if (next && state_.phase() != Phase::kStopping) drainKillTimer_.arm(msAt(*next));
  else drainKillTimer_.cancel();
}

void MasterImpl::killOverdueDrains() {
  if (state_.phase() == Phase::kStopping) return;  // the shutdown deadline rules
  for (pid_t pid : registry_.overdue(monotonicSeconds())) {
    auto* w = registry_.find(pid);
    MOLT_LOG(kWarning) << "old worker pid " << pid << " of generation " << w->generation
                       << " still running past graceful_timeout; killing it";
    signalChild(pid, SIGKILL);
    w->killAt = 0;
    ++counters_.drainKills;
  }
  armDrainKills();
}

}  // namespace reload
