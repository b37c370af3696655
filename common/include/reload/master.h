// The master: binds listeners, forks and supervises generations of workers,
// and reloads them (SIGHUP in place, SIGUSR1 by exec under the same PID). It
// is single-threaded and serves only its small admin endpoint.
//
// A server plugs in through Service; nothing here knows what workers serve.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "reload/admin_server.h"
#include "reload/ini_config.h"
#include "reload/json.h"
#include "reload/master_config.h"
#include "reload/shared_counters.h"

namespace reload {

// The service's own part of a configuration; opaque to the master.
class ServiceConfig {
 public:
  virtual ~ServiceConfig() = default;
};

struct LoadedConfig {
  std::string path;
  std::string digest;
  MasterConfig master;
  std::shared_ptr<const ServiceConfig> service;
  std::vector<std::string> warnings;  // unknown keys
};

struct WorkerContext {
  uint64_t generation = 0;
  int slot = 0;
  pid_t masterPid = 0;
  std::vector<int> listenerFds;  // public listeners, non-blocking
  int readyFd = -1;  // see signalWorkerReady()
  int nice = 0;      // the priority to serve at, once ready
  std::shared_ptr<const LoadedConfig> config;
  SharedCounters* counters = nullptr;  // shared with every process of the server
};

class Service {
 public:
  virtual ~Service() = default;
  virtual std::string version() const = 0;
  // Reads the service's sections; records problems in `ini`.
  virtual std::shared_ptr<const ServiceConfig> parseConfig(IniConfig& ini,
                                                           const MasterConfig& master) = 0;
  // Runs in a freshly forked worker (single-threaded, handled signals
  // blocked, only its listeners and ready pipe open). Returns the exit code.
  virtual int runWorker(const WorkerContext& context) noexcept = 0;
  // Called in the master at start, on every reload, on SIGUSR2 and every
  // second, with what triggered it ("start", "reload", "signal", "poll").
  virtual void check(const LoadedConfig& /*config*/, const std::string& /*trigger*/) {}
  // Adds service fields to /status.
  virtual void addStatus(const LoadedConfig& /*config*/, JsonObject& /*status*/) {}
  // Extra Prometheus lines for /metrics; `counters` are those the workers add to.
  virtual std::string metrics(const LoadedConfig& /*config*/, const SharedCounters& /*counters*/) {
    return "";
  }
};

// Tells the master the worker accepts. A worker starts at the master's
// priority (a reload waits for its start-up) and this drops every one of its
// threads to the serving priority. Returns false when the master is gone.
bool signalWorkerReady(const WorkerContext& context);

// Parses and validates a whole configuration file. Throws ConfigError with
// every problem as "file: [section] key: reason".
std::shared_ptr<const LoadedConfig> loadConfig(const std::string& path, Service& service);

struct MasterOptions {
  std::string configPath;
  std::vector<std::string> argv;  // as the process was started
  std::string executable;         // argv[0], made absolute at start if relative
};

// Resolves what exec would run for `executable` now (PATH lookup for a bare
// name). Throws std::system_error if there is nothing executable there.
std::string resolveExecutable(const std::string& executable);

// Runs the master until it stops. Returns the process exit code.
int runMaster(Service& service, const MasterOptions& options);

}  // namespace reload
