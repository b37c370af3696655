// What the master holds for a worker that is not ready yet (see Readiness
// in reload/master.h); the master's readiness code is worker_readiness.cpp.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>

#include "reload/event_loop.h"
#include "reload/master.h"

namespace reload {

// Readiness::kReadyPipe: the read end of the pipe the worker writes 'R' to.
struct ReadyPipe {
  ReadyPipe(pid_t worker, EventLoop& loop, WatchedFd::Callback onReadable)
      : pid(worker), fd(loop, std::move(onReadable)) {}
  pid_t pid = 0;
  WatchedFd fd;
};

// Readiness::kConnectProbe and kHttpProbe: one attempt's connection, the
// timer of the next attempt, and what the HTTP probe received so far.
struct ReadyProbe {
  ReadyProbe(EventLoop& loop, WatchedFd::Callback onEvents, std::function<void()> onRetry)
      : fd(loop, std::move(onEvents)), retry(loop, std::move(onRetry)) {}
  WatchedFd fd;
  FunctionTimer retry;
  ReadinessCheck check;
  int slot = 0;
  bool sent = false;
  std::string received;
};

}  // namespace reload
