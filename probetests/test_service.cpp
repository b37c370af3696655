// A small service of the reload library for the probe tests of what moltd
// does not use: UDP listeners, readiness by notification, delay or probe,
// the drain signal and canary probation. Each is chosen in [test]. Never
// installed.
//
// A worker answers each TCP or Unix connection with one HTTP/1.0 response,
// "G<generation> P<pid> S<slot>\n", and each UDP datagram with
// "G<generation> P<pid> <datagram>" to its sender.
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <map>

#include "reload/listeners.h"
#include "reload/log.h"
#include "reload/master.h"
#include "reload/process.h"
#include "reload/shared_counters.h"
#include "reload/signals.h"

namespace {

struct TestConfig : reload::ServiceConfig {
  reload::GenerationPolicy policy;
  bool neverReady = false;
  double crashAfter = 0;  // seconds after start; 0: never
  bool probeListen = false;  // listen on the probe address + slot once up
};

const std::map<std::string, int> kSignals = {
    {"term", SIGTERM}, {"int", SIGINT}, {"quit", SIGQUIT}, {"usr2", SIGUSR2}};

void sendNotify(const std::string& socketName, const std::string& text) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socketName.data(), std::min(socketName.size(), sizeof addr.sun_path - 1));
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  reload::Fd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socketName.size());
  if (sendto(fd.get(), text.data(), text.size(), 0, reinterpret_cast<sockaddr*>(&addr), len) < 0)
    MOLT_LOG(kError) << "notify: " << std::strerror(errno);
}

void answerConnection(int fd, const std::string& body) {
  pollfd p{fd, POLLIN, 0};
  char buf[4096];
  if (poll(&p, 1, 100) == 1 && read(fd, buf, sizeof buf) < 0) { /* answered anyway */ }
  std::string response = "HTTP/1.0 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                         "\r\nConnection: close\r\n\r\n" + body;
  if (write(fd, response.data(), response.size()) < 0) { /* the client went */ }
  shutdown(fd, SHUT_WR);
  while (poll(&p, 1, 200) == 1 && read(fd, buf, sizeof buf) > 0) {
  }
  close(fd);
}

class TestService : public reload::TypedService<TestConfig> {
 public:
  std::string version() const override { return "0.0-test"; }
  std::string name() const override { return "molt-testsvc"; }
  reload::ListenerKinds listenerKinds() const override {
    reload::ListenerKinds kinds;
    kinds.udp = true;
    return kinds;
  }
  reload::GenerationPolicy policy(const TestConfig& config) const override { return config.policy; }
  std::shared_ptr<const TestConfig> parse(reload::IniConfig& ini, const reload::MasterConfig&) override {
    auto c = std::make_shared<TestConfig>();
    auto& r = c->policy.readiness;
    std::string mode = ini.getChoice("test", "readiness", "pipe", {"pipe", "notify", "delay", "connect", "http"});
    r.mode = mode == "notify"    ? reload::Readiness::kNotify
             : mode == "delay"   ? reload::Readiness::kDelay
             : mode == "connect" ? reload::Readiness::kConnectProbe
             : mode == "http"    ? reload::Readiness::kHttpProbe
                                 : reload::Readiness::kReadyPipe;
    r.delaySeconds = ini.getSeconds("test", "ready_delay", 1, 0, 60);
    std::string probe = ini.getString("test", "probe", "127.0.0.1:1");
    try {
      r.probeAddress = reload::ListenAddress::parse(probe);
      reload::resolveListenAddress(r.probeAddress);
    } catch (const std::exception& e) {
      ini.fail("test", "probe", e.what());
    }
    r.probePortPerSlot = true;
    c->policy.drainSignal = kSignals.at(ini.getChoice("test", "drain_signal", "term", {"term", "int", "quit", "usr2"}));
    c->policy.probation = ini.getChoice("test", "probation", "standby", {"standby", "canary"}) == "canary"
                              ? reload::ProbationStyle::kCanary
                              : reload::ProbationStyle::kStandby;
    c->neverReady = ini.getBool("test", "never_ready", false);
    c->crashAfter = ini.getSeconds("test", "crash_after", 0, 0, 3600);
    c->probeListen = ini.getBool("test", "probe_listen", false);
    return c;
  }

  int serve(const reload::WorkerContext& ctx, const TestConfig& config) noexcept override {
    try {
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != ctx.masterPid) return 0;
      reload::SignalFd signals;
      const double started = reload::monotonicSeconds();
      const std::string me = "G" + std::to_string(ctx.generation) + " P" + std::to_string(getpid());
      reload::Fd probeListener;
      if (config.probeListen) {
        auto address = config.policy.readiness.probeAddress;
        address.port += ctx.slot;
        address.resolvedLength = 0;
        probeListener = reload::bindListener(address, false);
      }
      if (!config.neverReady) {
        if (config.policy.readiness.mode == reload::Readiness::kReadyPipe) reload::signalWorkerReady(ctx);
        if (config.policy.readiness.mode == reload::Readiness::kNotify)
          sendNotify(ctx.notifySocket, "STATUS=serving\nREADY=1\n");
      }
      bool accepting = true;
      for (;;) {
        std::vector<pollfd> fds{{signals.fd(), POLLIN, 0}};
        if (probeListener) fds.push_back({probeListener.get(), POLLIN, 0});
        if (accepting)
          for (const auto& l : ctx.listeners) fds.push_back({l.fd, POLLIN, 0});
        poll(fds.data(), fds.size(), 100);
        if (config.crashAfter > 0 && reload::monotonicSeconds() - started >= config.crashAfter) abort();
        if (getppid() != ctx.masterPid) return 0;
        while (auto info = signals.read()) {
          auto sig = static_cast<int>(info->ssi_signo);
          // kill() or tgkill() by the master (see reload/worker_signals.h):
          // a wake-up to read the standby word, the latest order whichever
          // of SIGHUP and SIGUSR1 is read first.
          bool fromMaster = static_cast<pid_t>(info->ssi_pid) == ctx.masterPid &&
                            (info->ssi_code == SI_USER || info->ssi_code == SI_TKILL);
          if (sig == SIGUSR1 || sig == SIGHUP) {
            if (fromMaster && ctx.counters)
              accepting = (*ctx.counters)[reload::kStandbyGeneration].load(std::memory_order_acquire) !=
                          ctx.generation;
          } else if (sig == config.policy.drainSignal) {
            MOLT_LOG(kInfo) << "test worker " << me << " drains on SIG" << sigabbrev_np(sig);
            for (const auto& l : ctx.listeners) close(l.fd);  // copies only: never shutdown()
            return 0;
          } else {
            MOLT_LOG(kInfo) << "test worker " << me << " got SIG" << sigabbrev_np(sig) << ", not its drain signal";
          }
        }
        if (probeListener) {
          int fd = accept4(probeListener.get(), nullptr, nullptr, SOCK_CLOEXEC);
          if (fd >= 0) answerConnection(fd, me + " probe\n");
        }
        for (size_t i = 0; accepting && i < ctx.listeners.size(); ++i) {
          const auto& l = ctx.listeners[i];
          if (l.kind == reload::ListenAddress::Kind::kUdp) {
            for (int n = 0; n < 64; ++n) {
              char buf[2048];
              sockaddr_storage from{};
              socklen_t fromLen = sizeof from;
              ssize_t got = recvfrom(l.fd, buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &fromLen);
              if (got < 0) break;
              std::string reply = me + " " + std::string(buf, static_cast<size_t>(got));
              sendto(l.fd, reply.data(), reply.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), fromLen);
            }
            continue;
          }
          int fd = accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC);
          if (fd >= 0)
            answerConnection(fd, me + " S" + std::to_string(ctx.slot) + " " + l.name + "\n");
        }
      }
    } catch (const std::exception& e) {
      MOLT_LOG(kCritical) << "test worker: " << e.what();
      return 1;
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  TestService service;
  reload::CommandLine commandLine;
  commandLine.defaultConfig = "molt-testsvc.conf";
  return reload::serviceMain(service, argc, argv, commandLine);
}
