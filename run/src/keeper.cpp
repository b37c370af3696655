#include "keeper.h"

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "launch.h"
#include "notify_socket.h"
#include "reload/fd.h"
#include "reload/log.h"
#include "reload/process.h"
#include "reload/sys_error.h"

extern char** environ;

namespace run {
namespace {

// The listeners' LISTEN_FDNAMES entries: a bind entry's NAME=, else
// "unknown", as systemd names an unnamed socket.
std::vector<std::string> listenerNames(const reload::WorkerContext& context) {
  std::vector<std::string> names;
  for (const auto& listener : context.listeners) names.push_back(listener.name);
  return names;
}

std::vector<int> listenerFds(const reload::WorkerContext& context) {
  std::vector<int> fds;
  for (const auto& listener : context.listeners) fds.push_back(listener.fd);
  return fds;
}

[[noreturn]] void endLike(int status) {
  reload::log::flush();
  if (WIFSIGNALED(status)) {
    // Die of the same signal, so that the master sees (and reports) what
    // happened to the program; without a core of molt-run's own.
    int sig = WTERMSIG(status);
    rlimit noCore{0, 0};
    setrlimit(RLIMIT_CORE, &noCore);
    signal(sig, SIG_DFL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, sig);
    sigprocmask(SIG_UNBLOCK, &only, nullptr);
    raise(sig);
    _exit(128 + sig);
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 70);
}

}  // namespace

int runKeeper(const reload::WorkerContext& context, const ProgramConfig& config) noexcept {
  try {
    const std::string id = std::to_string(context.generation) + "." + std::to_string(context.slot);
    reload::setProcessName("molt-run-w" + id);
    // If the master dies, stop the program and go rather than run unsupervised.
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) reload::throwSysError("PR_SET_PDEATHSIG");
    if (getppid() != context.masterPid) return 0;
    // A program that forks and lets its first process exit (MAINPID=) stays
    // this process's child, so that its end is seen and nothing is left over.
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) reload::throwSysError("PR_SET_CHILD_SUBREAPER");

    sigset_t mask;
    sigemptyset(&mask);
    for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD}) sigaddset(&mask, sig);
    if (sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) reload::throwSysError("sigprocmask");
    reload::Fd signals(signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!signals) reload::throwSysError("signalfd");

    std::optional<NotifySocket> notify;
    if (config.ready.kind == Readiness::Kind::kNotify)
      notify.emplace(std::to_string(context.masterPid) + "/" + id + "/" + std::to_string(getpid()));

    std::string why;
    std::string executable = resolveProgram(config.argv.at(0), programSearchPath(config, getenv("PATH")),
                                            config.workingDirectory, why);
    if (executable.empty()) {
      MOLT_LOG(kError) << "worker " << id << ": cannot start the program: " << why;
      return 127;
    }
    LaunchPlan plan;
    plan.executable = executable;
    plan.argv = config.argv;
    plan.environment = programEnvironment(
        config, [](const char* name) { return getenv(name); }, listenerNames(context),
        notify ? notify->address() : "", context.generation, context.slot);
    plan.listenerFds = listenerFds(context);
    plan.workingDirectory = config.workingDirectory;
    plan.user = context.config->master.user;
    plan.nice = context.nice;

    reload::log::flush();
    const pid_t self = getpid();
    const pid_t program = reload::spawnChild("", [&]() -> int { execProgram(plan, self); });
    pid_t mainPid = program;
    // This process only watches: its copies of the listeners go, so that a
    // socket's life is the program's business alone.
    for (int fd : plan.listenerFds) close(fd);
    MOLT_LOG(kInfo) << "worker " << id << ": started " << executable << " as pid " << program
                    << " (ready: " << config.ready.toString() << ")";

    const double started = reload::monotonicSeconds();
    bool ready = false;
    bool stopping = false;
    // The program's word goes to the master: the master reads READY=1 from
    // this worker on its own socket (or, with the library's ready pipe, from
    // the pipe). MAINPID= stays here: this worker is what the master watches.
    auto tellMaster = [&](const std::string& message) {
      if (!context.notifySocket.empty()) {
        if (!sendNotify(context.notifySocket, message))
          MOLT_LOG(kWarning) << "worker " << id << ": cannot tell the master '" << message
                             << "': " << std::strerror(errno);
      } else if (message == "READY=1" && context.readyFd >= 0 && !reload::signalWorkerReady(context)) {
        MOLT_LOG(kWarning) << "worker " << id << ": the master did not take the ready word";
      }
    };

    for (;;) {
      pollfd fds[2] = {{signals.get(), POLLIN, 0}, {notify ? notify->fd() : -1, POLLIN, 0}};
      int n = poll(fds, notify ? 2 : 1, -1);
      if (n < 0 && errno != EINTR) reload::throwSysError("poll");

      if (notify && (fds[1].revents & POLLIN)) {
        while (auto message = notify->receive()) {
          if (message->sender != mainPid) {
            MOLT_LOG(kDebug) << "worker " << id << ": notification from pid " << message->sender
                             << " ignored (main pid " << mainPid << ")";
            continue;
          }
          auto& f = message->fields;
          if (auto it = f.find("MAINPID"); it != f.end()) {
            char* end = nullptr;
            long announced = std::strtol(it->second.c_str(), &end, 10);
            // Only a process of the program's own group can become its main one.
            if (end && *end == 0 && announced > 1 && getpgid(static_cast<pid_t>(announced)) == program) {
              mainPid = static_cast<pid_t>(announced);
              MOLT_LOG(kInfo) << "worker " << id << ": main pid is now " << mainPid;
            } else {
              MOLT_LOG(kWarning) << "worker " << id << ": MAINPID=" << it->second
                                 << " ignored: not a process of the program";
            }
          }
          if (auto it = f.find("STATUS"); it != f.end()) {
            MOLT_LOG(kDebug) << "worker " << id << ": status: " << it->second;
            tellMaster("STATUS=" + it->second);
          }
          if (f.count("STOPPING") && f["STOPPING"] == "1") {
            MOLT_LOG(kInfo) << "worker " << id << ": the program is stopping";
            tellMaster("STOPPING=1");
          }
          if (f.count("READY") && f["READY"] == "1" && !ready) {
            ready = true;
            MOLT_LOG(kInfo) << "worker " << id << ": program pid " << mainPid << " says READY=1 after "
                            << static_cast<int>((reload::monotonicSeconds() - started) * 1000) << " ms";
            tellMaster("READY=1");
          }
        }
      }

      if (fds[0].revents & POLLIN) {
        signalfd_siginfo info{};
        while (read(signals.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
          int sig = static_cast<int>(info.ssi_signo);
          if (sig == SIGTERM) {
            // The master's "drain": the program's own graceful stop.
            if (!stopping)
              MOLT_LOG(kInfo) << "worker " << id << ": stopping program pid " << mainPid << " with "
                              << signalName(config.stopSignal);
            stopping = true;
            if (kill(mainPid, config.stopSignal) != 0 && errno != ESRCH)
              MOLT_LOG(kWarning) << "worker " << id << ": kill " << mainPid << ": " << std::strerror(errno);
          } else if (sig == SIGINT || sig == SIGQUIT) {
            stopping = true;
            if (kill(-program, SIGKILL) != 0 && errno != ESRCH)
              MOLT_LOG(kWarning) << "worker " << id << ": kill -" << program << ": " << std::strerror(errno);
          } else if (sig == SIGCHLD) {
            int status = 0;
            pid_t ended = 0;
            while ((ended = waitpid(-1, &status, WNOHANG)) > 0) {
              if (ended == program && mainPid != program && WIFEXITED(status) && WEXITSTATUS(status) == 0)
                continue;  // it handed over to the main pid it announced
              if (ended != mainPid && ended != program) continue;  // a descendant left to us
              BOOST_LOG_SEV(reload::log::logger::get(),
                            stopping ? reload::log::Severity::kInfo : reload::log::Severity::kError)
                  << "worker " << id << ": program pid " << ended << " "
                  << reload::describeWaitStatus(status)
                  << (notify && !ready ? " before it said READY=1" : "");
              // What it leaves behind goes with it.
              if (kill(-program, SIGKILL) != 0 && errno != ESRCH)
                MOLT_LOG(kWarning) << "worker " << id << ": kill -" << program << ": " << std::strerror(errno);
              double until = reload::monotonicSeconds() + 2;
              while (reload::monotonicSeconds() < until) {
                pid_t left = waitpid(-1, nullptr, WNOHANG);
                if (left < 0) break;  // ECHILD: nothing left
                if (left == 0) usleep(10000);
              }
              endLike(status);
            }
          }
          // SIGHUP, SIGUSR1 (stand by), SIGUSR2: a program that knows nothing
          // of molt serves on until it is told to stop, as a canary's
          // predecessor should.
        }
      }
    }
  } catch (const std::exception& e) {
    MOLT_LOG(kError) << "worker: " << e.what();
    reload::log::flush();
    return 70;
  }
}

}  // namespace run
