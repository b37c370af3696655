// What the master reports on /status and /metrics, rendered from a snapshot
// of its state: no master and no system call is needed to test it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "reload/handoff.h"
#include "reload/json.h"
#include "reload/reload_policy.h"
#include "reload/worker_registry.h"

namespace reload {

// How the last reload ended.
struct ReloadRecord {
  std::string kind;
  std::string result;  // ok, failed, refused, rolled_back
  std::string reason;
  double durationMs = 0;
  int64_t finishedEpoch = 0;
  uint64_t generation = 0;
};

struct ListenerReport {
  std::string address;
  std::string role;
  bool listening = true;  // false once any holder shut the socket down
};

// The generation on probation, while it is.
struct ProbationReport {
  uint64_t generation = 0;
  uint64_t lastGood = 0;
  std::string kind;
  double secondsOn = 0;
  double secondsLeft = 0;
  uint64_t answers = 0;
  uint64_t serverErrors = 0;
};

// The last good record (--last-good-dir) and how this image started.
struct LastGoodReport {
  std::string dir;         // "" when there is none
  std::string state = "none";  // none, writing, written, failed
  std::string version;     // of the binary last recorded
  std::string configDigest;
  std::string why;
  std::string error;       // of the last write that failed
  // disk, last_good_record, seamless_reload, rollback, rescue
  std::string startedFrom = "disk";
  std::string startNote;
};

struct MasterSnapshot {
  std::string service;  // Service::name(): "service" in /status, the metrics' prefix
  std::string version;
  pid_t pid = 0;
  Phase phase = Phase::kRunning;
  uint64_t servingGeneration = 0;
  std::string configPath;
  std::string configDigest;
  int64_t startedEpoch = 0;
  int64_t nowEpoch = 0;
  double nowMonotonic = 0;  // to age draining workers
  std::vector<WorkerInfo> workers;
  std::vector<ListenerReport> listeners;
  bool inheritListeners = true;  // listener_handoff
  HandoffCounters counters;
  // Log records every process of the server dropped (shared counters).
  uint64_t logRecordsDropped = 0;
  ReloadKind activeReload = ReloadKind::kNone;
  ReloadKind pendingReload = ReloadKind::kNone;
  std::optional<ReloadRecord> lastReload;
  std::optional<ProbationReport> probation;
  LastGoodReport lastGood;
};

// The /status document; the service adds its own fields to it.
JsonObject statusReport(const MasterSnapshot& snapshot);
// The master's part of /metrics, in the Prometheus text format.
std::string metricsReport(const MasterSnapshot& snapshot);
// The prefix of the service's metrics: its name with every character that
// cannot be in a Prometheus name made '_', then '_' ("moltd_").
std::string metricPrefix(const std::string& service);
// A label value as the Prometheus text format wants it.
std::string prometheusLabel(const std::string& value);

}  // namespace reload
