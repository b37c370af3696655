// The master's helper tasks: child processes that do what the master's
// loop must not (name lookups, disk checks, running the new binary), each
// with a deadline and an output bound. One of each kind runs at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "reload/child_task.h"
#include "reload/event_loop.h"
#include "reload/ini_config.h"
#include "reload/master.h"
#include "reload/reload_policy.h"

namespace reload {

// A child that validates the configuration off the master's loop (name
// lookups and disk checks may hang) and passes the result back.
struct Validation {
  Validation(EventLoop& loop, std::function<void()> onTimeout) : task(loop, std::move(onTimeout)) {}
  ChildTask task;
  ReloadKind kind = ReloadKind::kNone;
};

// A child running the service's disk checks (see Service::runCheck).
struct Probe {
  Probe(EventLoop& loop, std::function<void()> onTimeout) : task(loop, std::move(onTimeout)) {}
  ChildTask task;
  std::string trigger;
  std::shared_ptr<const LoadedConfig> config;
};

// The new binary's --check-config, run before a seamless reload execs it.
struct Checker {
  Checker(EventLoop& loop, std::function<void()> onTimeout) : task(loop, std::move(onTimeout)) {}
  ChildTask task;
  std::shared_ptr<const LoadedConfig> config;
  std::string executable;
};

constexpr double kProbeTimeout = 10;
// How long a stop waits for a helper after killing it.
constexpr int64_t kHelperStopGraceMs = 1000;
constexpr size_t kMaxProbeOutput = 1 << 20;
constexpr size_t kMaxValidationOutput = 2 * IniConfig::kMaxConfigBytes + 65536;
constexpr size_t kMaxCheckerOutput = 8192;

}  // namespace reload
