// The master's helper tasks: child processes that do what the master's
// loop must not (name lookups, disk checks, running the new binary), each
// with a deadline and an output bound. One of each kind runs at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
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
  double timeoutSeconds = 0;
};

// The new binary's --check-config, run before a seamless reload execs it.
// It starts beside the validation child; what it says is looked at only
// once the validation has given the configuration and the executable
// (`validated`), so that a refused validation is reported as such.
struct Checker {
  Checker(EventLoop& loop, std::function<void()> onTimeout) : task(loop, std::move(onTimeout)) {}
  ChildTask task;
  std::shared_ptr<const LoadedConfig> config;
  std::string executable;  // the one the validation found
  bool validated = false;
  // It ended before the validation did: its outcome waits here.
  std::optional<ChildTask::Outcome> early;
};

// A child writing the last good record (last_good.h).
struct RecordWriter {
  RecordWriter(EventLoop& loop, std::function<void()> onTimeout) : task(loop, std::move(onTimeout)) {}
  ChildTask task;
  std::string why;
  std::string note;
  bool withRecord = false;  // false: the note alone
};

constexpr double kProbeTimeout = 10;
// The start check may repair a volume's key index (a scan of every object
// file) before any worker serves: it takes what it takes, the master
// answering meanwhile, and systemd's TimeoutStartSec= bounds a start.
constexpr double kStartCheckTimeout = 3600;
// A record is one copy of the binary at most.
constexpr double kRecordTimeout = 30;
// How long a stop waits for a helper after killing it.
constexpr int64_t kHelperStopGraceMs = 1000;
constexpr size_t kMaxProbeOutput = 1 << 20;
constexpr size_t kMaxValidationOutput = 2 * IniConfig::kMaxConfigBytes + 65536;
// The new binary's output and the line naming it (a path).
constexpr size_t kMaxCheckerOutput = 8192 + 4096;
// The check's first line: the executable it runs (its path follows).
constexpr const char kCheckedExecutablePrefix[] = "checked executable: ";

}  // namespace reload
