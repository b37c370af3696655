// The master: binds listeners, forks and supervises generations of workers,
// and reloads them (SIGHUP in place, SIGUSR1 by exec under the same PID). It
// is single-threaded and serves only its small admin endpoint.
//
// A server plugs in through Service; nothing here knows what workers serve.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

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
  std::string contents;  // the bytes validated
  MasterConfig master;
  std::shared_ptr<const ServiceConfig> service;
  std::vector<std::string> warnings;  // unknown keys
};

// One listener a worker gets, in the order of the configuration's `bind`.
struct WorkerListener {
  int fd = -1;
  std::string name;  // the entry's NAME=, "" when it has none
  ListenAddress::Kind kind = ListenAddress::Kind::kTcp;
  std::string address;  // ListenAddress::toString()
};

// The listener kinds a service serves; a `bind` entry of another kind is
// refused by validation (file, key and reason).
struct ListenerKinds {
  bool tcp = true;
  bool unixStream = true;
  bool udp = false;
  bool accepts(ListenAddress::Kind kind) const {
    return kind == ListenAddress::Kind::kTcp    ? tcp
           : kind == ListenAddress::Kind::kUnix ? unixStream
                                                : udp;
  }
};

// How the master learns that a worker of a new generation serves.
enum class Readiness {
  kReadyPipe,     // the worker calls signalWorkerReady() (a byte on a pipe)
  kNotify,        // READY=1 on WorkerContext::notifySocket (systemd's sd_notify)
  kDelay,         // delaySeconds after the worker started
  kConnectProbe,  // a TCP (or Unix) connection to probeAddress succeeds
  kHttpProbe,     // GET probePath on probeAddress answers 2xx or 3xx
};

struct ReadinessCheck {
  Readiness mode = Readiness::kReadyPipe;
  double delaySeconds = 0;  // kDelay
  // The probes' address, resolved by validation (resolveListenAddress). A
  // probe answered by another generation's worker counts too: point it at
  // an address only the new worker serves (its port + slot with
  // probePortPerSlot), not at a listener every generation shares.
  ListenAddress probeAddress;
  bool probePortPerSlot = false;
  std::string probePath = "/";      // kHttpProbe
  double probeIntervalSeconds = 0.1;  // between attempts, until reload_timeout
};

// What the last good generation does while a new one is on probation.
enum class ProbationStyle {
  // It stops accepting but stands by, listeners open (SIGUSR1 from the
  // master; SIGHUP takes over again): a service written for the library.
  kStandby,
  // It goes on serving untouched and gets the drain signal only once the
  // new generation passed; a new one that fails is stopped and the old one
  // never noticed: for programs that know nothing of the library.
  kCanary,
};

// What a seamless reload (SIGUSR1, POST /reload-seamless) replaces
// (Service::seamlessReload).
enum class SeamlessReload {
  // The master and its workers: the new image starts a generation of its
  // own with the new configuration, and the old one drains once it serves
  // (moltd's workers run the master's own code, so they are upgraded too).
  kNewGeneration,
  // The master alone: the new image adopts the running workers as the
  // serving generation (same pids, slots, generation number, readiness and
  // start times; they stay children of the same PID) and starts none. It
  // keeps supervising them as the old image did (respawns, drains, a later
  // SIGHUP's new generation, the stop), keeps their notify socket and the
  // listeners, and serves with the configuration they were started with:
  // the file is validated, by the new binary too, and applied by the next
  // SIGHUP. For a supervisor of programs that know nothing of the library,
  // whose upgrade must not restart them. If the new image dies or hangs
  // before it serves, or dies within reload_probation seconds of it, the
  // synchronizer runs the last good binary, which starts a generation of
  // its own under the synchronizer's PID.
  kAdoptWorkers,
};

// A service's choices for the generations of one configuration
// (Service::generationPolicy).
struct GenerationPolicy {
  ReadinessCheck readiness;
  // Tells a worker to stop accepting and finish (SIGKILL follows after
  // graceful_timeout).
  int drainSignal = SIGTERM;
  ProbationStyle probation = ProbationStyle::kStandby;
  // Forwarded to the serving workers when the master gets SIGUSR2 (moltd's
  // re-check); 0 forwards nothing.
  int recheckSignal = 0;
};

struct WorkerContext {
  uint64_t generation = 0;
  int slot = 0;
  pid_t masterPid = 0;
  std::vector<int> listenerFds;  // public listeners, non-blocking
  std::vector<WorkerListener> listeners;  // the same, with names and kinds
  int readyFd = -1;  // see signalWorkerReady(); -1 unless Readiness::kReadyPipe
  // Readiness::kNotify: the NOTIFY_SOCKET value for this worker ("@name" of
  // an abstract socket the master reads); "" otherwise. NOTIFY_SOCKET itself
  // is unset in the worker: the service sets it for what it execs.
  std::string notifySocket;
  int nice = 0;      // the priority to serve at, once ready
  std::shared_ptr<const LoadedConfig> config;
  SharedCounters* counters = nullptr;  // shared with every process of the server
  // The word this worker's loop stamps (WorkerSignals does) for the master
  // to see that the loop turns; null when there is none.
  std::atomic<int64_t>* heartbeat = nullptr;
};

class Service {
 public:
  virtual ~Service() = default;
  virtual std::string version() const = 0;
  // The service's name ("moltd"): the "service" of /status, the prefix of
  // its metrics, of its processes' titles and of its memfds.
  virtual std::string name() const = 0;
  // The arguments (after the executable) of the validation run a seamless
  // reload makes of the binary on disk before it execs it. The run must
  // exit 0 and print formatConfigCheckLine(name(), version, digest).
  // Never empty: its first argument names the run in messages.
  virtual std::vector<std::string> validationArguments(const std::string& configPath) const {
    return {"--check-config", "--config", configPath};
  }
  // What a seamless reload replaces (default: master and workers). Asked
  // of the image that is replaced, when the reload begins.
  virtual SeamlessReload seamlessReload() const { return SeamlessReload::kNewGeneration; }
  // The listener kinds its workers serve (default: TCP and Unix stream).
  virtual ListenerKinds listenerKinds() const { return ListenerKinds{}; }
  // Readiness, drain signal and probation style of the generations started
  // with `config` (default: the ready pipe, SIGTERM, standby). Pure: called
  // on the master's loop.
  virtual GenerationPolicy generationPolicy(const LoadedConfig& /*config*/) const {
    return GenerationPolicy{};
  }
  // Reads the service's sections; records problems in `ini`. Pure: no disk
  // access and no name lookups (the master calls it on its loop).
  virtual std::shared_ptr<const ServiceConfig> parseConfig(IniConfig& ini,
                                                           const MasterConfig& master) = 0;
  // Checks what the service's workers will create or open (volumes, log
  // files) and records problems with ini.fail(). Runs only during
  // validation, never on the master's loop.
  virtual void checkEnvironment(const LoadedConfig& /*config*/, IniConfig& /*ini*/) {}
  // Runs in a freshly forked worker (single-threaded, handled signals
  // blocked, only its listeners and ready pipe open). Returns the exit code.
  virtual int runWorker(const WorkerContext& context) noexcept = 0;
  // Checks that touch the disk (volumes, flag files). The master runs them
  // in a child process ("moltd-probe") with a deadline, never on its loop:
  // at start, on every reload, on SIGUSR2 and every checkInterval seconds,
  // with what triggered it ("start", "reload", "signal", "poll"). Returns a
  // result for applyCheck.
  virtual std::string runCheck(const LoadedConfig& /*config*/, const std::string& /*trigger*/) {
    return "";
  }
  // In the master, without I/O: takes in a result of runCheck.
  virtual void applyCheck(const LoadedConfig& /*config*/, const std::string& /*trigger*/,
                          const std::string& /*result*/) {}
  // A check did not finish by its deadline (a hung mount); `what` says so.
  virtual void checkFailed(const std::string& /*what*/) {}
  // Seconds between periodic checks; 0 for none.
  virtual double checkInterval(const LoadedConfig& /*config*/) const { return 0; }
  // Adds service fields to /status.
  virtual void addStatus(const LoadedConfig& /*config*/, JsonObject& /*status*/) {}
  // Extra Prometheus lines for /metrics; `counters` are those the workers add to.
  virtual std::string metrics(const LoadedConfig& /*config*/, const SharedCounters& /*counters*/) {
    return "";
  }
};

// A Service whose configuration is `Config` (a ServiceConfig): the library
// does the one cast from the opaque configuration, so a service handles only
// its own type.
//
//   struct EchoConfig : reload::ServiceConfig { std::string greeting; };
//   class Echo : public reload::TypedService<EchoConfig> {
//     std::shared_ptr<const EchoConfig> parse(reload::IniConfig&, const reload::MasterConfig&) override;
//     int serve(const reload::WorkerContext&, const EchoConfig&) noexcept override;
//     ...
//   };
template <class Config>
class TypedService : public Service {
  static_assert(std::is_base_of_v<ServiceConfig, Config>, "Config must derive from ServiceConfig");

 public:
  // The service's part of a validated configuration.
  static const Config& configOf(const LoadedConfig& config) {
    return static_cast<const Config&>(*config.service);
  }
  // Reads the service's sections (see Service::parseConfig).
  virtual std::shared_ptr<const Config> parse(IniConfig& ini, const MasterConfig& master) = 0;
  // Runs a worker (see Service::runWorker).
  virtual int serve(const WorkerContext& context, const Config& config) noexcept = 0;
  // The generations' policy for `config` (see Service::generationPolicy).
  virtual GenerationPolicy policy(const Config& /*config*/) const { return GenerationPolicy{}; }

  std::shared_ptr<const ServiceConfig> parseConfig(IniConfig& ini,
                                                   const MasterConfig& master) final {
    return parse(ini, master);
  }
  int runWorker(const WorkerContext& context) noexcept final {
    return serve(context, configOf(*context.config));
  }
  GenerationPolicy generationPolicy(const LoadedConfig& config) const final {
    return policy(configOf(config));
  }
};

// Tells the master the worker accepts. A worker starts at the master's
// priority (a reload waits for its start-up) and this drops every one of its
// threads to the serving priority. Returns false when the master is gone.
bool signalWorkerReady(const WorkerContext& context);

// The one validation of a configuration, used by --check-config, at start,
// by both images of a seamless reload and (in a child process) by every
// reload: strict syntax, every value, name resolution of every bind host,
// and everything a reload will create or open (pid file directory, log
// files, admin token, the service's checkEnvironment). Throws ConfigError
// with every problem as "file: [section] key: reason (line N)".
std::shared_ptr<const LoadedConfig> loadConfig(const std::string& path, Service& service);

// What validation hands to the master: the bytes it validated and the
// address every bind entry resolved to, so that the master can rebuild the
// configuration without disk access or name lookups.
struct ValidatedConfig {
  std::string contents;
  std::string adminToken;
  std::vector<std::pair<std::string, std::string>> resolved;  // "host:port" -> sockaddr bytes
};
ValidatedConfig describeValidated(const LoadedConfig& config);
std::string encodeValidated(const ValidatedConfig& validated);
// Throws std::invalid_argument when `bytes` is not a whole encoding.
ValidatedConfig decodeValidated(const std::string& bytes);
// Rebuilds a validated configuration: parsing only, no I/O. Throws ConfigError.
std::shared_ptr<const LoadedConfig> loadValidatedConfig(const std::string& path,
                                                        const ValidatedConfig& validated,
                                                        Service& service);

struct MasterOptions {
  std::string configPath;
  std::vector<std::string> argv;  // as the process was started
  std::string executable;         // argv[0], made absolute at start if relative
  // --last-good-dir: where the last good record is kept (see
  // runServiceMain); "" for none.
  std::string lastGoodDir;
  // --start-from-last-good: the validated configuration of the record the
  // start script took, started with instead of the file (whose path is
  // configPath), and what the log and /status say about that start.
  std::string startValidated;
  std::string startDigest;
  std::string startNote;
};

// Resolves what exec would run for `executable` now (PATH lookup for a bare
// name). Throws std::system_error if there is nothing executable there.
std::string resolveExecutable(const std::string& executable);

// Runs the master until it stops. Returns the process exit code.
int runMaster(Service& service, const MasterOptions& options);

// What a service binary's main does once it has read its own arguments:
// with checkOnly, validates the configuration and prints the versioned
// check line first, then any warning (0, or exitConfig); otherwise runs the
// master as the process was started (exitConfig for a bad configuration, 1
// for any other failure, on standard error and in the log).
//
// With lastGoodDir (--last-good-dir DIR), the master keeps a copy of the
// last good binary and its validated configuration in DIR (see
// etc/moltd-start): once its first generation served reload_probation
// seconds, once a reload passed probation, and before every seamless exec;
// a graceful stop removes it. startFromLastGood (--start-from-last-good)
// starts with the record the start script took (DIR/taken), its executable
// and configuration paths for later reloads, its validated configuration
// now; checkLastGood (--check-last-good) only checks that record and prints
// what it holds (0, or 1).
struct ServiceMainOptions {
  std::string configPath;
  std::vector<std::string> args;  // the process's argv
  bool checkOnly = false;
  std::string lastGoodDir;
  bool startFromLastGood = false;
  bool checkLastGood = false;
  int exitConfig = 78;  // EX_CONFIG
  std::function<void()> beforeMaster;  // a test build's fault switch, say
};
int runServiceMain(Service& service, const ServiceMainOptions& run);

// The command line every service binary shares, read for it:
//   -c, --config PATH | --config=PATH   (default `defaultConfig`)
//   -t, --check-config                  the validation run (runServiceMain)
//   --config-keys                       every key the parsers accept, as section.key
//   --last-good-dir DIR, --start-from-last-good, --check-last-good
//                                       the last good record (ServiceMainOptions)
//   -V, --version    -h, --help
// An unknown argument, or --config without a path, prints the usage and
// exits 64 (EX_USAGE). The help text names the service, then adds
// `checkHelp` (what -t checks, lines indented to the option texts) and
// `signalsHelp` (a closing paragraph on the master's signals).
struct CommandLine {
  std::string defaultConfig;
  std::string checkHelp = "validate the configuration, print the check line and exit 0 if it is valid";
  std::string signalsHelp;
  int exitConfig = 78;                 // EX_CONFIG
  std::function<void()> beforeMaster;  // as in ServiceMainOptions
};
int serviceMain(Service& service, int argc, char** argv, const CommandLine& commandLine);

}  // namespace reload
