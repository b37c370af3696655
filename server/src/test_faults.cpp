#include "test_faults.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "http_handlers.h"
#include "test_fault_hooks.h"
#include "reload/shared_counters.h"
#include "reload/signals.h"

namespace server {
namespace {

struct Fault {
  std::string kind;
  double seconds = 0;
};

Fault readFault() {
  Fault fault;
  const char* path = getenv("MOLT_TEST_FAULT_FILE");
  if (!path) return fault;
  std::ifstream in(path);
  in >> fault.kind >> fault.seconds;
  return fault;
}

// The thread that runs the worker's loop stops here for good, in a signal
// handler: the process stays alive (its pool's threads too), the loop
// never turns again.
void hangForEver(int) {
  for (;;) pause();
}

void crashNow(int) {
  signal(SIGSEGV, SIG_DFL);
  kill(getpid(), SIGSEGV);
}

int answer500(const reload::WorkerContext& ctx) {
  reload::SignalFd signals;
  if (!reload::signalWorkerReady(ctx)) return 1;
  std::vector<pollfd> fds;
  fds.push_back({signals.fd(), POLLIN, 0});
  for (int fd : ctx.listenerFds) fds.push_back({fd, POLLIN, 0});
  for (;;) {
    if (poll(fds.data(), fds.size(), 250) < 0 && errno != EINTR) return 1;
    if (getppid() != ctx.masterPid) return 0;
    if (fds[0].revents) {
      while (auto info = signals.read())
        if (info->ssi_signo == SIGTERM || info->ssi_signo == SIGINT) return 0;
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      int conn = accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) continue;
      timeval limit{1, 0};
      setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
      std::string request;
      char buf[4096];
      while (request.find("\r\n\r\n") == std::string::npos && request.size() < 65536) {
        ssize_t n = read(conn, buf, sizeof buf);
        if (n <= 0) break;
        request.append(buf, static_cast<size_t>(n));
      }
      static const char kAnswer[] =
          "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      if (write(conn, kAnswer, sizeof kAnswer - 1) < 0) { /* the client left */ }
      close(conn);
      if (ctx.counters) {
        ctx.counters->add(kStatus1xx + 4, 1);
        ctx.counters->add(reload::generationAnswersSlot(ctx.generation), 1);
        ctx.counters->add(reload::generationServerErrorsSlot(ctx.generation), 1);
      }
    }
  }
}

// A request for an object in one of these buckets throws in routing, or
// in the end of its first disk task: an exception in a request handler.
void throwInRouting(std::string_view target) {
  if (target.find("/v1/fault-route-throws") != std::string_view::npos)
    throw std::runtime_error("test fault: thrown while routing");
}

void throwInDiskCompletion(std::string_view target) {
  if (target.find("/v1/fault-disk-throws") != std::string_view::npos)
    throw std::runtime_error("test fault: thrown in a disk completion");
}

}  // namespace

int FaultyService::serve(const reload::WorkerContext& context,
                         const ObjectServerConfig& config) noexcept {
  testFaultHooks.routing = throwInRouting;
  testFaultHooks.diskCompletion = throwInDiskCompletion;
  Fault fault = readFault();
  if (fault.kind == "worker-500") return answer500(context);
  if (fault.kind == "worker-crash") {
    signal(SIGALRM, crashNow);
    itimerval when{};
    when.it_value.tv_sec = static_cast<time_t>(fault.seconds);
    when.it_value.tv_usec = static_cast<suseconds_t>((fault.seconds - static_cast<double>(when.it_value.tv_sec)) * 1e6);
    if (when.it_value.tv_sec == 0 && when.it_value.tv_usec == 0) when.it_value.tv_usec = 1;
    setitimer(ITIMER_REAL, &when, nullptr);
  }
  if (fault.kind == "worker-hang") {
    struct sigaction hang {};
    hang.sa_handler = hangForEver;
    sigaction(SIGALRM, &hang, nullptr);
    sigset_t alarm;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    pthread_sigmask(SIG_UNBLOCK, &alarm, nullptr);
    pthread_t loopThread = pthread_self();  // the signal goes to this thread alone
    std::thread([loopThread, seconds = fault.seconds] {
      std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
      pthread_kill(loopThread, SIGALRM);
    }).detach();
  }
  return MoltdService::serve(context, config);
}

void armMasterFault() {
  if (!getenv("MOLT_HANDOFF")) return;
  Fault fault = readFault();
  if (fault.kind != "master-exit" && fault.kind != "master-hang") return;
  unlink(getenv("MOLT_TEST_FAULT_FILE"));  // once: the image that rescues runs clean
  std::thread([fault] {
    std::this_thread::sleep_for(std::chrono::duration<double>(fault.seconds));
    if (fault.kind == "master-exit") _exit(3);
    kill(getpid(), SIGSTOP);
  }).detach();
}

}  // namespace server
