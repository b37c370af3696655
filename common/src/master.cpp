// The master's start and stop, its event routing (signals, child exits),
// the reload queue and the error policy; master_impl.h names the files that
// hold the rest of it.
#include "reload/master.h"

#include <dirent.h>
#include <linux/filter.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "reload/exec_handoff.h"
#include "reload/handoff.h"
#include "reload/last_good.h"
#include "reload/listeners.h"
#include "reload/log.h"
#include "reload/notify.h"
#include "reload/pid_file.h"
#include "reload/process.h"
#include "reload/signals.h"
#include "reload/synchronizer.h"
#include "reload/systemd.h"
#include "master_impl.h"

namespace reload {

// ---------------------------------------------------------------- start-up

namespace {

Boot readBoot() {
  Boot boot;
  InheritedHandoff inherited = takeInheritedHandoff();
  boot.afterExec = inherited.afterExec;
  boot.handoff = std::move(inherited.handoff);
  log::reportEarlierDrops(inherited.logDrops);
  if (!inherited.untrusted.empty()) {
    boot.startNote =
        "ignoring the handoff in the environment (" + inherited.untrusted + "); starting fresh";
    MOLT_LOG(kError) << boot.startNote;
  }
  try {
    boot.inherited = systemd::takeListenFds();
  } catch (const std::runtime_error& e) {
    if (!boot.handoff) throw;  // refused at start, clearly
    boot.inheritedProblem = e.what();
  }
  if (boot.afterExec && !boot.handoff) {
    // A handoff this image refused still left its descriptors open: the
    // notify pipe among them, on which the synchronizer would wait out its
    // timeout. Nothing else is open yet but the listeners and the log.
    std::vector<int> keep;
    for (int i = 0; i < boot.inherited.count; ++i) keep.push_back(systemd::kListenFdsStart + i);
    // And the log's: it is in place (standard error), and a descriptor
    // closed under it would take its records to whatever reuses the number.
    for (int fd : log::ownDescriptors()) keep.push_back(fd);
    try {
      closeAllFdsExcept(keep);
    } catch (const std::exception& e) {
      MOLT_LOG(kError) << "closing the refused handoff's descriptors: " << e.what();
    }
  }
  return boot;
}

// A graceful stop closes every copy of the listeners, and the last close
// resets what waits in the accept queue: a connection whose handshake ends
// between a worker's last accept and its close would be reset. So before
// the workers are told, no new connection may join the queue. A TCP
// listener gets a socket filter that drops a bare SYN (the filter sees the
// TCP header: byte 13 holds the flags); the client sends it again a second
// later and is then refused by the closed socket. Segments with ACK pass,
// so handshakes under way still end in the queue, which the workers empty
// before they close their copies. (A Unix socket's path is removed
// instead: connect then fails with ENOENT.) Sockets systemd holds (socket
// activation) are left alone: they stay open, queue and all, for the next
// start.
void admitNoNewTcpConnections(const Listener& listener) {
  if (!listener.ownsPath || !listener.fd || listener.role != "public") return;
  if (listener.address.kind != ListenAddress::Kind::kTcp) return;
  static sock_filter dropBareSyn[] = {
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x10, 2, 0),  // ACK: accept
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x02, 0, 1),  // SYN: drop
      BPF_STMT(BPF_RET | BPF_K, 0),
      BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
  };
  sock_fprog program{static_cast<unsigned short>(std::size(dropBareSyn)), dropBareSyn};
  if (setsockopt(listener.fd.get(), SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof program) != 0)
    MOLT_LOG(kWarning) << "cannot stop new connections on " << listener.address.toString()
                       << " before the drain (SO_ATTACH_FILTER: " << std::strerror(errno)
                       << "); one that arrives as the last copy closes may be reset";
}

}  // namespace

int MasterImpl::run() {
  loop_.add(signals_.fd(), EPOLLIN, &signalHandler_);
  // Same PID across a seamless reload: every image reads the same values
  // and pings from its first moment, before its start's work.
  watchdogUs_ = systemd::watchdogUsec();
  if (watchdogUs_ > 0) pingWatchdog();
  if (boot_.handoff) {
    startFromHandoff(*boot_.handoff);
  } else {
    startFresh(boot_.afterExec);
  }
  if (watchdogUs_ > 0)
    MOLT_LOG(kDebug) << "systemd watchdog: WATCHDOG=1 every " << watchdogUs_ / 2000 << " ms";
  reapChildren();  // exits that happened while the image was being replaced
  log::countDropsIn(counters_shared_.get());
  for (;;) {
    if (state_.phase() == Phase::kStopping) guard("shutdown", [this] { checkStopped(); });
    if (finished_) break;
    try {
      // Every deadline is a timer on the loop; records waiting for the log
      // are tried again when it says (-1: none wait).
      loop_.runOnce(log::retryWaitMs());
    } catch (const std::exception& e) {
      MOLT_LOG(kError) << "master loop: " << e.what();
    }
  }
  log::countDropsIn(nullptr);  // the counters go with this object
  return exitCode_;
}

void MasterImpl::guard(const char* what, const std::function<void()>& handler) {
  try {
    handler();
  } catch (const std::exception& e) {
    onUnexpected(what, e.what());
  }
}

// Nothing that goes wrong while handling an event ends the master: the
// reload under way, if any, fails and the serving generation goes on.
void MasterImpl::onUnexpected(const char* what, const std::string& error) {
  MOLT_LOG(kError) << "unexpected error in " << what << ": " << error;
  try {
    if (state_.phase() == Phase::kStopping) return;
    if (state_.starting()) {
      failStarting(std::string(what) + ": " + error);
      return;
    }
    if (state_.abandonActiveReload()) {
      if (checker_) checker_->task.kill();
      if (validation_) validation_->task.kill();
      finishReload(state_.active(), "failed", std::string(what) + ": " + error,
                   state_.servingGeneration());
      processPending();
    }
  } catch (const std::exception& e) {
    MOLT_LOG(kError) << "while recovering: " << e.what();
  }
}

std::function<void()> MasterImpl::guarded(const char* what, std::function<void()> handler) {
  return [this, what, handler = std::move(handler)] { guard(what, handler); };
}

void MasterImpl::startFresh(bool afterExec) {
  counters_shared_ = std::make_unique<SharedCounters>();
  errno = 0;
  int nice = getpriority(PRIO_PROCESS, 0);
  workerNice_ = errno == 0 ? nice : 0;
  if (!options_.startValidated.empty()) {
    // Started from the last good record: its validated configuration, not
    // the file (which may be what broke the image before).
    config_ = loadValidatedConfig(options_.configPath, decodeValidated(options_.startValidated),
                                  service_);
    if (config_->digest != options_.startDigest)
      throw std::runtime_error("the last good record's configuration is not of its digest");
  } else {
    config_ = loadConfig(options_.configPath, service_);
  }
  log::configure(config_->master.log);
  log::setIdentity("master", 0);
  applyMasterNice();
  if (!boot_.startNote.empty()) MOLT_LOG(kError) << boot_.startNote;
  imageIsGood_ = true;
  lastGoodReport_.dir = options_.lastGoodDir;
  if (!options_.startNote.empty()) {
    lastGoodReport_.startedFrom = "last_good_record";
    lastGoodReport_.startNote = options_.startNote;
    MOLT_LOG(kWarning) << options_.startNote;
  }
  for (const auto& w : config_->warnings) MOLT_LOG(kWarning) << w;
  if (!config_->master.pidFile.empty()) {
    pid_t other = PidFile(config_->master.pidFile).read().value_or(0);
    if (other > 0 && other != pid_ && kill(other, 0) == 0) {
      std::ifstream comm("/proc/" + std::to_string(other) + "/comm");
      std::string name;
      std::getline(comm, name);
      // A zombie (a master killed with its unit, not reaped yet) runs no more.
      std::ifstream stat("/proc/" + std::to_string(other) + "/stat");
      std::string fields;
      std::getline(stat, fields);
      auto paren = fields.rfind(')');
      bool zombie = paren != std::string::npos && fields.compare(paren + 1, 3, " Z ") == 0;
      // comm is the first 15 bytes of the process's name.
      if (!zombie && name.rfind(serviceName().substr(0, 15), 0) == 0)
        throw std::runtime_error("already running as pid " + std::to_string(other) +
                                 " (pid file " + config_->master.pidFile + ")");
    }
  }
  openOwnBinary();
  if (afterExec) adoptOrphans();
  adoptInheritedListeners(true);
  listeners_.bindMissing(wantedListeners(*config_), true);
  serveAdmin();
  writePidFile();
  MOLT_LOG(kInfo) << "master pid " << pid_ << " version " << service_.version()
                  << " starting with " << config_->path;
  // The start check removes the temp files of interrupted uploads; with
  // the previous image's workers still serving (an exec whose handoff was
  // refused), some of them are uploads in flight: then it is a reload's.
  // It runs in a child, as every check does: the workers start once it
  // ended, or was given up on (kStartCheckTimeout), and the loop answers
  // signals and /status meanwhile.
  generationAfterCheck_ = true;
  startProbe(orphans_.empty() ? "start" : "reload", kStartCheckTimeout);
  armPeriodicProbe();
  if (!probe_) startFirstGeneration();  // it could not start: the workers start without it
}

void MasterImpl::startFirstGeneration() {
  generationAfterCheck_ = false;
  if (state_.phase() == Phase::kStopping) return;
  startGeneration(config_, ReloadKind::kNone);
}

// After an exec whose handoff could not be used, the previous image's
// workers are still this process's children and still serve. They keep
// serving until the fresh generation is ready, then drain.
void MasterImpl::adoptOrphans() {
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return;
  while (dirent* entry = readdir(proc)) {
    if (entry->d_name[0] < '1' || entry->d_name[0] > '9') continue;
    auto pid = static_cast<pid_t>(std::atoi(entry->d_name));
    if (pid > 1 && parentOf(pid) == pid_) orphans_.push_back(pid);
  }
  closedir(proc);
  if (!orphans_.empty())
    MOLT_LOG(kWarning) << orphans_.size()
                       << " children of the previous image keep serving until this one is ready";
}

bool MasterImpl::signalChild(pid_t pid, int sig) {
  if (pid <= 1 || parentOf(pid) != pid_) {
    MOLT_LOG(kWarning) << "not signalling pid " << pid << ": not a child of this process";
    return false;
  }
  return kill(pid, sig) == 0;
}

std::vector<WantedListener> MasterImpl::wantedListeners(const LoadedConfig& config) const {
  std::vector<WantedListener> wanted;
  for (const auto* list : {&config.master.bind, &config.master.adminBind})
    for (const auto& address : *list)
      wanted.push_back(WantedListener{address, list == &config.master.bind ? "public" : "admin",
                                      resolvedKey(address)});
  return wanted;
}

void MasterImpl::writePidFile() {
  if (!config_->master.pidFile.empty()) PidFile(config_->master.pidFile).write(pid_);
}

// A seamless image runs under the PID the image before wrote: rewriting a
// file that records it already is two fsyncs on the way to the new
// generation serving, for nothing. One that was removed, replaced (a
// symlink, another user's file) or records another PID is written again.
void MasterImpl::refreshPidFile() {
  if (config_->master.pidFile.empty()) return;
  PidFile file(config_->master.pidFile);
  if (!file.holds(pid_)) file.write(pid_);
}

void MasterImpl::applyMasterNice() {
  int wanted = config_->master.masterNice;
  if (wanted == appliedNice_) return;
  if (setpriority(PRIO_PROCESS, 0, wanted) == 0) {
    appliedNice_ = wanted;
    MOLT_LOG(kDebug) << "master runs at nice " << wanted << ", workers at " << workerNice_;
  } else {
    appliedNice_ = wanted;  // warn once per value
    MOLT_LOG(kNotice) << "cannot set master_nice " << wanted << ": " << std::strerror(errno)
                      << "; reloads may be slower while workers saturate the CPU";
  }
}

void MasterImpl::removePidFile() {
  if (config_ && !config_->master.pidFile.empty()) PidFile(config_->master.pidFile).removeIfOurs(pid_);
}

std::vector<int> MasterImpl::listenerFds(const std::string& role, bool newSet) const {
  return listeners_.fds(role, newSet);
}

// ------------------------------------------------------------------ reloads

bool MasterImpl::reloadMustWait() const {
  // A seamless exec waiting for the last good record is still its reload.
  return static_cast<bool>(stateFd_) || execWaiting_.has_value() ||
         !drainingAllowsReload(registry_.drainingGenerations().size(),
                               config_->master.maxDrainingGenerations);
}

void MasterImpl::requestReload(ReloadKind kind, const std::string& source) {
  auto decision = state_.request(kind, reloadMustWait());
  switch (decision.action) {
    case ReloadDecision::Action::kIgnore:
      MOLT_LOG(kInfo) << "ignoring " << reloadKindName(kind) << " from " << source
                      << ": shutting down";
      return;
    case ReloadDecision::Action::kQueue:
      MOLT_LOG(kInfo) << reloadKindName(kind) << " requested by " << source << " while "
                      << (state_.phase() == Phase::kRunning && !stateFd_
                              ? std::to_string(registry_.drainingGenerations().size()) +
                                    " generations drain (max_draining_generations)"
                              : std::string(phaseName(state_.phase())))
                      << "; queued";
      return;
    case ReloadDecision::Action::kStart:
      break;
  }
  MOLT_LOG(kInfo) << reloadKindName(kind) << " requested by " << source;
  reloadStartedUs_ = monotonicMicros();
  notify::reloading(kind == ReloadKind::kHup
                        ? "reloading configuration"
                        : "seamless reload: checking the new binary and configuration");
  startValidation(kind);
}

void MasterImpl::processPending() {
  ReloadKind kind = state_.takePending(reloadMustWait());
  if (kind != ReloadKind::kNone) requestReload(kind, "queue");
}

void MasterImpl::startHupReload(std::shared_ptr<const LoadedConfig> next) {
  // Reopen the current log file (logrotate); the new settings apply once
  // the new generation serves, so a failed reload keeps the old ones.
  log::configure(config_->master.log);
  try {
    listeners_.begin(wantedListeners(*next));
    serveAdmin();
  } catch (const std::exception& e) {
    serveAdmin();
    finishReload(ReloadKind::kHup, "failed", e.what(), state_.servingGeneration());
    processPending();
    return;
  }
  startGeneration(next, ReloadKind::kHup);
  startProbe("reload");
}

void MasterImpl::finishReload(ReloadKind kind, const std::string& result,
                              const std::string& reason, uint64_t generation, double durationMs) {
  ReloadRecord record;
  record.kind = reloadKindName(kind);
  record.result = result;
  record.reason = reason;
  record.durationMs = durationMs >= 0
                          ? durationMs
                          : static_cast<double>(monotonicMicros() - reloadStartedUs_) / 1000.0;
  record.finishedEpoch = time(nullptr);
  record.generation = generation;
  lastReload_ = record;
  state_.finishReload();
  if (!options_.lastGoodDir.empty()) {
    if (result == "ok") {
      // Passed (probation, or serving when there is none): the last good.
      if (kind == ReloadKind::kSeamless) imageIsGood_ = true;
      if (kind == ReloadKind::kSeamless) reloadNote_.clear();
      wantLastGoodRecord("generation " + std::to_string(generation) + " passed its " +
                         reloadKindName(kind) + " reload");
    } else if (kind == ReloadKind::kSeamless && imageIsGood_) {
      // Refused or failed before the exec: this image serves on, recorded.
      reloadNote_.clear();
      wantLastGoodRecord("it served on after a seamless reload " + result);
    }
  }
  if (result == "ok") {
    ++counters_.reloadsOk;
    MOLT_LOG(kInfo) << record.kind << " done: generation " << generation << " serving after "
                    << record.durationMs << " ms";
    notify::ready("serving generation " + std::to_string(generation) + "; " + record.kind +
                  " ok");
  } else if (result == "rolled_back") {
    ++counters_.reloadsFailed;
    ++counters_.rollbacks;
    MOLT_LOG(kError) << record.kind << " rolled back: " << reason << "; generation "
                     << generation << " serves again";
    notify::ready(record.kind + " rolled back: " + reason + "; generation " +
                  std::to_string(generation) + " serves again");
  } else {
    ++counters_.reloadsFailed;
    MOLT_LOG(kError) << record.kind << " " << result << ": " << reason
                     << "; generation " << generation << " keeps serving";
    notify::ready(record.kind + " " + result + ": " + reason + "; generation " +
                  std::to_string(generation) + " keeps serving");
  }
}

// ------------------------------------------------------------------- events

void MasterImpl::onSignal(const signalfd_siginfo& info) {
  std::string source = "signal from pid " + std::to_string(info.ssi_pid);
  switch (info.ssi_signo) {
    case SIGCHLD: reapChildren(); break;
    case SIGHUP: requestReload(ReloadKind::kHup, "SIGHUP (" + source + ")"); break;
    case SIGUSR1: requestReload(ReloadKind::kSeamless, "SIGUSR1 (" + source + ")"); break;
    case SIGUSR2:
      startProbe("signal");
      if (int recheck = config_ ? service_.generationPolicy(*config_).recheckSignal : 0)
        for (const auto& w : registry_.ofGeneration(state_.servingGeneration())) signalChild(w.pid, recheck);
      break;
    case SIGTERM:
      MOLT_LOG(kInfo) << "SIGTERM (" << source << "): graceful shutdown";
      askedStop_ = true;
      beginStop(true);
      break;
    case SIGINT:
    case SIGQUIT:
      MOLT_LOG(kInfo) << "SIG" << sigabbrev_np(static_cast<int>(info.ssi_signo)) << " (" << source
                      << "): immediate stop";
      askedStop_ = true;
      killEverything();
      break;
    default: break;
  }
}

void MasterImpl::reapChildren() {
  for (;;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    onChildExit(pid, status);
  }
}

void MasterImpl::onChildExit(pid_t pid, int status) {
  if (pid == syncPid_) {
    syncPid_ = 0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    BOOST_LOG_SEV(log::logger::get(), code == kSyncDrained   ? log::Severity::kDebug
                                      : code == kSyncStopped ? log::Severity::kInfo
                                                             : log::Severity::kWarning)
        << "synchronizer pid " << pid << " " << describeWaitStatus(status)
        << (code >= 0 ? std::string(": ") + describeSyncExit(code) : "");
    return;
  }
  if (validation_ && pid == validation_->task.pid()) {
    onValidationExit(status);
    return;
  }
  if (probe_ && pid == probe_->task.pid()) {
    onProbeExit(status);
    return;
  }
  if (recordWriter_ && pid == recordWriter_->task.pid()) {
    onRecordWriterExit(status);
    return;
  }
  if (checker_ && pid == checker_->task.pid()) {
    onCheckerExit(status);
    return;
  }
  for (auto it = readyPipes_.begin(); it != readyPipes_.end();)
    it = it->second.pid == pid ? readyPipes_.erase(it) : std::next(it);
  forgetReadiness(pid);
  if (auto word = heartbeatOf_.find(pid); word != heartbeatOf_.end()) {
    heartbeats_.giveBack(word->second);
    heartbeatOf_.erase(word);
  }
  auto info = registry_.remove(pid);
  if (!info) {
    MOLT_LOG(kDebug) << "reaped unknown child pid " << pid << ": " << describeWaitStatus(status);
    return;
  }
  auto action = state_.workerExit(info->state == WorkerState::kDraining, info->generation);
  if (const auto& probation = state_.probation();
      probation && info->state != WorkerState::kDraining) {
    if (info->generation == probation->generation) {
      WorkerEnd end;
      end.signaled = WIFSIGNALED(status);
      end.signal = end.signaled ? WTERMSIG(status) : 0;
      end.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
      if (auto why = exitFailsProbation(end)) {
        char after[64];
        std::snprintf(after, sizeof after, " %.1f s after ready",
                      monotonicSeconds() - probationReadyAt_);
        failProbation("worker " + std::to_string(info->generation) + "." +
                      std::to_string(info->slot) + " (pid " + std::to_string(pid) + ") " + *why +
                      after);
        return;
      }
    }
    if (info->generation == probation->lastGood) {
      // A standby worker that ends leaves its slot to the respawn after a
      // rollback; after a pass its generation drains anyway.
      MOLT_LOG(kWarning) << "standby worker pid " << pid << " of generation " << info->generation
                         << " " << describeWaitStatus(status);
      return;
    }
  }
  if (info->state == WorkerState::kDraining) {
    MOLT_LOG(kInfo) << "old worker pid " << pid << " of generation " << info->generation << " "
                    << describeWaitStatus(status);
    processPending();  // one may wait for a draining generation to end
    return;
  }
  std::string what = "worker pid " + std::to_string(pid) + " of generation " +
                     std::to_string(info->generation) + " " + describeWaitStatus(status);
  if (action == WorkerExit::kFailStart) {
    failStarting(what + " before it was ready");
    return;
  }
  if (action != WorkerExit::kRespawn) return;
  ++counters_.workerRestarts;
  if (startRecordPending_) {
    // The first generation is not proven yet: its window starts again.
    MOLT_LOG(kWarning) << "the last good record waits another reload_probation ("
                       << config_->master.reloadProbation << "s): " << what;
    armStartRecord();
  }
  double now = monotonicSeconds();
  bool quick = now - info->startedAt < kQuickExitSeconds;
  int failures = quick ? ++quickFailures_[info->slot] : (quickFailures_[info->slot] = 0);
  double delay = respawnDelay(failures);
  scheduleRespawn(info->slot, delay);
  MOLT_LOG(kWarning) << what << "; respawning slot " << info->slot << " in " << delay << "s";
}

void MasterImpl::beginStop(bool graceful) {
  if (state_.phase() == Phase::kStopping && graceful) return;
  auto starting = state_.starting();
  if (state_.probation())
    MOLT_LOG(kInfo) << "stopping during the probation of generation "
                    << state_.probation()->generation << ": both generations stop";
  state_.stop();
  gracefulStop_ = graceful;
  notify::stopping(graceful ? "graceful shutdown" : "stopping");
  // A stop does not wait for a helper more than a moment after killing it.
  if (checker_) checker_->task.stop(kHelperStopGraceMs);
  // A record half written is never in place (its rename is the last step).
  if (recordWriter_) recordWriter_->task.stop(kHelperStopGraceMs);
  execWaiting_.reset();
  execWaitTimer_.cancel();
  startRecordTimer_.cancel();
  startRecordPending_ = false;
  if (validation_) validation_->task.stop(kHelperStopGraceMs);
  if (probe_) probe_->task.stop(kHelperStopGraceMs);
  if (notifyFd_) {  // a handover in progress: let the synchronizer go
    std::string msg = encodeNotify({NotifyMessage::Kind::kStop, 0, 0,
                                    graceful ? "graceful shutdown" : "immediate stop"});
    if (write(notifyFd_.get(), msg.data(), msg.size()) < 0) { /* already gone */ }
    notifyFd_.reset();
  }
  stateFd_.reset();
  stateTimer_.cancel();
  handoffOldWorkers_.clear();
  startTimer_.cancel();
  drainKillTimer_.cancel();
  probeTimer_.cancel();
  probationTimer_.cancel();
  probationCheckTimer_.cancel();
  for (auto& [slot, timer] : respawnTimers_) timer.cancel();
  respawnsWaiting_.clear();
  double now = monotonicSeconds();
  double grace = config_ ? config_->master.gracefulTimeout : 0;
  // Before any worker closes its copies (see admitNoNewTcpConnections).
  for (const auto& held : listeners_.held()) admitNoNewTcpConnections(held.listener);
  for (const auto& old : oldGenerationSockets_) admitNoNewTcpConnections(old);
  for (const auto& path : ownedUnixPaths(listeners_.held()))
    if (unlink(path.c_str()) != 0 && errno != ENOENT)
      MOLT_LOG(kWarning) << "removing " << path << ": " << std::strerror(errno);
  for (const auto& w : registry_.all())
    signalChild(w.pid, graceful ? drainSignalOf(w.generation) : SIGKILL);
  // Every generation stops, the one on probation and the last good one
  // standing by included.
  for (const auto& w : registry_.all())
    if (w.state != WorkerState::kDraining) registry_.startDraining(w.generation, now, now + grace + 2);
  if (starting) registry_.startDraining(starting->generation, now, now + grace + 2);
  startingConfig_.reset();
  closeAdmin();
  serveAdmin();        // no listener: stopping
  listeners_.clear();  // workers hold their own copies until they have stopped accepting
  oldGenerationSockets_.clear();
  readyPipes_.clear();
  stopTimer_.arm(msAt(now + (graceful ? grace + 2 : 2)));
}

void MasterImpl::killEverything() {
  for (const auto& w : registry_.all()) signalChild(w.pid, SIGKILL);
  if (syncPid_) signalChild(syncPid_, SIGKILL);
  if (checker_) checker_->task.kill();
  if (validation_) validation_->task.kill();
  beginStop(false);
}

void MasterImpl::checkStopped() {
  if (registry_.size() != 0 || syncPid_ || checker_ || validation_ || probe_ || recordWriter_)
    return;
  removePidFile();
  if (rescued_ && askedStop_ && !options_.lastGoodDir.empty()) {
    MOLT_LOG(kWarning) << "stop of a master the synchronizer ran after the master before "
                          "died: the last good record in "
                       << options_.lastGoodDir << " stays for the next start";
  } else if (askedStop_ && exitCode_ == 0 && !options_.lastGoodDir.empty()) {
    // A stop an operator asked for, graceful or immediate: the next start
    // is from the files on disk (a package upgrade's restart runs the new
    // binary). Only a master that died leaves its record. Every child is
    // gone by now: nothing waits for this.
    const char* how = gracefulStop_ ? "graceful stop" : "immediate stop";
    try {
      LastGoodDir(options_.lastGoodDir).removeAll();
      MOLT_LOG(kInfo) << how << ": removed the last good record in " << options_.lastGoodDir;
    } catch (const std::exception& e) {
      MOLT_LOG(kError) << how << ": cannot remove the last good record: " << e.what();
    }
  }
  MOLT_LOG(kInfo) << "master pid " << pid_ << " stopped";
  log::flush();
  finished_ = true;
}

void MasterImpl::onStopDeadline() {
  if (state_.phase() != Phase::kStopping) return;
  for (const auto& w : registry_.all()) {
    MOLT_LOG(kWarning) << "worker pid " << w.pid
                       << " still running at the shutdown deadline; killing it";
    signalChild(w.pid, SIGKILL);
  }
  if (syncPid_) signalChild(syncPid_, SIGKILL);
  stopTimer_.arm(loop_.nowMs() + 1000);
}

void MasterImpl::pingWatchdog() {
  systemd::notify("WATCHDOG=1");
  watchdogTimer_.arm(msAt(monotonicSeconds() + static_cast<double>(watchdogUs_) / 2e6));
}

void MasterImpl::onStartDeadline() {
  if (!state_.starting() || state_.phase() == Phase::kStopping) return;
  failStarting("generation " + std::to_string(state_.starting()->generation) +
               " not ready within " + std::to_string(startingConfig_->master.reloadTimeout) +
               "s (reload_timeout)");
}

int runMaster(Service& service, const MasterOptions& options) {
  blockHandledSignals();
  setServiceName(service.name());
  setProcessName(serviceName() + "-master");
  MasterImpl master(service, options, readBoot());
  return master.run();
}

}  // namespace reload
