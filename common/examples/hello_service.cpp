// The reload library's example: a service that answers every connection with
// "hello from generation N". Run it with --config FILE; SIGHUP and SIGUSR1
// reload it without refusing a connection.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

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
  int serve(const reload::WorkerContext& ctx, const HelloConfig& config) noexcept override try {
    if (!reload::watchMaster(ctx)) return 0;  // the master died before we started
    reload::EventLoop loop;
    reload::WorkerSignals signals(loop, ctx);  // the master forks us with them blocked
    std::string answer = "HTTP/1.0 200 OK\r\n\r\n" + config.greeting + " from generation " +
                         std::to_string(ctx.generation) + "\n";
    // The listeners are non-blocking and shared with every worker of every
    // generation: take what is queued, then close our copy (closeListenerCopy).
    auto answerQueued = [&answer](int listener) {
      for (int c; (c = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC)) >= 0; close(c))
        (void)!write(c, answer.data(), answer.size());
    };
    reload::FunctionHandler acceptor([&](uint32_t) { for (int fd : ctx.listenerFds) answerQueued(fd); });
    auto accepting = [&](bool on) {
      for (int fd : ctx.listenerFds)
        if (on != loop.watching(fd)) on ? loop.add(fd, EPOLLIN, &acceptor) : loop.remove(fd);
    };
    accepting(true);
    if (!reload::signalWorkerReady(ctx)) return 0;  // the master is gone
    for (;;) {
      loop.runOnce(static_cast<int>(reload::WorkerSignals::kParentCheckMs));
      for (reload::WorkerOrder order : signals.take()) {
        if (order == reload::WorkerOrder::kDrain) {  // a new generation serves
          for (int fd : ctx.listenerFds) {
            answerQueued(fd);
            reload::closeListenerCopy(loop, fd);
          }
          return 0;
        }
        if (order == reload::WorkerOrder::kQuit) return 0;
        if (order == reload::WorkerOrder::kStandBy) accepting(false);  // a new one is on probation
        if (order == reload::WorkerOrder::kTakeOver) accepting(true);  // it failed: serve again
      }
    }
  } catch (const std::exception&) {
    return 1;  // the master logs the exit and starts the slot again
  }
};

int main(int argc, char** argv) {
  Hello service;
  reload::CommandLine commandLine;  // --config, the --check-config a seamless reload runs first, --help...
  commandLine.defaultConfig = "hello.conf";
  return reload::serviceMain(service, argc, argv, commandLine);
}
