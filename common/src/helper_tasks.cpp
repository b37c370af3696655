// The master's helper tasks (see helper_tasks.h): the service's disk checks
// at start, on reloads, on SIGUSR2 and periodically; the validation of a
// reload's configuration; and the new binary's check before a seamless
// reload execs it.
#include "helper_tasks.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "reload/config_check_line.h"
#include "reload/last_good.h"
#include "reload/log.h"
#include "reload/process.h"
#include "reload/sys_error.h"
#include "master_impl.h"

namespace reload {

namespace {

// How long a seamless exec waits for the last good record: the reload's
// own bound.
double execWaitSeconds(const LoadedConfig& config) {
  return std::min(kRecordTimeout, config.master.reloadTimeout);
}

}  // namespace

void MasterImpl::startProbe(const std::string& trigger, double timeoutSeconds) {
  if (probe_) {
    probePending_ = trigger;
    return;
  }
  if (state_.phase() == Phase::kStopping || !config_) return;
  double now = monotonicSeconds();
  double interval = service_.checkInterval(*config_);
  if (interval > 0) probeTimer_.arm(msAt(now + interval));
  else probeTimer_.cancel();
  auto config = config_;
  try {
    probe_.emplace(loop_, guarded("check deadline", [this] {
                     // A process stuck on a hung mount may not die even of
                     // SIGKILL: it is given up on at once (reaped whenever it
                     // ends) so nothing waits for it.
                     if (probe_) onProbeExit(0);
                   }));
    probe_->task.start(serviceName() + "-probe", "the " + trigger + " check", kMaxProbeOutput,
                       static_cast<int64_t>((now + timeoutSeconds) * 1000), [&](int out) -> int {
                         closeAllFdsExcept({out});
                         return writeAll(out, service_.runCheck(*config, trigger)) ? 0 : 1;
                       });
    probe_->trigger = trigger;
    probe_->config = config;
    probe_->timeoutSeconds = timeoutSeconds;
  } catch (const std::exception& e) {
    probe_.reset();
    MOLT_LOG(kError) << "cannot start the " << trigger << " check: " << e.what();
  }
}

void MasterImpl::onProbeExit(int status) {
  auto outcome = probe_->task.timedOut() ? probe_->task.giveUp() : probe_->task.finish(status);
  std::string trigger = probe_->trigger;
  auto config = probe_->config;
  const double timeoutSeconds = probe_->timeoutSeconds;
  probe_.reset();
  if (state_.phase() == Phase::kStopping) return;
  if (outcome.timedOut) {
    std::string what = "volume and flag checks (" + trigger + ") did not finish within " +
                       std::to_string(static_cast<int>(timeoutSeconds)) + "s; a mount may hang";
    MOLT_LOG(kWarning) << what;
    service_.checkFailed(what);
  } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string what = "volume and flag checks (" + trigger + ") " + describeWaitStatus(status);
    MOLT_LOG(kWarning) << what;
    service_.checkFailed(what);
  } else {
    try {
      service_.applyCheck(*config, trigger, outcome.output);
    } catch (const std::exception& e) {
      // The start goes on without it, as after a check that failed.
      std::string what = "volume and flag checks (" + trigger + "): " + e.what();
      MOLT_LOG(kError) << what;
      service_.checkFailed(what);
    }
  }
  if (generationAfterCheck_) startFirstGeneration();
  if (!probePending_.empty()) startProbe(std::exchange(probePending_, ""));
}

// Periodic checks run every checkInterval seconds of the configuration in
// force; started by the first, and moved by every check that starts.
void MasterImpl::armPeriodicProbe() {
  double interval = config_ ? service_.checkInterval(*config_) : 0;
  if (interval <= 0) probeTimer_.cancel();
  else if (!probeTimer_.armed() && !probe_) probeTimer_.arm(msAt(monotonicSeconds() + interval));
}

void MasterImpl::startValidation(ReloadKind kind) {
  double limit = std::min(30.0, config_->master.reloadTimeout);
  try {
    validation_.emplace(loop_, guarded("configuration check deadline", [this] {
                          if (validation_) onValidationExit(0);
                        }));
    validation_->task.start(
        serviceName() + "-validate", "validation", kMaxValidationOutput,
        static_cast<int64_t>((monotonicSeconds() + limit) * 1000), [&](int out) -> int {
          closeAllFdsExcept({out});
          std::string result;
          try {
            auto config = loadConfig(options_.configPath, service_);
            result = "OK";
            if (kind == ReloadKind::kSeamless) result += " " + resolveExecutable(options_.executable);
            result += "\n" + encodeValidated(describeValidated(*config));
          } catch (const std::exception& e) {
            result = std::string("ERR\n") + e.what();
          }
          return writeAll(out, result) ? 0 : 1;
        });
  } catch (const std::exception& e) {
    validation_.reset();
    finishReload(kind, "failed", e.what(), state_.servingGeneration());
    processPending();
    return;
  }
  validation_->kind = kind;
  state_.beginValidation();
  if (kind == ReloadKind::kSeamless && !options_.lastGoodDir.empty()) {
    // Written while the configuration and the new binary are checked: the
    // exec waits for it (checkerFinished), so that a restart by systemd
    // after this image is replaced starts this binary and configuration.
    char at[32];
    time_t now = time(nullptr);
    tm utc{};
    gmtime_r(&now, &utc);
    strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", &utc);
    reloadNote_ = "the seamless reload begun at " + std::string(at) + " (from generation " +
                  std::to_string(state_.servingGeneration()) + ", version " + service_.version() +
                  ")";
    wantLastGoodRecord("it served when a seamless reload began");
  }
  // The new binary's check runs beside the validation rather than after
  // it; its verdict is still taken before anything of the old generation
  // is touched, and only once the validation accepted.
  if (kind == ReloadKind::kSeamless) {
    try {
      startChecker(std::min(30.0, config_->master.reloadTimeout));
    } catch (const std::exception& e) {
      checker_.reset();  // started again, alone, once the validation is done
      MOLT_LOG(kWarning) << "the config check beside the validation: " << e.what();
    }
  }
}

void MasterImpl::onValidationExit(int status) {
  ReloadKind kind = validation_->kind;
  auto outcome =
      validation_->task.timedOut() ? validation_->task.giveUp() : validation_->task.finish(status);
  validation_.reset();
  if (state_.phase() == Phase::kStopping) {
    // A check that ended already is done with; one still running is
    // reaped (or given up on) by the stop.
    if (checker_ && !checker_->task.running()) checker_.reset();
    return;
  }
  state_.endCheck();
  auto refuse = [&](const std::string& reason) {
    dropChecker();
    finishReload(kind, "refused", reason, state_.servingGeneration());
    processPending();
  };
  if (outcome.timedOut) {
    refuse("configuration check did not finish within " +
           std::to_string(static_cast<int>(std::min(30.0, config_->master.reloadTimeout))) +
           "s (a name lookup or a disk check hangs)");
    return;
  }
  const std::string& text = outcome.output;
  auto nl = text.find('\n');
  std::string head = text.substr(0, nl);
  if (nl == std::string::npos || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
      (head != "ERR" && head.rfind("OK", 0) != 0)) {
    refuse("configuration check " + describeWaitStatus(status) + " without a result");
    return;
  }
  std::string body = text.substr(nl + 1);
  if (head == "ERR") {
    refuse(body);
    return;
  }
  std::shared_ptr<const LoadedConfig> next;
  try {
    next = loadValidatedConfig(options_.configPath, decodeValidated(body), service_);
  } catch (const std::exception& e) {
    refuse(std::string("validated configuration: ") + e.what());
    return;
  }
  for (const auto& w : next->warnings) MOLT_LOG(kWarning) << w;
  if (kind == ReloadKind::kHup) startHupReload(next);
  else startSeamlessReload(next, head.size() > 3 ? head.substr(3) : options_.executable);
}

void MasterImpl::startSeamlessReload(std::shared_ptr<const LoadedConfig> next,
                                     const std::string& executable) {
  if (!checker_) {
    try {
      startChecker(std::min(30.0, next->master.reloadTimeout));
    } catch (const std::exception& e) {
      checker_.reset();
      finishReload(ReloadKind::kSeamless, "refused", std::string("config check: ") + e.what(),
                   state_.servingGeneration());
      processPending();
      return;
    }
  }
  checker_->config = next;
  checker_->executable = executable;
  checker_->validated = true;
  if (checker_->early) {
    checkerFinished(std::move(*checker_->early));
    return;
  }
  state_.beginPreflight();
}

void MasterImpl::dropChecker() {
  if (!checker_) return;
  checker_->task.kill();  // nothing once it has ended
  checker_->task.giveUp();
  checker_.reset();
}

void MasterImpl::startChecker(double limit) {
  std::vector<std::string> checkArgs = service_.validationArguments(options_.configPath);
  checker_.emplace(loop_, guarded("new binary check deadline", [this] {
                     if (checker_) onCheckerExit(0);  // killed; reaped whenever it ends
                   }));
  checker_->task.start(
      serviceName() + "-check", "the config check", kMaxCheckerOutput,
      static_cast<int64_t>((monotonicSeconds() + limit) * 1000), [&](int out) -> int {
        if (dup2(out, STDOUT_FILENO) < 0 || dup2(out, STDERR_FILENO) < 0) return 126;
        closeAllFdsExcept({});
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        unsetenv("NOTIFY_SOCKET");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDNAMES");
        // Found as the validation finds it, in the child (a PATH lookup is
        // disk work); the master compares the two before it execs.
        std::string executable;
        try {
          executable = resolveExecutable(options_.executable);
        } catch (const std::exception& e) {
          dprintf(STDERR_FILENO, "%s\n", e.what());
          return 127;
        }
        dprintf(STDOUT_FILENO, "%s%s\n", kCheckedExecutablePrefix, executable.c_str());
        std::vector<char*> args;
        args.push_back(const_cast<char*>(executable.c_str()));
        for (auto& a : checkArgs) args.push_back(a.data());
        args.push_back(nullptr);
        execv(executable.c_str(), args.data());
        dprintf(STDERR_FILENO, "exec %s: %s\n", executable.c_str(), std::strerror(errno));
        return 127;
      });
}

void MasterImpl::onCheckerExit(int status) {
  auto outcome = checker_->task.timedOut() ? checker_->task.giveUp() : checker_->task.finish(status);
  if (!checker_->validated && state_.phase() != Phase::kStopping) {
    checker_->early = std::move(outcome);
    return;
  }
  checkerFinished(std::move(outcome));
}

void MasterImpl::checkerFinished(ChildTask::Outcome outcome) {
  const int status = outcome.status;
  auto config = checker_->config;
  std::string executable = checker_->executable;
  checker_.reset();
  if (state_.phase() == Phase::kStopping) return;
  state_.endCheck();
  // The first line, written before the exec, names the executable the
  // check ran; the rest is the new binary's.
  std::string checked;
  const size_t prefix = std::strlen(kCheckedExecutablePrefix);
  if (outcome.output.compare(0, prefix, kCheckedExecutablePrefix) == 0) {
    size_t nl = outcome.output.find('\n');
    checked = outcome.output.substr(prefix, nl == std::string::npos ? std::string::npos : nl - prefix);
    outcome.output.erase(0, nl == std::string::npos ? std::string::npos : nl + 1);
  }
  if (outcome.timedOut || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string output = outcome.output;
    while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
    std::string reason = executable + " " + service_.validationArguments(options_.configPath).front() + " " +
                         (outcome.timedOut ? "timed out" : describeWaitStatus(status)) +
                         (output.empty() ? "" : ": " + output);
    finishReload(ReloadKind::kSeamless, "refused", reason, state_.servingGeneration());
    processPending();
    return;
  }
  std::string checkedVersion;
  std::string notChecked = configCheckLineProblem(service_.name(), outcome.output, config->digest, checkedVersion);
  if (!notChecked.empty()) {
    finishReload(ReloadKind::kSeamless, "refused", executable + " " + service_.validationArguments(options_.configPath).front() + ": " + notChecked,
                 state_.servingGeneration());
    processPending();
    return;
  }
  if (checked != executable) {
    // The check started beside the validation and found its executable on
    // its own: a binary put in an earlier PATH directory meanwhile.
    finishReload(ReloadKind::kSeamless, "refused",
                 "the executable changed during the check: " + executable + " was validated, " +
                     (checked.empty() ? std::string("none") : checked) + " checked",
                 state_.servingGeneration());
    processPending();
    return;
  }
  MOLT_LOG(kInfo) << executable << " is " << service_.name() << " " << checkedVersion
                  << " and accepts the configuration";
  if (recordBusy()) {
    // The last good record must be whole before the exec can end this
    // image: onRecordWriterExit runs the exec.
    MOLT_LOG(kDebug) << "the exec waits for the last good record to be written";
    execWaiting_.emplace(config, executable);
    execWaitTimer_.arm(msAt(monotonicSeconds() + execWaitSeconds(*config)));
    return;
  }
  performExec(config, executable);
}

}  // namespace reload

// ------------------------------------------------------- last good record

namespace reload {

namespace {

constexpr size_t kMaxRecordWriterOutput = 4096;
constexpr const char kRecordWritten[] = "written";
constexpr const char kRecordCurrent[] = "current";
// What a failed write says once no older record is left to start from.
constexpr std::string_view kOlderRemoved = "; no older record stays";

}  // namespace

void MasterImpl::wantLastGoodRecord(const std::string& why) {
  if (options_.lastGoodDir.empty() || state_.phase() == Phase::kStopping) return;
  recordWhy_ = why;
  if (recordWriter_) {
    recordQueued_ = true;
    return;
  }
  startRecordWriter();
}

void MasterImpl::startRecordWriter() {
  recordQueued_ = false;
  const bool withRecord = imageIsGood_ && ownBinary_ && config_;
  LastGoodRecord record;
  if (withRecord) {
    record.service = service_.name();
    record.version = service_.version();
    record.configDigest = config_->digest;
    record.validated = encodeValidated(describeValidated(*config_));
    record.why = recordWhy_;
    record.writtenEpoch = time(nullptr);
  }
  const std::string note = reloadNote_;
  const int binary = ownBinary_ ? ownBinary_.get() : -1;
  try {
    recordWriter_.emplace(loop_, guarded("last good record deadline", [this] {
                            if (recordWriter_) onRecordWriterExit(0);
                          }));
    recordWriter_->task.start(
        serviceName() + "-record", "the last good record", kMaxRecordWriterOutput,
        static_cast<int64_t>((monotonicSeconds() + kRecordTimeout) * 1000), [&](int out) -> int {
          std::vector<int> keep{out};
          if (binary >= 0) keep.push_back(binary);
          closeAllFdsExcept(keep);
          std::string result;
          try {
            LastGoodDir dir(options_.lastGoodDir);
            if (withRecord) {
              // Absolute paths for the image the start script runs from the
              // record (a PATH lookup and the working directory are disk work).
              record.executable = resolveExecutable(options_.executable);
              record.configPath = options_.configPath;
              if (record.configPath.empty() || record.configPath[0] != '/') {
                char cwd[PATH_MAX];
                if (!getcwd(cwd, sizeof cwd)) throwSysError("getcwd");
                record.configPath = std::string(cwd) + "/" + record.configPath;
              }
              result = dir.write(record, binary, note) == LastGoodDir::WriteResult::kWritten
                           ? kRecordWritten
                           : kRecordCurrent;
            } else {
              dir.setReloadNote(note);
              result = kRecordCurrent;
            }
          } catch (const std::exception& e) {
            result = std::string("ERR ") + e.what();
            if (withRecord) {
              try {
                LastGoodDir(options_.lastGoodDir).removeRecord();
                result += std::string(kOlderRemoved);
              } catch (const std::exception& removal) {
                result += std::string("; the older record stays: ") + removal.what();
              }
            }
          }
          return writeAll(out, result) ? 0 : 1;
        });
    recordWriter_->why = recordWhy_;
    recordWriter_->note = note;
    recordWriter_->withRecord = withRecord;
    if (withRecord) {
      lastGoodReport_.state = "writing";
    }
  } catch (const std::exception& e) {
    recordWriter_.reset();
    lastGoodReport_.state = "failed";
    lastGoodReport_.error = e.what();
    MOLT_LOG(kError) << "cannot start writing the last good record in " << options_.lastGoodDir
                     << ": " << e.what();
  }
}

void MasterImpl::onRecordWriterExit(int status) {
  auto outcome = recordWriter_->task.timedOut() ? recordWriter_->task.giveUp()
                                                : recordWriter_->task.finish(status);
  const bool withRecord = recordWriter_->withRecord;
  const std::string why = recordWriter_->why;
  recordWriter_.reset();
  const std::string& text = outcome.output;
  std::string problem;
  if (outcome.timedOut)
    problem = "not done within " + std::to_string(static_cast<int>(kRecordTimeout)) + "s";
  else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    problem = "the writer " + describeWaitStatus(status);
  else if (text.rfind("ERR ", 0) == 0)
    problem = text.substr(4);
  else if (text != kRecordWritten && text != kRecordCurrent)
    problem = "the writer said nothing";
  if (state_.phase() == Phase::kStopping) return;  // killed by the stop, or done: no matter
  if (!problem.empty()) {
    lastGoodReport_.state = "failed";
    lastGoodReport_.error = problem;
    const bool removed = problem.size() >= kOlderRemoved.size() &&
                         std::string_view(problem).substr(problem.size() - kOlderRemoved.size()) ==
                             kOlderRemoved;
    MOLT_LOG(kError) << "last good record in " << options_.lastGoodDir << ": " << problem
                     << (removed ? "; a restart by systemd starts from the files on disk"
                                 : "; a restart by systemd may start from an older record");
  } else if (withRecord) {
    lastGoodReport_.state = "written";
    lastGoodReport_.error.clear();
    lastGoodReport_.version = service_.version();
    lastGoodReport_.configDigest = config_->digest;
    lastGoodReport_.why = why;
    if (text == kRecordWritten)
      MOLT_LOG(kInfo) << "last good record written in " << options_.lastGoodDir << ": version "
                      << service_.version() << ", config digest " << config_->digest << " ("
                      << why << ")";
  }
  if (recordQueued_) {
    startRecordWriter();
    return;
  }
  if (execWaiting_ && outcome.timedOut) {
    // Given up on, it may still hold the older record: an exec now could
    // leave a restart to an image older than the one it ends.
    execWaitTimer_.cancel();
    onExecWaitTimeout();
    return;
  }
  if (execWaiting_) {
    auto [config, executable] = std::move(*execWaiting_);
    execWaiting_.reset();
    execWaitTimer_.cancel();
    performExec(config, executable);
  }
}

void MasterImpl::onExecWaitTimeout() {
  if (!execWaiting_ || state_.phase() == Phase::kStopping) return;
  const double waited = execWaitSeconds(*execWaiting_->first);
  execWaiting_.reset();
  std::ostringstream why;
  why << "the last good record was not written within " << waited
      << " s (its writer waits on " << options_.lastGoodDir
      << "); an exec now would leave no record of the image it ends";
  finishReload(ReloadKind::kSeamless, "failed", why.str(), state_.servingGeneration());
  processPending();
}

void MasterImpl::armStartRecord() {
  if (options_.lastGoodDir.empty()) return;
  startRecordPending_ = true;
  startRecordTimer_.arm(msAt(monotonicSeconds() + config_->master.reloadProbation));
}

}  // namespace reload
