// The reload library's example: a service that answers every connection with
// "hello from generation N". Run it with --config FILE; SIGHUP and SIGUSR1
// reload it without refusing a connection.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <exception>
#include <string>
#include <vector>

#include "reload/event_loop.h"
#include "reload/master.h"
#include "reload/worker_signals.h"

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
    try {
      return serveLoop(ctx, config);
    } catch (const std::exception&) {
      return 1;  // the master logs the exit and starts the slot again
    }
  }

 private:
  static int serveLoop(const reload::WorkerContext& ctx, const HelloConfig& config) {
    if (!reload::watchMaster(ctx)) return 0;  // the master died before we started
    reload::EventLoop loop;
    reload::WorkerSignals signals(loop, ctx.masterPid);  // the master forks us with them blocked
    const std::string answer = "HTTP/1.0 200 OK\r\n\r\n" + config.greeting + " from generation " +
                               std::to_string(ctx.generation) + "\n";
    // The listeners are non-blocking and shared with every worker of every
    // generation: take what is queued, never shutdown() one.
    auto answerQueued = [&answer](int listener) {
      for (int c; (c = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC)) >= 0; close(c))
        (void)!write(c, answer.data(), answer.size());
    };
    std::vector<reload::FunctionHandler> acceptors;
    acceptors.reserve(ctx.listenerFds.size());
    for (int fd : ctx.listenerFds) acceptors.emplace_back([fd, &answerQueued](uint32_t) { answerQueued(fd); });
    auto accept = [&](bool on) {
      for (size_t i = 0; i < ctx.listenerFds.size(); ++i) {
        int fd = ctx.listenerFds[i];
        if (on && !loop.watching(fd)) loop.add(fd, EPOLLIN, &acceptors[i]);
        if (!on && loop.watching(fd)) loop.remove(fd);
      }
    };

    accept(true);
    if (!reload::signalWorkerReady(ctx)) return 0;  // the master is gone
    for (;;) {
      loop.runOnce(static_cast<int>(reload::WorkerSignals::kParentCheckMs));
      for (reload::WorkerOrder order : signals.take()) {
        switch (order) {
          case reload::WorkerOrder::kDrain:  // a new generation serves: answer what is queued, go
            accept(false);
            for (int fd : ctx.listenerFds) {
              answerQueued(fd);
              close(fd);
            }
            return 0;
          case reload::WorkerOrder::kStandBy:  // a new generation is on probation; we stay ready
            accept(false);
            break;
          case reload::WorkerOrder::kTakeOver:  // it failed: serve again
            accept(true);
            break;
          case reload::WorkerOrder::kQuit:
            return 0;
          case reload::WorkerOrder::kRecheck:
            break;
        }
      }
    }
  }
};

int main(int argc, char** argv) {
  Hello service;
  reload::CommandLine commandLine;  // --config, the --check-config a seamless reload runs first, --help...
  commandLine.defaultConfig = "hello.conf";
  return reload::serviceMain(service, argc, argv, commandLine);
}
