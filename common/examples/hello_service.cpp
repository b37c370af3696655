// The reload library's example: a service that answers every connection with
// "hello from generation N". Run it with --config FILE; SIGHUP and SIGUSR1
// reload it without refusing a connection.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "reload/master.h"
#include "reload/signals.h"

struct HelloConfig : reload::ServiceConfig {
  std::string greeting;
};

class Hello : public reload::TypedService<HelloConfig> {
 public:
  std::string name() const override { return "hello"; }
  std::string version() const override { return "1.0"; }
  std::shared_ptr<const HelloConfig> parse(reload::IniConfig& ini, const reload::MasterConfig&) override {
    auto config = std::make_shared<HelloConfig>();
    config->greeting = ini.getString("hello", "greeting", "hello");
    return config;
  }
  int serve(const reload::WorkerContext& ctx, const HelloConfig& config) noexcept override {
    reload::SignalFd signals;  // the master forks workers with its signals blocked
    std::vector<pollfd> fds{{signals.fd(), POLLIN, 0}};
    for (int fd : ctx.listenerFds) fds.push_back({fd, POLLIN, 0});
    reload::signalWorkerReady(ctx);
    std::string answer = "HTTP/1.0 200 OK\r\n\r\n" + config.greeting + " from generation " +
                         std::to_string(ctx.generation) + "\n";
    for (;;) {
      if (poll(fds.data(), fds.size(), 1000) < 0) continue;
      if (getppid() != ctx.masterPid) return 0;  // the master is gone
      while (auto info = signals.read())
        if (info->ssi_signo == SIGTERM || info->ssi_signo == SIGINT) {
          for (size_t i = 1; i < fds.size(); ++i) {  // take what is queued, then close our copy
            for (int c; (c = accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC)) >= 0; close(c))
              (void)!write(c, answer.data(), answer.size());
            close(fds[i].fd);  // never shutdown(): the next generation accepts on it
          }
          return 0;
        }
      for (size_t i = 1; i < fds.size(); ++i)
        for (int c; (c = accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC)) >= 0; close(c))
          (void)!write(c, answer.data(), answer.size());
    }
  }
};

int main(int argc, char** argv) {
  Hello service;
  reload::CommandLine commandLine;  // --config, the --check-config a seamless reload runs first, --help...
  commandLine.defaultConfig = "hello.conf";
  return reload::serviceMain(service, argc, argv, commandLine);
}
