// Signals as events: the handled set is blocked in every thread and read from
// a signalfd in one place. Blocking must happen before any thread exists,
// because Poco's threads block only SIGQUIT, SIGTERM and SIGPIPE.
#pragma once

#include <signal.h>
#include <sys/signalfd.h>

#include <optional>

#include "reload/fd.h"

namespace reload {

// HUP, INT, QUIT, TERM, USR1, USR2 and CHLD.
sigset_t handledSignals();

// Blocks handledSignals() in the calling thread and ignores SIGPIPE (which
// also discards one left pending by an earlier image). Throws std::system_error.
void blockHandledSignals();

class SignalFd {
 public:
  // Non-blocking, close-on-exec signalfd over handledSignals().
  SignalFd();
  int fd() const { return fd_.get(); }
  // Next delivered signal, or nothing when none is pending.
  std::optional<signalfd_siginfo> read();

 private:
  Fd fd_;
};

}  // namespace reload
