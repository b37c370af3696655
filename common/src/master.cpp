#include "reload/master.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "reload/child_task.h"
#include "reload/config_check_line.h"
#include "reload/event_loop.h"
#include "reload/exec_handoff.h"
#include "reload/handoff.h"
#include "reload/listener_set.h"
#include "reload/listeners.h"
#include "reload/log.h"
#include "reload/master_report.h"
#include "reload/notify.h"
#include "reload/pid_file.h"
#include "reload/probation.h"
#include "reload/process.h"
#include "reload/reload_state.h"
#include "reload/signals.h"
#include "reload/synchronizer.h"
#include "reload/systemd.h"
#include "reload/sys_error.h"
#include "master_impl.h"

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

// ---------------------------------------------------------------- start-up

Boot readBoot() {
  Boot boot;
  InheritedHandoff inherited = takeInheritedHandoff();
  boot.afterExec = inherited.afterExec;
  boot.handoff = std::move(inherited.handoff);
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
    // timeout. Nothing else is open yet but the listeners.
    std::vector<int> keep;
    for (int i = 0; i < boot.inherited.count; ++i) keep.push_back(systemd::kListenFdsStart + i);
    try {
      closeAllFdsExcept(keep);
    } catch (const std::exception& e) {
      MOLT_LOG(kError) << "closing the refused handoff's descriptors: " << e.what();
    }
  }
  return boot;
}

}  // namespace

int MasterImpl::run() {
  loop_.add(signals_.fd(), EPOLLIN, &signalHandler_);
  if (boot_.handoff) {
    startFromHandoff(*boot_.handoff);
  } else {
    startFresh(boot_.afterExec);
  }
  reapChildren();  // exits that happened while the image was being replaced
  for (;;) {
    if (state_.phase() == Phase::kStopping) guard("shutdown", [this] { checkStopped(); });
    if (finished_) break;
    try {
      loop_.runOnce(-1);  // every deadline is a timer on the loop
    } catch (const std::exception& e) {
      MOLT_LOG(kError) << "master loop: " << e.what();
    }
  }
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

// Rebind mode, once this image serves for good: the old image's sockets
// close, after the admin endpoint stopped watching them.
void MasterImpl::releaseOldGenerationSockets() {
  std::vector<Listener> old = std::move(oldGenerationSockets_);
  oldGenerationSockets_.clear();
  serveAdmin();
}

void MasterImpl::startFresh(bool afterExec) {
  counters_shared_ = std::make_unique<SharedCounters>();
  errno = 0;
  int nice = getpriority(PRIO_PROCESS, 0);
  workerNice_ = errno == 0 ? nice : 0;
  config_ = loadConfig(options_.configPath, service_);
  log::configure(config_->master.log);
  log::setIdentity("master", 0);
  applyMasterNice();
  if (!boot_.startNote.empty()) MOLT_LOG(kError) << boot_.startNote;
  for (const auto& w : config_->warnings) MOLT_LOG(kWarning) << w;
  if (!config_->master.pidFile.empty()) {
    pid_t other = PidFile(config_->master.pidFile).read().value_or(0);
    if (other > 0 && other != pid_ && kill(other, 0) == 0) {
      std::ifstream comm("/proc/" + std::to_string(other) + "/comm");
      std::string name;
      std::getline(comm, name);
      // comm is the first 15 bytes of the process's name.
      if (name.rfind(serviceName().substr(0, 15), 0) == 0)
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
  // The start check removes the temp files of interrupted uploads; with
  // the previous image's workers still serving (an exec whose handoff was
  // refused), some of them are uploads in flight: then it is a reload's.
  const char* trigger = orphans_.empty() ? "start" : "reload";
  service_.applyCheck(*config_, trigger, service_.runCheck(*config_, trigger));
  armPeriodicProbe();
  MOLT_LOG(kInfo) << "master pid " << pid_ << " version " << service_.version()
                  << " starting with " << config_->path;
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

void MasterImpl::openOwnBinary() {
  // /proc/self/exe names the file this image runs even once it is replaced
  // or deleted; a rollback runs it from this descriptor.
  ownBinary_.reset(open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  if (!ownBinary_)
    MOLT_LOG(kWarning) << "cannot open this image's binary (/proc/self/exe): "
                       << std::strerror(errno)
                       << "; a seamless reload that fails its probation keeps this binary";
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
    info.state = child.draining ? WorkerState::kDraining : WorkerState::kReady;
    info.killAt = static_cast<double>(child.killAtUs) / 1e6;
    registry_.add(info);
    if (!child.draining) handoffOldWorkers_.push_back(child.pid);
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
  bool inherit = config_->master.listenerHandoff == ListenerHandoff::kInherit;
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
    writePidFile();
    startProbe("reload");
    // In rebind mode the old image's sockets still accept on these
    // addresses, by design.
    listeners_.bindMissing(wantedListeners(*config_), inherit);
  } catch (const std::exception& e) {
    handBack(e.what());
    return;
  }
  serveAdmin();
  armDrainKills();
  startGeneration(config_, ReloadKind::kSeamless);
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
    env.children.push_back(c);
  }
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
    admin_.finishBeforeExec(kAdminFinishBeforeExecMs);  // answered, not reset
    layout.apply(pid_);
    MOLT_LOG(kInfo) << "running the last good binary again in pid " << pid_;
    log::flush();
    std::vector<char*> args;
    for (const auto& a : options_.argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execveat(lastGoodBinary_.get(), "", args.data(), environ, AT_EMPTY_PATH);
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
    layout.apply(getpid());
    log::flush();
    std::vector<char*> args;
    for (const auto& a : options_.argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execveat(ownBinary_.get(), "", args.data(), environ, AT_EMPTY_PATH);
    MOLT_LOG(kCritical) << "synchronizer: execveat the last good binary: " << std::strerror(errno);
  } catch (const std::exception& e) {
    MOLT_LOG(kCritical) << "synchronizer: cannot run the last good binary: " << e.what();
  }
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

bool MasterImpl::signalChild(pid_t pid, int sig) {
  if (pid <= 1 || parentOf(pid) != pid_) {
    MOLT_LOG(kWarning) << "not signalling pid " << pid << ": not a child of this process";
    return false;
  }
  return kill(pid, sig) == 0;
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
  return static_cast<bool>(stateFd_) ||
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

void MasterImpl::performExec(std::shared_ptr<const LoadedConfig> next,
                             const std::string& executable) {
  bool inherit = next->master.listenerHandoff == ListenerHandoff::kInherit;
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
      params.timeoutSeconds = next->master.reloadTimeout + 10;
      params.probationSeconds = next->master.reloadProbation;
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
  env.config = encodeValidated(describeValidated(*next));
  env.binaryFd = ownBinary_ ? ownBinary_.get() : -1;
  env.probation = true;
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
                    << "; synchronizer pid " << sync << " holds the old listeners";
    log::flush();
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
      closeHandoffState("");
    } catch (const std::invalid_argument& e) {
      closeHandoffState(std::string("bad state message: ") + e.what());
    }
    return;
  }
  closeHandoffState("synchronizer closed the state pipe without a report");
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
      beginStop(true);
      break;
    case SIGINT:
    case SIGQUIT:
      MOLT_LOG(kInfo) << "SIG" << sigabbrev_np(static_cast<int>(info.ssi_signo)) << " (" << source
                      << "): immediate stop";
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
    BOOST_LOG_SEV(log::logger::get(), code == 0 ? log::Severity::kDebug : log::Severity::kWarning)
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
  if (checker_ && pid == checker_->task.pid()) {
    onCheckerExit(status);
    return;
  }
  for (auto it = readyPipes_.begin(); it != readyPipes_.end();)
    it = it->second.pid == pid ? readyPipes_.erase(it) : std::next(it);
  forgetReadiness(pid);
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
  notify::stopping(graceful ? "graceful shutdown" : "stopping");
  // A stop does not wait for a helper more than a moment after killing it.
  if (checker_) checker_->task.stop(kHelperStopGraceMs);
  if (validation_) validation_->task.stop(kHelperStopGraceMs);
  if (probe_) probe_->task.stop(kHelperStopGraceMs);
  if (notifyFd_) {  // a handover in progress: let the synchronizer go
    std::string msg = encodeNotify({NotifyMessage::Kind::kFail, 0, 0, "shutting down"});
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
  for (auto& path : ownedUnixPaths(listeners_.held())) unixPathsToRemove_.push_back(path);
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
  if (registry_.size() != 0 || syncPid_ || checker_ || validation_ || probe_) return;
  for (const auto& path : unixPathsToRemove_) unlink(path.c_str());
  removePidFile();
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
