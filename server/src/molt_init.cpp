// molt-init: start, stop and reload moltd the way swift-init drives Swift.
//
//   molt-init [moltd|all ...] COMMAND [options]
//
// Instances are found like swift-init finds its servers: CONF_DIR/moltd.conf,
// and one instance per CONF_DIR/moltd/*.conf. molt-run instances are named:
// molt-run@NAME is CONF_DIR/molt-run/NAME.conf with RUN_DIR/molt-run@NAME.pid.
// Pid files live in the run dir.
// Every waiting command waits on what the server reports on its admin
// endpoint, never on a fixed delay.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <climits>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "reload/fd.h"
#include "server_config.h"
#include "reload/listen_address.h"
#include "reload/master.h"
#include "reload/pid_file.h"

namespace {

enum Exit : int {
  kOk = 0,
  kFailed = 1,       // also: not running (status, stop, reload)
  kUsage = 2,
  kAlreadyRunning = 3,
  kPermission = 4,
  kReloadFailed = 5,
};

struct Options {
  bool verbose = false;
  bool noWait = false;
  bool noProbationWait = false;  // a reload's outcome is "serving", not "passed probation"
  bool noDaemon = false;
  bool graceful = false;
  bool strict = false;
  bool killAfterTimeout = false;
  int configNum = 0;  // 0: every instance
  double killWait = 15;
  double waitTimeout = 60;
  std::string runDir = "/run/molt";
  std::string confDir = "/etc/molt";
  std::string moltd;
  std::string moltRun;
};

struct Instance {
  std::string name;     // "moltd" or "moltd-2"
  std::string config;
  std::string pidFile;
  std::string stdioLog;
  std::string program = "moltd";  // or "molt-run"
};

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void pause20ms() { std::this_thread::sleep_for(std::chrono::milliseconds(20)); }

std::string selfDir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  std::string path(buf, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}

std::string moltdBinary(const Options& opt) {
  if (!opt.moltd.empty()) return opt.moltd;
  if (const char* env = getenv("MOLTD")) return env;
  std::string sibling = selfDir() + "/moltd";
  if (access(sibling.c_str(), X_OK) == 0) return sibling;
  return "moltd";
}

std::string moltRunBinary(const Options& opt) {
  if (!opt.moltRun.empty()) return opt.moltRun;
  if (const char* env = getenv("MOLT_RUN")) return env;
  std::string sibling = selfDir() + "/molt-run";
  if (access(sibling.c_str(), X_OK) == 0) return sibling;
  return "molt-run";
}

std::string binaryOf(const Options& opt, const Instance& inst) {
  return inst.program == "molt-run" ? moltRunBinary(opt) : moltdBinary(opt);
}

// "" when NAME may follow molt-run@ (it names a file: letters, digits, '.',
// '_' and '-', not starting with '.'), else why not.
std::string moltRunNameProblem(const std::string& name) {
  if (name.empty()) return "molt-run@ needs an instance name (molt-run@NAME)";
  if (name[0] == '.' || name.size() > 200) return "'" + name + "' is not an instance name";
  for (unsigned char c : name)
    if (!std::isalnum(c) && c != '.' && c != '_' && c != '-')
      return "'" + name + "' is not an instance name (letters, digits, '.', '_', '-')";
  return "";
}

Instance moltRunInstance(const Options& opt, const std::string& name) {
  Instance inst{"molt-run@" + name, opt.confDir + "/molt-run/" + name + ".conf",
                opt.runDir + "/molt-run@" + name + ".pid", opt.runDir + "/molt-run@" + name + ".log"};
  inst.program = "molt-run";
  return inst;
}

std::vector<Instance> findInstances(const Options& opt) {
  std::vector<Instance> out;
  std::string single = opt.confDir + "/moltd.conf";
  if (access(single.c_str(), F_OK) == 0)
    out.push_back({"moltd", single, opt.runDir + "/moltd.pid", opt.runDir + "/moltd.log"});
  std::vector<std::string> many;
  if (DIR* d = opendir((opt.confDir + "/moltd").c_str())) {
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name.size() > 5 && name.compare(name.size() - 5, 5, ".conf") == 0) many.push_back(name);
    }
    closedir(d);
  }
  std::sort(many.begin(), many.end());
  for (size_t i = 0; i < many.size(); ++i) {
    std::string n = std::to_string(i + 1);
    out.push_back({"moltd-" + n, opt.confDir + "/moltd/" + many[i],
                   opt.runDir + "/moltd/" + n + ".pid", opt.runDir + "/moltd/" + n + ".log"});
  }
  if (opt.configNum > 0) {
    if (static_cast<size_t>(opt.configNum) > out.size()) return {};
    return {out[static_cast<size_t>(opt.configNum) - 1]};
  }
  return out;
}

// ---------------------------------------------------------------- pid files

enum class PidState { kNone, kRunning, kStale, kReused };

struct PidInfo {
  PidState state = PidState::kNone;
  pid_t pid = 0;
  std::string note;
};

std::string commOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

bool alive(pid_t pid) {
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string all;
  std::getline(stat, all);
  auto close = all.rfind(')');
  return close != std::string::npos && all.size() > close + 2 && all[close + 2] != 'Z';
}

PidInfo readPid(const Instance& inst) {
  PidInfo info;
  std::ifstream in(inst.pidFile);
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return info;
  info.pid = static_cast<pid_t>(pid);
  if (!alive(info.pid)) {
    info.state = PidState::kStale;
    info.note = "stale pid file " + inst.pidFile + ": pid " + std::to_string(pid) + " is not running";
    return info;
  }
  std::string comm = commOf(info.pid);
  // The library names the master's process after the service; molt-run's
  // may still carry the library's older "moltd-master".
  bool ours = comm.rfind("moltd", 0) == 0 ||
              (inst.program == "molt-run" && comm.rfind("molt-run", 0) == 0);
  if (!ours) {
    info.state = PidState::kReused;
    info.note = "stale pid file " + inst.pidFile + ": pid " + std::to_string(pid) +
                " now belongs to '" + comm + "', not " + inst.program + "; not signalling it";
    return info;
  }
  info.state = PidState::kRunning;
  return info;
}

// Creates the pid file's directory and checks that we may write there.
bool preparePidDir(const Instance& inst, std::string& error) {
  std::string dir = inst.pidFile.substr(0, inst.pidFile.rfind('/'));
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos == dir.size() || dir[pos] == '/') {
      std::string partial = dir.substr(0, pos);
      if (mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
        error = "mkdir " + partial + ": " + std::strerror(errno);
        return false;
      }
    }
  }
  if (access(dir.c_str(), W_OK) != 0) {
    error = "cannot write pid files in " + dir + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

bool writePidFile(const Instance& inst, pid_t pid, std::string& error) {
  try {
    reload::PidFile(inst.pidFile).write(pid);
  } catch (const std::exception& e) {
    error = "write " + inst.pidFile + ": " + e.what();
    return false;
  }
  return true;
}

// ------------------------------------------------------------ admin client

struct AdminReply {
  int status = 0;
  std::string body;
  std::string error;
};

AdminReply adminRequest(const reload::ListenAddress& address, const std::string& method,
                        const std::string& path) {
  AdminReply reply;
  sockaddr_storage addr{};
  socklen_t len = 0;
  int family = AF_INET;
  if (address.kind == reload::ListenAddress::Kind::kUnix) {
    auto& un = reinterpret_cast<sockaddr_un&>(addr);
    un.sun_family = AF_UNIX;
    std::strncpy(un.sun_path, address.path.c_str(), sizeof un.sun_path - 1);
    len = sizeof un;
    family = AF_UNIX;
  } else {
    reload::ListenAddress target = address;
    if (target.host.empty()) target.host = "127.0.0.1";
    try {
      len = reload::resolveSockaddr(target, addr);
    } catch (const std::exception& e) {
      reply.error = e.what();
      return reply;
    }
    family = addr.ss_family;
  }
  reload::Fd fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval tv{5, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    reply.error = "connect to admin " + address.toString() + ": " + std::strerror(errno);
    return reply;
  }
  std::string request = method + " " + path + " HTTP/1.1\r\nHost: molt-init\r\nConnection: close\r\n" +
                        (method == "POST" ? "Content-Length: 0\r\n" : "") + "\r\n";
  if (send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) < 0) {
    reply.error = std::string("send: ") + std::strerror(errno);
    return reply;
  }
  std::string all;
  char buf[8192];
  ssize_t n;
  while ((n = recv(fd.get(), buf, sizeof buf, 0)) > 0) all.append(buf, static_cast<size_t>(n));
  auto end = all.find("\r\n\r\n");
  if (end == std::string::npos || std::sscanf(all.c_str(), "HTTP/1.%*d %d", &reply.status) != 1) {
    reply.error = "no answer from admin " + address.toString();
    return reply;
  }
  reply.body = all.substr(end + 4);
  return reply;
}

// What molt-init needs from a config file. Read leniently: a reload is often
// tried with a file that has a mistake in it, and the server's own answer
// (refused, with the reason) is what the operator must see, so one bad key
// must not hide the admin address.
struct Settings {
  reload::MasterConfig master;
  std::string readOnlyFile;
};

struct Loaded {
  std::shared_ptr<const Settings> config;
  std::string error;
};

Loaded loadInstanceConfig(const Instance& inst) {
  try {
    reload::IniConfig ini(inst.config);
    auto settings = std::make_shared<Settings>();
    settings->master = reload::parseMasterConfig(ini);
    if (inst.program == "moltd")
      settings->readOnlyFile = server::parseObjectServerConfig(ini)->storage.readOnlyFile;
    return {settings, ""};
  } catch (const std::exception& e) {
    return {nullptr, e.what()};
  }
}

Poco::JSON::Object::Ptr statusOf(const Settings& config, std::string& error) {
  if (config.master.adminBind.empty()) {
    error = "no [admin] bind address";
    return nullptr;
  }
  AdminReply r = adminRequest(config.master.adminBind[0], "GET", "/status");
  if (!r.error.empty() || r.status != 200) {
    error = r.error.empty() ? "admin answered " + std::to_string(r.status) : r.error;
    return nullptr;
  }
  try {
    Poco::JSON::Parser parser;
    return parser.parse(r.body).extract<Poco::JSON::Object::Ptr>();
  } catch (const Poco::Exception& e) {
    error = "unreadable status: " + e.displayText();
    return nullptr;
  }
}

template <typename T>
T field(const Poco::JSON::Object::Ptr& obj, const std::string& key, T fallback) {
  if (!obj || !obj->has(key) || obj->isNull(key)) return fallback;
  try {
    return obj->getValue<T>(key);
  } catch (const Poco::Exception&) {
    return fallback;
  }
}

std::string tailOf(const std::string& path, size_t lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) all.push_back(line);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i)
    out += "  " + all[i] + "\n";
  return out;
}

// ---------------------------------------------------------------- commands

class Commands {
 public:
  explicit Commands(Options opt) : opt_(std::move(opt)) {}

  int start(const Instance& inst, bool foreground) {
    PidInfo pid = readPid(inst);
    if (pid.state == PidState::kRunning) {
      std::cout << inst.name << " already running (pid " << pid.pid << ")\n";
      return kAlreadyRunning;
    }
    if (pid.state != PidState::kNone) {
      std::cout << pid.note << "; removing it\n";
      unlink(inst.pidFile.c_str());
    }
    std::string binary = binaryOf(opt_, inst);
    if (foreground) {
      execlp(binary.c_str(), binary.c_str(), "--config", inst.config.c_str(), nullptr);
      std::cerr << "molt-init: exec " << binary << ": " << std::strerror(errno) << "\n";
      return kFailed;
    }
    Loaded loaded = loadInstanceConfig(inst);
    std::string error;
    if (!preparePidDir(inst, error)) {
      std::cerr << "molt-init: " << error << "\n";
      return errno == EACCES || errno == EPERM ? kPermission : kFailed;
    }
    pid_t child = fork();
    if (child < 0) {
      std::cerr << "molt-init: fork: " << std::strerror(errno) << "\n";
      return kFailed;
    }
    if (child == 0) {
      setsid();
      int null = open("/dev/null", O_RDONLY);
      int log = open(inst.stdioLog.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0640);
      if (null >= 0) dup2(null, STDIN_FILENO);
      if (log >= 0) {
        dup2(log, STDOUT_FILENO);
        dup2(log, STDERR_FILENO);
      }
      execlp(binary.c_str(), binary.c_str(), "--config", inst.config.c_str(), nullptr);
      dprintf(STDERR_FILENO, "molt-init: exec %s: %s\n", binary.c_str(), std::strerror(errno));
      _exit(127);
    }
    if (!writePidFile(inst, child, error)) std::cerr << "molt-init: " << error << "\n";
    if (opt_.noWait) {
      std::cout << "Starting " << inst.name << " (pid " << child << ")\n";
      return kOk;
    }
    double deadline = now() + opt_.waitTimeout;
    while (now() < deadline) {
      int status = 0;
      if (waitpid(child, &status, WNOHANG) == child) {
        unlink(inst.pidFile.c_str());
        std::cerr << inst.name << " failed to start (" << reloadExit(status) << "):\n"
                  << tailOf(inst.stdioLog, 10);
        return kFailed;
      }
      if (loaded.config) {
        std::string why;
        auto st = statusOf(*loaded.config, why);
        if (st && field<int>(st, "pid", 0) == child &&
            field<std::string>(st, "state", "") == "running") {
          std::cout << inst.name << " started (pid " << child << ", generation "
                    << field<int>(st, "generation", 0) << ")\n";
          return kOk;
        }
      }
      pause20ms();
    }
    std::cerr << inst.name << " (pid " << child << ") did not report ready within "
              << opt_.waitTimeout << "s\n" << tailOf(inst.stdioLog, 10);
    return kFailed;
  }

  int stop(const Instance& inst, bool graceful) {
    PidInfo pid = readPid(inst);
    if (pid.state != PidState::kRunning) return notRunning(inst, pid);
    int sig = graceful ? SIGTERM : SIGINT;
    if (kill(pid.pid, sig) != 0) return signalError(pid.pid);
    if (opt_.verbose)
      std::cout << "Signal " << inst.name << " pid " << pid.pid << " with " << sigabbrev_np(sig) << "\n";
    std::cout << (graceful ? "Shutting down " : "Stopping ") << inst.name << " (pid " << pid.pid << ")\n";
    if (opt_.noWait) return kOk;
    pid_t group = getpgid(pid.pid);
    double deadline = now() + opt_.killWait;
    while (now() < deadline && alive(pid.pid)) pause20ms();
    if (alive(pid.pid)) {
      if (!opt_.killAfterTimeout) {
        std::cerr << inst.name << " (pid " << pid.pid << ") still running after " << opt_.killWait
                  << "s; use --kill-after-timeout to kill it\n";
        return kFailed;
      }
      std::cout << "Killing " << inst.name << " process group " << group << " after "
                << opt_.killWait << "s\n";
      if (group > 1) kill(-group, SIGKILL);
      kill(pid.pid, SIGKILL);
      double hard = now() + 10;
      while (now() < hard && alive(pid.pid)) pause20ms();
    }
    unlink(inst.pidFile.c_str());
    std::cout << inst.name << " stopped\n";
    return kOk;
  }

  int reload(const Instance& inst, bool seamless) {
    PidInfo pid = readPid(inst);
    if (pid.state != PidState::kRunning) return notRunning(inst, pid);
    Loaded loaded = loadInstanceConfig(inst);
    std::string why;
    Poco::JSON::Object::Ptr before = loaded.config ? statusOf(*loaded.config, why) : nullptr;
    if (!before) {
      if (kill(pid.pid, seamless ? SIGUSR1 : SIGHUP) != 0) return signalError(pid.pid);
      std::cerr << inst.name << ": signalled pid " << pid.pid << " but cannot follow the reload: "
                << (loaded.config ? why : loaded.error) << "\n";
      return kReloadFailed;
    }
    long count = field<long>(before, "reloads", 0) + field<long>(before, "reloads_failed", 0);
    if (kill(pid.pid, seamless ? SIGUSR1 : SIGHUP) != 0) return signalError(pid.pid);
    if (opt_.noWait) {
      std::cout << "Signalled " << inst.name << " (pid " << pid.pid << ")\n";
      return kOk;
    }
    // A reload ends when its generation passed probation or was rolled
    // back, unless asked to stop waiting once it serves.
    double deadline = now() + std::max(opt_.waitTimeout, loaded.config->master.reloadTimeout * 2 +
                                                             loaded.config->master.reloadProbation + 10);
    long generationBefore = field<long>(before, "generation", 0);
    while (now() < deadline) {
      auto st = statusOf(*loaded.config, why);  // fails briefly while the image is replaced
      if (st && opt_.noProbationWait && st->has("probation") && !st->isNull("probation")) {
        auto probation = st->getObject("probation");
        if (field<long>(probation, "generation", 0) > generationBefore) {
          std::cout << inst.name << " serves generation " << field<long>(probation, "generation", 0)
                    << " (pid " << field<int>(st, "pid", 0) << ", version "
                    << field<std::string>(st, "version", "?") << ") on probation for "
                    << field<double>(probation, "seconds_left", 0) << " s more; not waiting\n";
          return kOk;
        }
      }
      if (st && field<long>(st, "reloads", 0) + field<long>(st, "reloads_failed", 0) > count &&
          field<std::string>(st, "reload_in_progress", "") == "none" &&
          field<std::string>(st, "state", "") == "running") {
        auto last = st->getObject("last_reload");
        std::string result = field<std::string>(last, "result", "?");
        if (result == "ok") {
          std::cout << inst.name << " " << (seamless ? "seamlessly reloaded" : "reloaded") << " (pid "
                    << field<int>(st, "pid", 0) << ", generation " << field<int>(st, "generation", 0)
                    << ", version " << field<std::string>(st, "version", "?") << ", "
                    << field<double>(last, "duration_ms", 0) << " ms)\n";
          return kOk;
        }
        std::cerr << inst.name << " reload " << result << ": " << field<std::string>(last, "reason", "")
                  << "\n" << inst.name << " keeps serving generation "
                  << field<int>(st, "generation", 0) << "\n";
        return kReloadFailed;
      }
      if (!alive(pid.pid)) {
        std::cerr << inst.name << " (pid " << pid.pid << ") exited during the reload\n";
        return kReloadFailed;
      }
      pause20ms();
    }
    std::cerr << inst.name << ": no reload outcome within the wait\n";
    return kReloadFailed;
  }

  int status(const Instance& inst) {
    PidInfo pid = readPid(inst);
    if (pid.state != PidState::kRunning) return notRunning(inst, pid);
    Loaded loaded = loadInstanceConfig(inst);
    std::string why;
    auto st = loaded.config ? statusOf(*loaded.config, why) : nullptr;
    if (!st) {
      std::cout << inst.name << " running (pid " << pid.pid << "); status unavailable: "
                << (loaded.config ? why : loaded.error) << "\n";
      return kFailed;
    }
    auto workers = st->getArray("workers");
    auto draining = st->getArray("draining_workers");
    std::cout << inst.name << " running (pid " << pid.pid << ") version "
              << field<std::string>(st, "version", "?") << ", generation "
              << field<int>(st, "generation", 0) << ", "
              // Only moltd has a read-only mode; molt-run's status has no "mode".
              << (st->has("mode") ? field<std::string>(st, "mode", "") + ", " : "")
              << (workers ? workers->size() : 0) << " workers"
              << (draining && draining->size() ? ", " + std::to_string(draining->size()) + " draining" : "")
              << ", up " << field<long>(st, "uptime_seconds", 0) << "s\n";
    auto last = st->getObject("last_reload");
    if (last)
      std::cout << "  last reload: " << field<std::string>(last, "kind", "?") << " "
                << field<std::string>(last, "result", "?")
                << (field<std::string>(last, "reason", "").empty() ? "" : ": " + field<std::string>(last, "reason", ""))
                << "\n";
    if (opt_.verbose) std::cout << "  config " << inst.config << ", pid file " << inst.pidFile << "\n";
    return kOk;
  }

  int setMode(const Instance& inst, bool readOnly) {
    if (inst.program != "moltd") {
      std::cerr << "molt-init: " << inst.name << " has no read-only mode\n";
      return kUsage;
    }
    Loaded loaded = loadInstanceConfig(inst);
    if (!loaded.config) {
      std::cerr << loaded.error << "\n";
      return kFailed;
    }
    std::string file = loaded.config->readOnlyFile;
    if (file.empty()) {
      std::cerr << inst.config << ": [storage] read_only_file is not set; cannot switch modes\n";
      return kUsage;
    }
    if (readOnly) {
      // Only its presence counts. Never through a link: whoever can write
      // its directory (the workers' user, when it is in a volume) could
      // point one at any path, which a root molt-init would create.
      reload::Fd fd(open(file.c_str(), O_RDONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644));
      if (!fd) {
        const int err = errno;
        std::cerr << "molt-init: create " << file << ": "
                  << (err == ELOOP ? "it is a symbolic link, which is not followed" : std::strerror(err)) << "\n";
        errno = err;
        return errno == EACCES ? kPermission : kFailed;
      }
    } else if (unlink(file.c_str()) != 0 && errno != ENOENT) {
      std::cerr << "molt-init: remove " << file << ": " << std::strerror(errno) << "\n";
      return errno == EACCES ? kPermission : kFailed;
    }
    std::string wanted = readOnly ? "read-only" : "read-write";
    PidInfo pid = readPid(inst);
    if (pid.state != PidState::kRunning) {
      std::cout << inst.name << " not running; it will start " << wanted << "\n";
      return kOk;
    }
    if (kill(pid.pid, SIGUSR2) != 0) return signalError(pid.pid);
    double deadline = now() + opt_.waitTimeout;
    std::string why;
    while (now() < deadline) {
      auto st = statusOf(*loaded.config, why);
      if (st && field<std::string>(st, "mode", "") == wanted) {
        std::cout << inst.name << " is " << wanted << "\n";
        return kOk;
      }
      pause20ms();
    }
    std::cerr << inst.name << " did not report " << wanted << " in time (" << why << ")\n";
    return kFailed;
  }

 private:
  static std::string reloadExit(int status) {
    if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
    return std::string("killed by SIG") + sigabbrev_np(WTERMSIG(status));
  }

  int notRunning(const Instance& inst, const PidInfo& pid) {
    if (pid.state == PidState::kNone) std::cout << inst.name << " not running\n";
    else std::cout << inst.name << " not running (" << pid.note << ")\n";
    return kFailed;
  }

  int signalError(pid_t pid) {
    int err = errno;
    std::cerr << "molt-init: signal pid " << pid << ": " << std::strerror(err)
              << (err == EPERM ? " (run as the server's user or root)" : "") << "\n";
    return err == EPERM ? kPermission : kFailed;
  }

  Options opt_;
};

void usage(std::ostream& out) {
  out << "usage: molt-init [moltd|all|molt-run@NAME ...] COMMAND [options]\n\n"
         "  moltd, all       the moltd instances of CONF_DIR/moltd.conf and CONF_DIR/moltd/*.conf\n"
         "  molt-run@NAME    molt-run with CONF_DIR/molt-run/NAME.conf, RUN_DIR/molt-run@NAME.pid\n\n"
         "commands:\n"
         "  start            start moltd and wait until it serves\n"
         "  stop             stop at once (SIGINT)\n"
         "  shutdown         stop gracefully (SIGTERM): in-flight requests finish\n"
         "  restart          stop (or shut down with -g), then start\n"
         "  reload           re-read the configuration in place (SIGHUP) and wait for the outcome\n"
         "  reload-seamless  new binary and configuration, same PID (SIGUSR1); waits for the outcome\n"
         "  force-reload     reload-seamless if running, else start; restart if the reload fails\n"
         "  status           whether it runs, pid, generation, mode, workers, last reload\n"
         "  no-daemon        run in the foreground\n"
         "  no-wait          start without waiting for readiness\n"
         "  once             run in the foreground (moltd has no one-shot mode)\n"
         "  read-only        create read_only_file, tell moltd (SIGUSR2), wait for the mode\n"
         "  read-write       remove read_only_file, tell moltd, wait for the mode\n\n"
         "options:\n"
         "  -v, --verbose              say more\n"
         "  -w, --no-wait              do not wait for the outcome\n"
         "  --no-probation-wait        reloads: return once the new generation serves, without\n"
         "                             waiting for its probation to pass or roll back\n"
         "  -n, --no-daemon            start in the foreground\n"
         "  -g, --graceful             restart with a graceful shutdown\n"
         "  -c N, --config-num=N       act on the N-th config of CONF_DIR/moltd/ only\n"
         "  -k N, --kill-wait=N        seconds to wait for a stop (default 15)\n"
         "  -r DIR, --run-dir=DIR      pid files and start-up output (default /run/molt)\n"
         "  --conf-dir=DIR             configuration directory (default /etc/molt)\n"
         "  --moltd=PATH               the moltd binary (default: next to molt-init, else PATH)\n"
         "  --molt-run=PATH            the molt-run binary (default: next to molt-init, else PATH)\n"
         "  --strict                   fail when no configuration is found\n"
         "  --non-strict               succeed when no configuration is found (default)\n"
         "  --kill-after-timeout       SIGKILL the process group when a stop times out\n"
         "  -h, --help                 this text\n\n"
         "exit status: 0 done, 1 failed or not running, 2 usage, 3 already running,\n"
         "4 permission denied, 5 reload refused or failed\n";
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  std::vector<std::string> words;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    std::string value;
    auto eq = a.find('=');
    if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    }
    auto need = [&]() -> std::string {
      if (!value.empty()) return value;
      if (i + 1 >= args.size()) {
        std::cerr << "molt-init: " << a << " needs a value\n";
        std::exit(kUsage);
      }
      return args[++i];
    };
    auto number = [&](const std::string& text) {
      try {
        size_t used = 0;
        double v = std::stod(text, &used);
        if (used == text.size() && v >= 0) return v;
      } catch (const std::exception&) {
      }
      std::cerr << "molt-init: " << a << " needs a number, got '" << text << "'\n";
      std::exit(kUsage);
    };
    if (a == "-v" || a == "--verbose") opt.verbose = true;
    else if (a == "-w" || a == "--no-wait") opt.noWait = true;
    else if (a == "--no-probation-wait") opt.noProbationWait = true;
    else if (a == "-n" || a == "--no-daemon") opt.noDaemon = true;
    else if (a == "-g" || a == "--graceful") opt.graceful = true;
    else if (a == "-c" || a == "--config-num") opt.configNum = static_cast<int>(number(need()));
    else if (a == "-k" || a == "--kill-wait") opt.killWait = number(need());
    else if (a == "-r" || a == "--run-dir") opt.runDir = need();
    else if (a == "--conf-dir") opt.confDir = need();
    else if (a == "--moltd") opt.moltd = need();
    else if (a == "--molt-run") opt.moltRun = need();
    else if (a == "--wait-timeout") opt.waitTimeout = number(need());
    else if (a == "--strict") opt.strict = true;
    else if (a == "--non-strict") opt.strict = false;
    else if (a == "--kill-after-timeout") opt.killAfterTimeout = true;
    else if (a == "-h" || a == "--help") {
      usage(std::cout);
      return kOk;
    } else if (!a.empty() && a[0] == '-') {
      std::cerr << "molt-init: unknown option '" << a << "'\n";
      usage(std::cerr);
      return kUsage;
    } else {
      words.push_back(a);
    }
  }
  if (words.empty()) {
    usage(std::cerr);
    return kUsage;
  }
  std::string command = words.back();
  words.pop_back();
  bool wantMoltd = words.empty();
  std::vector<Instance> named;
  for (const auto& server : words) {
    if (server == "moltd" || server == "all") {
      wantMoltd = true;
    } else if (server.rfind("molt-run@", 0) == 0) {
      std::string name = server.substr(9);
      if (auto problem = moltRunNameProblem(name); !problem.empty()) {
        std::cerr << "molt-init: " << problem << "\n";
        return kUsage;
      }
      named.push_back(moltRunInstance(opt, name));
    } else {
      std::cerr << "molt-init: unknown server '" << server << "' (moltd, all or molt-run@NAME)\n";
      return kUsage;
    }
  }
  static const std::vector<std::string> kCommands = {
      "start", "stop", "shutdown", "restart", "reload", "reload-seamless", "force-reload",
      "status", "no-daemon", "no-wait", "once", "read-only", "read-write"};
  if (std::find(kCommands.begin(), kCommands.end(), command) == kCommands.end()) {
    std::cerr << "molt-init: unknown command '" << command << "'\n";
    usage(std::cerr);
    return kUsage;
  }
  std::vector<Instance> instances;
  for (const auto& inst : named) {
    if (access(inst.config.c_str(), F_OK) != 0) {
      std::cerr << "molt-init: " << inst.name << ": no configuration " << inst.config << "\n";
      return kFailed;
    }
    instances.push_back(inst);
  }
  if (wantMoltd) {
    auto found = findInstances(opt);
    instances.insert(instances.end(), found.begin(), found.end());
  }
  if (instances.empty()) {
    std::cerr << "molt-init: no moltd configuration in " << opt.confDir
              << (opt.configNum ? " with number " + std::to_string(opt.configNum) : "") << "\n";
    return opt.strict ? kFailed : kOk;
  }
  bool foreground = command == "no-daemon" || command == "once" ||
                    (command == "start" && opt.noDaemon);
  if (foreground && instances.size() > 1) {
    std::cerr << "molt-init: " << command << " runs one instance; pick it with -c N\n";
    return kUsage;
  }
  if (command == "no-wait") opt.noWait = true;
  Commands run(opt);
  int worst = kOk;
  for (const auto& inst : instances) {
    int rc = kOk;
    if (command == "start" || command == "no-wait" || foreground) rc = run.start(inst, foreground);
    else if (command == "stop") rc = run.stop(inst, opt.graceful);
    else if (command == "shutdown") rc = run.stop(inst, true);
    else if (command == "restart") {
      rc = run.stop(inst, opt.graceful);
      if (rc == kOk || readPid(inst).state != PidState::kRunning) rc = run.start(inst, false);
    } else if (command == "reload") rc = run.reload(inst, false);
    else if (command == "reload-seamless") rc = run.reload(inst, true);
    else if (command == "force-reload") {
      if (readPid(inst).state == PidState::kRunning) {
        rc = run.reload(inst, true);
        if (rc != kOk && run.stop(inst, true) == kOk) rc = run.start(inst, false);
      } else {
        rc = run.start(inst, false);
      }
    } else if (command == "status") rc = run.status(inst);
    else if (command == "read-only") rc = run.setMode(inst, true);
    else if (command == "read-write") rc = run.setMode(inst, false);
    worst = std::max(worst, rc);
  }
  return worst;
}
