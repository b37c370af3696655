// The master's state and its parts: private to the reload library (the
// public face is runMaster in reload/master.h). One class, one loop, one
// thread; its member functions live in a file per concern:
//   master.cpp: start, stop, the event routing (signals, child exits), the
//     reload queue and the error policy;
//   generation_supervisor.cpp: a generation's start and its end, its slots
//     and respawns, drains and their deadlines, probation and its verdict;
//   worker_readiness.cpp: when a new worker serves (its ready pipe, READY=1
//     on the workers' notify socket, a delay or a probe);
//   helper_tasks.cpp: the child processes run off the loop (validation of a
//     reload's configuration, the new binary's check, the disk checks, the
//     last good record);
//   seamless_exec.cpp: the image that is replaced (the synchronizer, the
//     exec, the last good binary run again on a rollback);
//   seamless_takeover.cpp: the image that takes over (the handoff, the hand
//     back of a failed start, inherited listeners, the synchronizer's report);
//   admin_routes.cpp: the admin endpoint (/status, /metrics, /healthcheck,
//     POST /reload and /reload-seamless).
#pragma once

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "reload/admin_server.h"
#include "reload/event_loop.h"
#include "reload/fd.h"
#include "reload/handoff.h"
#include "reload/heartbeats.h"
#include "reload/listener_set.h"
#include "reload/listeners.h"
#include "reload/master.h"
#include "reload/master_report.h"
#include "reload/probation.h"
#include "reload/reload_policy.h"
#include "reload/reload_state.h"
#include "reload/shared_counters.h"
#include "reload/signals.h"
#include "reload/systemd.h"
#include "reload/worker_registry.h"
#include "helper_tasks.h"
#include "worker_readiness.h"

namespace reload {

// What the process found when it started, read before it opens a
// descriptor of its own (so that nothing it opens is taken for an
// inherited socket).
struct Boot {
  bool afterExec = false;
  std::optional<HandoffEnv> handoff;
  std::string startNote;  // logged again once the log is configured
  systemd::InheritedFds inherited;
  std::string inheritedProblem;
};

// A deadline in monotonic seconds as the loop's milliseconds, rounded up so
// that whatever is due at it is due when its timer fires.
inline int64_t msAt(double seconds) { return static_cast<int64_t>(std::ceil(seconds * 1000)); }

class MasterImpl {
 public:
  MasterImpl(Service& service, MasterOptions options, Boot boot)
      : service_(service), options_(std::move(options)), boot_(std::move(boot)) {}
  int run();

 private:
  // master.cpp
  void startFresh(bool afterExec);
  void adoptOrphans();
  bool signalChild(pid_t pid, int sig);
  std::vector<WantedListener> wantedListeners(const LoadedConfig& config) const;
  std::vector<int> listenerFds(const std::string& role, bool newSet) const;
  void writePidFile();
  // writePidFile() unless the file already records this PID.
  void refreshPidFile();
  void applyMasterNice();
  void removePidFile();
  void requestReload(ReloadKind kind, const std::string& source);
  void processPending();
  bool reloadMustWait() const;
  void startHupReload(std::shared_ptr<const LoadedConfig> next);
  void finishReload(ReloadKind kind, const std::string& result, const std::string& reason,
                    uint64_t generation, double durationMs = -1);
  void onSignal(const signalfd_siginfo& info);
  void reapChildren();
  void onChildExit(pid_t pid, int status);
  void guard(const char* what, const std::function<void()>& handler);
  std::function<void()> guarded(const char* what, std::function<void()> handler);
  void onUnexpected(const char* what, const std::string& error);
  void beginStop(bool graceful);
  void killEverything();
  void onExecWaitTimeout();
  void checkStopped();
  void onStopDeadline();
  void onStartDeadline();
  void pingWatchdog();

  // generation_supervisor.cpp
  void startGeneration(std::shared_ptr<const LoadedConfig> config, ReloadKind kind);
  pid_t spawnWorker(uint64_t generation, int slot, std::shared_ptr<const LoadedConfig> config,
                    bool newSet);
  int drainSignalOf(uint64_t generation) const;
  void completeStarting();
  void failStarting(const std::string& reason);
  // Probation (see probation.h)
  bool beginProbation(uint64_t previous, ReloadKind kind,
                      const std::shared_ptr<const LoadedConfig>& config);
  // The verdict on the generation on probation at this moment: its answers
  // and its workers' heartbeats fail it; its end passes it.
  void checkProbation();
  void passProbation();
  void failProbation(const std::string& reason);
  void drainGeneration(uint64_t generation, bool signal);
  void enforceDrainingLimit();
  void scheduleRespawn(int slot, double delaySeconds);
  void respawnSlot(int slot);
  void respawnWaiting();
  void armDrainKills();
  void killOverdueDrains();
  bool maintainsWorkers() const;

  // worker_readiness.cpp
  void onReadyPipe(uint64_t token);
  // Readiness other than the ready pipe (see GenerationPolicy).
  void watchReadiness(pid_t pid, int slot, const GenerationPolicy& policy);
  void workerReady(pid_t pid, const char* how);
  void forgetReadiness(pid_t pid);
  std::string ensureWorkerNotifySocket();
  void adoptWorkerNotifySocket(int fd);
  void readWorkerNotify();
  void onWorkerNotify(pid_t sender, const std::string& message);
  void startReadyProbe(pid_t pid);
  void onReadyProbeEvent(pid_t pid, uint32_t events);
  void retryReadyProbe(pid_t pid);

  // helper_tasks.cpp
  void startProbe(const std::string& trigger, double timeoutSeconds = kProbeTimeout);
  void onProbeExit(int status);
  void startFirstGeneration();
  void armPeriodicProbe();
  void startValidation(ReloadKind kind);
  void onValidationExit(int status);
  void startSeamlessReload(std::shared_ptr<const LoadedConfig> next, const std::string& executable);
  // Forks the new binary's --check-config; throws std::system_error.
  void startChecker(double limitSeconds);
  // Kills a check no longer wanted; its exit is reaped as any unknown child's.
  void dropChecker();
  void onCheckerExit(int status);
  void checkerFinished(ChildTask::Outcome outcome);
  // The last good record (--last-good-dir; last_good.h): written off the
  // loop by a child, of this image's binary and configuration while this
  // image is good, with the reload note wanted now.
  void wantLastGoodRecord(const std::string& why);
  void startRecordWriter();
  void onRecordWriterExit(int status);
  // Once the first generation served reload_probation seconds without a
  // worker ending abnormally.
  void armStartRecord();
  bool recordBusy() const { return recordWriter_.has_value() || recordQueued_; }

  // seamless_exec.cpp
  void openOwnBinary();
  HandoffEnv runningStateForExec() const;
  void performExec(std::shared_ptr<const LoadedConfig> config, const std::string& executable);
  void execLastGoodBinary();
  void rescueInSynchronizer(const std::string& why, const std::vector<int>& listeners,
                            const std::vector<std::string>& roles);

  // seamless_takeover.cpp
  void startFromHandoff(const HandoffEnv& env);
  void startRollbackImage(const HandoffEnv& env);
  void handBack(const std::string& reason);
  void revertToPreviousConfig();
  void adoptRunningWorkers(const HandoffEnv& env);
  void passAdoption();
  void adoptInheritedListeners(bool keep);
  void releaseOldGenerationSockets();
  void readSyncReport();
  void closeHandoffState(const std::string& why);

  // admin_routes.cpp
  void closeAdmin();
  void serveAdmin();
  AdminResponse handleAdmin(const AdminRequest& request);
  MasterSnapshot snapshot() const;
  std::string statusJson();
  std::string metricsText();

  Service& service_;
  MasterOptions options_;
  Boot boot_;
  // Everything below that watches a descriptor or a deadline does it on
  // this loop, so it is declared first and destroyed last.
  EventLoop loop_;
  pid_t pid_ = getpid();
  // systemd's watchdog (WatchdogSec=): WATCHDOG=1 from this loop at half
  // the interval, so a loop that hangs stops them and systemd acts.
  uint64_t watchdogUs_ = 0;
  FunctionTimer watchdogTimer_{loop_, [this] { guard("watchdog", [this] { pingWatchdog(); }); }};
  ReloadState state_;
  std::shared_ptr<const LoadedConfig> config_;
  ListenerSet listeners_{systemBinder()};
  WorkerRegistry registry_;
  std::map<uint64_t, ReadyPipe> readyPipes_;  // by token
  // Workers started and not yet ready, whatever tells the master so.
  std::set<pid_t> awaitingReady_;
  // Readiness::kNotify: the datagram socket every worker sends to, kept
  // across the exec; "@name" for NOTIFY_SOCKET.
  WatchedFd workerNotify_{loop_, [this](uint32_t) {
                            guard("worker notification", [this] { readWorkerNotify(); });
                          }};
  std::string workerNotifyName_;
  std::map<pid_t, pid_t> mainPids_;  // MAINPID= announced -> the worker that announced it
  // Readiness::kDelay timers and the probes of kConnectProbe/kHttpProbe, by
  // worker pid; dropped when the worker exits (never from their own
  // callbacks, which they would destroy).
  std::map<pid_t, FunctionTimer> readyTimers_;
  std::map<pid_t, ReadyProbe> readyProbes_;
  std::map<uint64_t, int> drainSignals_;  // by generation: its configuration's drain signal
  std::shared_ptr<const LoadedConfig> startingConfig_;  // of state_.starting()
  std::optional<Checker> checker_;
  std::optional<Validation> validation_;
  std::optional<Probe> probe_;
  std::optional<RecordWriter> recordWriter_;
  bool recordQueued_ = false;  // wanted again while one is written
  std::string recordWhy_;
  // The seamless reload under way for the record's note ("" for none).
  std::string reloadNote_;
  // Whether this image's binary and configuration are good to record:
  // from its start, or once its reload passed.
  bool imageIsGood_ = false;
  FunctionTimer startRecordTimer_{loop_, guarded("last good record", [this] {
                                    startRecordPending_ = false;
                                    wantLastGoodRecord("generation " +
                                                       std::to_string(state_.servingGeneration()) +
                                                       " served reload_probation seconds from its start");
                                  })};
  bool startRecordPending_ = false;
  // A seamless exec that waits for the record to be written first.
  std::optional<std::pair<std::shared_ptr<const LoadedConfig>, std::string>> execWaiting_;
  // How long it waits: a writer stuck on its disk fails the reload (the
  // running generation serves on) rather than hold it for the writer's
  // own deadline, or two of them when another write was queued.
  FunctionTimer execWaitTimer_{loop_, guarded("last good record wait", [this] { onExecWaitTimeout(); })};
  LastGoodReport lastGoodReport_;
  // A stop an operator asked for (SIGTERM, SIGINT, SIGQUIT), not one the
  // master came to by failing: it ends with the record removed.
  bool askedStop_ = false;
  bool gracefulStop_ = false;  // the stop under way lets requests finish
  // Run by the synchronizer after the master died: under systemd its stop
  // is systemd's answer to that death (ExitType=cgroup, NotifyAccess=all),
  // not an operator's, so it keeps the record for the restart.
  bool rescued_ = false;
  std::string probePending_;  // a trigger that came while a probe ran
  // The first generation starts once the start check ended (or gave up):
  // the check runs in a child, so a hung mount holds no signal or /status.
  bool generationAfterCheck_ = false;
  FunctionTimer probeTimer_{loop_, guarded("periodic check", [this] {
                              if (config_ && service_.checkInterval(*config_) > 0) startProbe("poll");
                            })};
  uint64_t nextToken_ = 1;
  int64_t reloadStartedUs_ = 0;
  std::optional<ReloadRecord> lastReload_;
  HandoffCounters counters_;
  int64_t startedEpoch_ = time(nullptr);
  std::map<int, FunctionTimer> respawnTimers_;  // by slot
  std::set<int> respawnsWaiting_;  // due while the phase keeps no workers
  FunctionTimer drainKillTimer_{loop_, guarded("drain deadline", [this] { killOverdueDrains(); })};
  std::map<int, int> quickFailures_;
  pid_t syncPid_ = 0;
  Fd notifyFd_;  // new image -> synchronizer
  WatchedFd stateFd_{loop_, [this](uint32_t) { guard("synchronizer report", [this] { readSyncReport(); }); }};  // synchronizer -> new image
  std::string stateBuffer_;
  FunctionTimer stateTimer_{loop_, guarded("synchronizer report deadline", [this] {
                              if (stateFd_) closeHandoffState("no report from the synchronizer in time");
                            })};
  std::vector<pid_t> handoffOldWorkers_;
  // Rebind mode: the old image's TCP sockets, on which the old generation's
  // workers accept. This image binds its own; these are kept only to hand
  // back if its start fails, and closed once it serves.
  std::vector<Listener> oldGenerationSockets_;
  // Keys of every socket this image inherited: the old generation's.
  std::vector<std::string> inheritedKeys_;
  SignalFd signals_;
  FunctionHandler signalHandler_{[this](uint32_t) {
    guard("signal", [this] {
      while (auto info = signals_.read()) onSignal(*info);
    });
  }};
  std::vector<pid_t> orphans_;  // children of an image whose handoff was ignored
  // In an image started from a handoff: the configuration the old
  // generation serves with, to go back to if this image's start fails.
  std::shared_ptr<const LoadedConfig> previousConfig_;
  std::unique_ptr<SharedCounters> counters_shared_;
  AdminServer admin_{loop_, [this](const AdminRequest& r) { return handleAdmin(r); }};
  FunctionTimer stopTimer_{loop_, guarded("shutdown deadline", [this] { onStopDeadline(); })};
  FunctionTimer startTimer_{loop_, guarded("start deadline", [this] { onStartDeadline(); })};
  // Probation: the last good configuration, when the serving generation
  // became ready, the serving duration of the reload on probation.
  std::shared_ptr<const LoadedConfig> lastGoodConfig_;
  double probationReadyAt_ = 0;
  double probationServingMs_ = 0;
  ProbationLimits probationLimits_;
  ProbationStyle probationStyle_ = ProbationStyle::kStandby;
  FunctionTimer probationTimer_{loop_, guarded("probation", [this] { checkProbation(); })};
  FunctionTimer probationCheckTimer_{loop_, guarded("probation check", [this] {
                                       checkProbation();
                                     })};
  // The workers' heartbeat words, and which word each worker this image
  // forked stamps.
  Heartbeats heartbeats_;
  std::map<pid_t, size_t> heartbeatOf_;
  // This image's binary, open: the last good one once its generation passed
  // probation. A new image also holds the binary of the image before until
  // its own generation passes (lastGoodBinary_), to run it again on a
  // rollback even if its file was replaced or deleted.
  Fd ownBinary_;
  Fd lastGoodBinary_;
  bool syncWaitsForProbation_ = false;  // the old image's synchronizer does
  // An image that adopted the running workers, within reload_probation of
  // serving: its synchronizer stands by (and reported already).
  bool adoptionOnProbation_ = false;
  bool syncReported_ = false;
  FunctionTimer adoptionPassTimer_{loop_, guarded("adoption probation", [this] { passAdoption(); })};
  bool finished_ = false;
  int exitCode_ = 0;
  int workerNice_ = 0;
  int appliedNice_ = 1000;  // none applied yet
};

}  // namespace reload
