#include "reload/signals.h"

#include <pthread.h>
#include <unistd.h>

#include "reload/sys_error.h"

namespace reload {

sigset_t handledSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGCHLD})
    sigaddset(&set, sig);
  return set;
}

void blockHandledSignals() {
  sigset_t set = handledSignals();
  int rc = pthread_sigmask(SIG_BLOCK, &set, nullptr);
  if (rc != 0) throwSysError("pthread_sigmask", rc);
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) throwSysError("ignore SIGPIPE");
}

SignalFd::SignalFd() {
  sigset_t set = handledSignals();
  fd_.reset(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!fd_) throwSysError("signalfd");
}

std::optional<signalfd_siginfo> SignalFd::read() {
  signalfd_siginfo info{};
  ssize_t n = retryEintr([&] { return ::read(fd_.get(), &info, sizeof info); });
  if (n == static_cast<ssize_t>(sizeof info)) return info;
  if (n < 0 && errno != EAGAIN) throwSysError("read signalfd");
  return std::nullopt;
}

}  // namespace reload
