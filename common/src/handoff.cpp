#include "reload/handoff.h"

#include <fcntl.h>
#include <nettle/sha2.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "reload/fd.h"
#include "reload/process.h"
#include "reload/sys_error.h"

namespace reload {
namespace {

int64_t toInt(const std::string& text, const char* what) {
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size())
    throw std::invalid_argument(std::string("bad ") + what + " '" + text + "'");
  return value;
}

// A count or a generation: digits only, within 64 bits. A negative number
// would wrap into a huge one that no later encoding can carry.
uint64_t toUnsigned(const std::string& text, const char* what) {
  if (text.empty() || text.size() > 20 || text.find_first_not_of("0123456789") != std::string::npos)
    throw std::invalid_argument(std::string("bad ") + what + " '" + text + "'");
  errno = 0;
  unsigned long long value = std::strtoull(text.c_str(), nullptr, 10);
  if (errno == ERANGE) throw std::invalid_argument(std::string("bad ") + what + " '" + text + "'");
  return value;
}

// An int-sized field (a descriptor, a pid, a slot): a larger number is
// refused rather than truncated into one that looks valid.
int toSmallInt(const std::string& text, const char* what) {
  int64_t value = toInt(text, what);
  if (value < std::numeric_limits<int>::min() || value > std::numeric_limits<int>::max())
    throw std::invalid_argument(std::string("bad ") + what + " '" + text + "'");
  return static_cast<int>(value);
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, sep))
    if (!part.empty()) parts.push_back(part);
  return parts;
}

// "pid:generation:slot:d|r:kill-at-us", the same in both handoff versions.
std::string encodeChild(const HandoffChild& c) {
  return std::to_string(c.pid) + ":" + std::to_string(c.generation) + ":" +
         std::to_string(c.slot) + ":" + (c.draining ? "d" : "r") + ":" +
         std::to_string(c.killAtUs);
}

HandoffChild decodeChild(const std::string& entry) {
  auto fields = split(entry, ':');
  if (fields.size() != 5 || (fields[3] != "d" && fields[3] != "r"))
    throw std::invalid_argument("bad child '" + entry + "'");
  HandoffChild child;
  child.pid = toSmallInt(fields[0], "child pid");
  child.generation = toUnsigned(fields[1], "child generation");
  child.slot = toSmallInt(fields[2], "child slot");
  child.draining = fields[3] == "d";
  child.killAtUs = toInt(fields[4], "child deadline");
  return child;
}

char stateLetter(WorkerState state) {
  switch (state) {
    case WorkerState::kStarting: return 's';
    case WorkerState::kReady: return 'r';
    case WorkerState::kStandby: return 'b';
    case WorkerState::kDraining: return 'd';
  }
  return 'r';
}

// "pid:s|r|b|d:started-us:drain-started-us" (key child_state), after the
// child's own line.
std::string encodeChildState(const HandoffChild& c) {
  return std::to_string(c.pid) + ":" + stateLetter(c.state.value_or(WorkerState::kReady)) + ":" +
         std::to_string(c.startedUs) + ":" + std::to_string(c.drainStartedUs);
}

void decodeChildState(const std::string& entry, std::vector<HandoffChild>& children) {
  auto fields = split(entry, ':');
  if (fields.size() != 4 || fields[1].size() != 1) throw std::invalid_argument("bad child_state '" + entry + "'");
  pid_t pid = toSmallInt(fields[0], "child_state pid");
  auto child = std::find_if(children.begin(), children.end(),
                            [&](const HandoffChild& c) { return c.pid == pid; });
  if (child == children.end()) throw std::invalid_argument("child_state of pid " + fields[0] + " without its child");
  switch (fields[1][0]) {
    case 's': child->state = WorkerState::kStarting; break;
    case 'r': child->state = WorkerState::kReady; break;
    case 'b': child->state = WorkerState::kStandby; break;
    case 'd': child->state = WorkerState::kDraining; break;
    default: throw std::invalid_argument("bad child_state '" + entry + "'");
  }
  if ((child->state == WorkerState::kDraining) != child->draining)
    throw std::invalid_argument("child_state of pid " + fields[0] + " contradicts its child");
  child->startedUs = toInt(fields[2], "child_state start");
  child->drainStartedUs = toInt(fields[3], "child_state drain start");
}

// "a:b" of two numbers, each checked by the caller.
std::pair<int64_t, int64_t> decodePair(const std::string& value, const char* what) {
  auto fields = split(value, ':');
  if (fields.size() != 2) throw std::invalid_argument(std::string("bad ") + what + " '" + value + "'");
  return {toInt(fields[0], what), toInt(fields[1], what)};
}

// "reloads-ok:reloads-failed:worker-restarts:drain-kills".
std::string encodeCounters(const HandoffCounters& k) {
  return std::to_string(k.reloadsOk) + ":" + std::to_string(k.reloadsFailed) + ":" +
         std::to_string(k.workerRestarts) + ":" + std::to_string(k.drainKills);
}

HandoffCounters decodeCounters(const std::string& text) {
  auto fields = split(text, ':');
  if (fields.size() != 4) throw std::invalid_argument("bad counters '" + text + "'");
  HandoffCounters k;
  k.reloadsOk = toUnsigned(fields[0], "counter");
  k.reloadsFailed = toUnsigned(fields[1], "counter");
  k.workerRestarts = toUnsigned(fields[2], "counter");
  k.drainKills = toUnsigned(fields[3], "counter");
  return k;
}

}  // namespace

EnvPairs encodeHandoffEnv(const HandoffEnv& env) {
  std::string children;
  for (const auto& c : env.children) {
    if (!children.empty()) children += ';';
    children += encodeChild(c);
  }
  std::string counters = encodeCounters(env.counters);
  return {
      {"MOLT_HANDOFF", std::to_string(kHandoffVersion)},
      {"MOLT_NOTIFY_FD", std::to_string(env.notifyFd)},
      {"MOLT_STATE_FD", std::to_string(env.stateFd)},
      {"MOLT_COUNTERS_FD", std::to_string(env.countersFd)},
      {"MOLT_SYNC_PID", std::to_string(env.syncPid)},
      {"MOLT_GENERATION", std::to_string(env.lastGeneration)},
      {"MOLT_SERVING_GENERATION", std::to_string(env.servingGeneration)},
      {"MOLT_STARTED", std::to_string(env.startedEpoch)},
      {"MOLT_RELOAD_STARTED_US", std::to_string(env.reloadStartedUs)},
      {"MOLT_PENDING", env.pending},
      {"MOLT_WORKER_NICE", std::to_string(env.workerNice)},
      {"MOLT_COUNTERS", counters},
      {"MOLT_CHILDREN", children},
  };
}

std::vector<std::string> handoffEnvNames() {
  std::vector<std::string> names;
  for (const auto& [name, value] : encodeHandoffEnv(HandoffEnv{})) names.push_back(name);
  return names;
}

std::optional<HandoffEnv> decodeHandoffEnv(
    const std::function<const char*(const char*)>& getenvFn) {
  const char* version = getenvFn("MOLT_HANDOFF");
  if (version == nullptr) return std::nullopt;
  if (toInt(version, "MOLT_HANDOFF") != kHandoffVersion)
    throw std::invalid_argument(std::string("handoff version ") + version + " is not " +
                                std::to_string(kHandoffVersion));
  auto get = [&](const char* name) -> std::string {
    const char* value = getenvFn(name);
    if (value == nullptr) throw std::invalid_argument(std::string(name) + " is missing");
    return value;
  };
  HandoffEnv env;
  env.notifyFd = toSmallInt(get("MOLT_NOTIFY_FD"), "MOLT_NOTIFY_FD");
  env.stateFd = toSmallInt(get("MOLT_STATE_FD"), "MOLT_STATE_FD");
  env.countersFd = toSmallInt(get("MOLT_COUNTERS_FD"), "MOLT_COUNTERS_FD");
  env.syncPid = toSmallInt(get("MOLT_SYNC_PID"), "MOLT_SYNC_PID");
  env.lastGeneration = toUnsigned(get("MOLT_GENERATION"), "MOLT_GENERATION");
  env.servingGeneration = toUnsigned(get("MOLT_SERVING_GENERATION"), "MOLT_SERVING_GENERATION");
  env.startedEpoch = toInt(get("MOLT_STARTED"), "MOLT_STARTED");
  env.reloadStartedUs = toInt(get("MOLT_RELOAD_STARTED_US"), "MOLT_RELOAD_STARTED_US");
  env.pending = get("MOLT_PENDING");
  if (!env.pending.empty() && env.pending != "hup" && env.pending != "usr1")
    throw std::invalid_argument("bad MOLT_PENDING '" + env.pending + "'");
  env.workerNice = toSmallInt(get("MOLT_WORKER_NICE"), "MOLT_WORKER_NICE");
  env.counters = decodeCounters(get("MOLT_COUNTERS"));
  for (const auto& entry : split(get("MOLT_CHILDREN"), ';')) {
    env.children.push_back(decodeChild(entry));
    if (env.children.size() > kMaxHandoffChildren)
      throw std::invalid_argument("MOLT_CHILDREN lists too many children");
  }
  validateHandoff(env);
  return env;
}

void validateHandoff(const HandoffEnv& env) {
  auto fd = [](int value, const char* what, bool optional) {
    if (optional && value == -1) return;
    if (value < 3 || value > 1 << 20)
      throw std::invalid_argument(std::string(what) + " " + std::to_string(value) + " is not a passed descriptor");
  };
  fd(env.notifyFd, "notify fd", env.rollback);
  fd(env.stateFd, "state fd", env.rollback);
  fd(env.countersFd, "counters fd", true);
  fd(env.binaryFd, "binary fd", true);
  fd(env.workerNotifyFd, "worker notify fd", true);
  std::vector<int> fds;
  for (int f : {env.notifyFd, env.stateFd, env.countersFd, env.binaryFd, env.workerNotifyFd})
    if (f != -1) fds.push_back(f);
  if (env.readyPipes.size() > kMaxHandoffChildren) throw std::invalid_argument("too many ready pipes");
  for (const auto& [pid, pipe] : env.readyPipes) {
    fd(pipe, "ready pipe fd", false);
    fds.push_back(pipe);
    if (std::none_of(env.children.begin(), env.children.end(),
                     [pid = pid](const HandoffChild& c) { return c.pid == pid; }))
      throw std::invalid_argument("ready pipe of pid " + std::to_string(pid) + ", not a child");
  }
  for (const auto& [generation, sig] : env.drainSignals)
    if (generation > env.lastGeneration || sig < 1 || sig > 64)
      throw std::invalid_argument("drain signal out of range");
  for (const auto& [announced, worker] : env.mainPids)
    if (announced <= 1 || worker <= 1) throw std::invalid_argument("main pid out of range");
  for (const auto& [slot, count] : env.quickFailures)
    if (slot < 0 || slot >= static_cast<int>(kMaxHandoffChildren) || count < 0 || count > 1000)
      throw std::invalid_argument("quick failures out of range");
  if (env.drainSignals.size() > kMaxHandoffChildren || env.mainPids.size() > kMaxHandoffChildren ||
      env.quickFailures.size() > kMaxHandoffChildren)
    throw std::invalid_argument("too many drain signals, main pids or quick failures");
  std::sort(fds.begin(), fds.end());
  if (std::adjacent_find(fds.begin(), fds.end()) != fds.end())
    throw std::invalid_argument("handoff descriptors are not distinct");
  if (!env.rollback && (env.notifyFd == -1 || env.stateFd == -1))
    throw std::invalid_argument("a handoff without its notify and state fds");
  if (env.syncPid <= 1 && !(env.rollback && env.syncPid == 0))
    throw std::invalid_argument("sync pid " + std::to_string(env.syncPid) + " is not a child");
  constexpr uint64_t kMaxGeneration = 1ULL << 53;
  if (env.lastGeneration > kMaxGeneration || env.servingGeneration > env.lastGeneration)
    throw std::invalid_argument("generations out of range");
  if (env.workerNice < -20 || env.workerNice > 19) throw std::invalid_argument("worker nice out of range");
  if (env.children.size() > kMaxHandoffChildren) throw std::invalid_argument("too many children");
  for (const auto& c : env.children) {
    if (c.pid <= 1)
      throw std::invalid_argument("child pid " + std::to_string(c.pid) + " is not a child");
    if (c.slot < 0 || c.slot > 4096 || c.generation > env.lastGeneration || c.killAtUs < 0 ||
        c.startedUs < 0 || c.drainStartedUs < 0)
      throw std::invalid_argument("child " + std::to_string(c.pid) + " has fields out of range");
  }
}

std::string hexOf(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::string sha256Hex(const std::string& bytes) {
  sha256_ctx context;
  sha256_init(&context);
  sha256_update(&context, bytes.size(), reinterpret_cast<const uint8_t*>(bytes.data()));
  uint8_t digest[SHA256_DIGEST_SIZE];
  sha256_digest(&context, sizeof digest, digest);
  return hexOf(std::string(reinterpret_cast<const char*>(digest), sizeof digest));
}

std::string bytesOfHex(const std::string& hex) {
  if (hex.size() % 2) throw std::invalid_argument("odd hex length");
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    auto nibble = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      throw std::invalid_argument("bad hex digit");
    };
    out += static_cast<char>(nibble(hex[i]) * 16 + nibble(hex[i + 1]));
  }
  return out;
}

std::string encodeHandoffText(const HandoffEnv& env) {
  std::string out = "MOLT-HANDOFF " + std::to_string(kHandoffMemfdVersion) + "\n";
  auto put = [&](const char* key, const std::string& value) { out += std::string(key) + "=" + value + "\n"; };
  put("notify_fd", std::to_string(env.notifyFd));
  put("state_fd", std::to_string(env.stateFd));
  put("counters_fd", std::to_string(env.countersFd));
  put("sync_pid", std::to_string(env.syncPid));
  put("generation", std::to_string(env.lastGeneration));
  put("serving_generation", std::to_string(env.servingGeneration));
  put("started", std::to_string(env.startedEpoch));
  put("reload_started_us", std::to_string(env.reloadStartedUs));
  put("pending", env.pending);
  put("worker_nice", std::to_string(env.workerNice));
  put("counters", encodeCounters(env.counters));
  for (const auto& c : env.children) {
    put("child", encodeChild(c));
    if (c.state) put("child_state", encodeChildState(c));
  }
  if (env.adopt) put("adopt", "1");
  for (const auto& [pid, fd] : env.readyPipes)
    put("ready_pipe", std::to_string(pid) + ":" + std::to_string(fd));
  for (const auto& [generation, sig] : env.drainSignals)
    put("drain_signal", std::to_string(generation) + ":" + std::to_string(sig));
  for (const auto& [announced, worker] : env.mainPids)
    put("main_pid", std::to_string(announced) + ":" + std::to_string(worker));
  for (const auto& [slot, count] : env.quickFailures)
    put("quick_failures", std::to_string(slot) + ":" + std::to_string(count));
  if (!env.previousConfig.empty()) put("previous_config", hexOf(env.previousConfig));
  if (env.binaryFd != -1) put("binary_fd", std::to_string(env.binaryFd));
  if (env.workerNotifyFd != -1) put("worker_notify_fd", std::to_string(env.workerNotifyFd));
  if (env.probation) put("probation", "1");
  if (!env.config.empty()) put("config", hexOf(env.config));
  if (env.rollback) put("rollback", "1");
  if (env.rescue) put("rescue", "1");
  if (env.counters.rollbacks) put("rollbacks", std::to_string(env.counters.rollbacks));
  if (env.lastReload) {
    const auto& r = *env.lastReload;
    // Each text as "x" and its hex, so that an empty one is still a field.
    put("last_reload", "x" + hexOf(r.kind) + ":x" + hexOf(r.result) + ":x" + hexOf(r.reason) + ":" +
                           std::to_string(static_cast<int64_t>(r.durationMs * 1000)) + ":" +
                           std::to_string(r.finishedEpoch) + ":" + std::to_string(r.generation));
  }
  return out;
}

HandoffEnv decodeHandoffText(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != "MOLT-HANDOFF " + std::to_string(kHandoffMemfdVersion))
    throw std::invalid_argument("handoff does not start with MOLT-HANDOFF " +
                                std::to_string(kHandoffMemfdVersion));
  HandoffEnv env;
  env.countersFd = -1;
  env.notifyFd = -1;
  env.stateFd = -1;
  bool notify = false, state = false, sync = false, generation = false, serving = false;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto eq = line.find('=');
    if (eq == std::string::npos) throw std::invalid_argument("bad handoff line");
    std::string key = line.substr(0, eq);
    std::string value = line.substr(eq + 1);
    if (key == "notify_fd") env.notifyFd = toSmallInt(value, "notify_fd"), notify = true;
    else if (key == "state_fd") env.stateFd = toSmallInt(value, "state_fd"), state = true;
    else if (key == "counters_fd") env.countersFd = toSmallInt(value, "counters_fd");
    else if (key == "sync_pid") env.syncPid = toSmallInt(value, "sync_pid"), sync = true;
    else if (key == "generation") {
      env.lastGeneration = toUnsigned(value, "generation");
      generation = true;
    } else if (key == "serving_generation") {
      env.servingGeneration = toUnsigned(value, "serving_generation");
      serving = true;
    } else if (key == "started") env.startedEpoch = toInt(value, "started");
    else if (key == "reload_started_us") env.reloadStartedUs = toInt(value, "reload_started_us");
    else if (key == "pending") {
      if (!value.empty() && value != "hup" && value != "usr1")
        throw std::invalid_argument("bad pending '" + value + "'");
      env.pending = value;
    } else if (key == "worker_nice") env.workerNice = toSmallInt(value, "worker_nice");
    else if (key == "counters") {
      env.counters = decodeCounters(value);
    } else if (key == "child") {
      if (env.children.size() >= kMaxHandoffChildren) throw std::invalid_argument("too many children");
      env.children.push_back(decodeChild(value));
    } else if (key == "child_state") {
      decodeChildState(value, env.children);
    } else if (key == "adopt") {
      env.adopt = value == "1";
    } else if (key == "ready_pipe" || key == "drain_signal" || key == "main_pid" || key == "quick_failures") {
      auto [a, b] = decodePair(value, key.c_str());
      if (a < 0 || b < 0 || a > std::numeric_limits<int>::max() || b > std::numeric_limits<int>::max() ||
          env.readyPipes.size() + env.drainSignals.size() + env.mainPids.size() + env.quickFailures.size() >=
              4 * kMaxHandoffChildren)
        throw std::invalid_argument("bad " + key + " '" + value + "'");
      if (key == "ready_pipe") env.readyPipes.emplace_back(static_cast<pid_t>(a), static_cast<int>(b));
      else if (key == "drain_signal") env.drainSignals.emplace_back(static_cast<uint64_t>(a), static_cast<int>(b));
      else if (key == "main_pid") env.mainPids.emplace_back(static_cast<pid_t>(a), static_cast<pid_t>(b));
      else env.quickFailures.emplace_back(static_cast<int>(a), static_cast<int>(b));
    } else if (key == "previous_config") {
      try {
        env.previousConfig = bytesOfHex(value);
      } catch (const std::invalid_argument&) {
        throw std::invalid_argument("bad previous_config");
      }
    } else if (key == "binary_fd") {
      env.binaryFd = toSmallInt(value, "binary_fd");
    } else if (key == "worker_notify_fd") {
      env.workerNotifyFd = toSmallInt(value, "worker_notify_fd");
    } else if (key == "probation") {
      env.probation = value == "1";
    } else if (key == "config") {
      try {
        env.config = bytesOfHex(value);
      } catch (const std::invalid_argument&) {
        throw std::invalid_argument("bad config");
      }
    } else if (key == "rollback") {
      env.rollback = value == "1";
    } else if (key == "rescue") {
      env.rescue = value == "1";
    } else if (key == "rollbacks") {
      env.counters.rollbacks = toUnsigned(value, "rollbacks");
    } else if (key == "last_reload") {
      auto f = split(value, ':');
      if (f.size() != 6) throw std::invalid_argument("bad last_reload");
      HandoffReload r;
      auto textOf = [](const std::string& field) {
        if (field.empty() || field[0] != 'x') throw std::invalid_argument("bad last_reload");
        return bytesOfHex(field.substr(1));
      };
      r.kind = textOf(f[0]);
      r.result = textOf(f[1]);
      r.reason = textOf(f[2]);
      r.durationMs = static_cast<double>(toInt(f[3], "last_reload")) / 1000.0;
      r.finishedEpoch = toInt(f[4], "last_reload");
      r.generation = toUnsigned(f[5], "last_reload");
      if (r.kind.size() > 64 || r.result.size() > 64 || r.reason.size() > 4096)
        throw std::invalid_argument("last_reload too long");
      env.lastReload = r;
    }
    // Any other key comes from a newer image and is optional by contract.
  }
  // A rollback's image may have no synchronizer, or only its notify pipe.
  if (env.rollback && !sync) env.syncPid = 0;
  if ((!env.rollback && (!notify || !state || !sync)) || !generation || !serving)
    throw std::invalid_argument("handoff lacks a required field");
  validateHandoff(env);
  return env;
}

int writeHandoffMemfd(const std::string& text) {
  Fd fd(memfd_create((serviceName() + "-handoff").c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) throwSysError("memfd_create for the handoff");
  if (!writeAll(fd.get(), text)) throwSysError("write the handoff memfd");
  if (fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
    throwSysError("seal the handoff memfd");
  return fd.release();
}

std::string readHandoffMemfd(int raw) {
  if (raw < 3) throw std::invalid_argument("handoff fd " + std::to_string(raw) + " is not a passed descriptor");
  char link[PATH_MAX] = {};
  std::string proc = "/proc/self/fd/" + std::to_string(raw);
  ssize_t n = readlink(proc.c_str(), link, sizeof link - 1);
  if (n < 0) throw std::invalid_argument("handoff fd " + std::to_string(raw) + " is not open");
  Fd fd(raw);
  if (std::string(link, static_cast<size_t>(n)).rfind("/memfd:" + serviceName() + "-handoff", 0) != 0)
    throw std::invalid_argument("handoff fd " + std::to_string(raw) + " is not a handoff memfd");
  int seals = fcntl(fd.get(), F_GET_SEALS);
  constexpr int kWanted = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
  if (seals < 0 || (seals & kWanted) != kWanted)
    throw std::invalid_argument("handoff memfd is not sealed");
  struct stat st {};
  if (fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
      static_cast<uint64_t>(st.st_size) > kMaxHandoffBytes)
    throw std::invalid_argument("handoff memfd has a bad size");
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    ssize_t got = pread(fd.get(), &text[done], text.size() - done, static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) throw std::invalid_argument("cannot read the handoff memfd");
    done += static_cast<size_t>(got);
  }
  return text;
}

std::optional<HandoffEnv> readHandoff(const std::function<const char*(const char*)>& getenvFn) {
  const char* version = getenvFn("MOLT_HANDOFF");
  if (version == nullptr) return std::nullopt;
  if (std::string(version) == std::to_string(kHandoffVersion)) return decodeHandoffEnv(getenvFn);
  if (std::string(version) != std::to_string(kHandoffMemfdVersion))
    throw std::invalid_argument(std::string("handoff version '") + version + "' is not known");
  const char* fdText = getenvFn("MOLT_HANDOFF_FD");
  if (fdText == nullptr) throw std::invalid_argument("MOLT_HANDOFF_FD is missing");
  return decodeHandoffText(readHandoffMemfd(toSmallInt(fdText, "MOLT_HANDOFF_FD")));
}

std::string encodeSyncReport(const SyncReport& report) {
  std::string body = "sync_pid=" + std::to_string(report.syncPid) + "\n" +
                     "drain_signalled_us=" + std::to_string(report.drainSignalledUs) + "\n";
  for (pid_t pid : report.signalled) body += "signalled=" + std::to_string(pid) + "\n";
  for (pid_t pid : report.alreadyGone) body += "gone=" + std::to_string(pid) + "\n";
  std::string out = "MOLT1";
  auto len = static_cast<uint32_t>(body.size());
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((len >> shift) & 0xff));
  return out + body;
}

std::optional<SyncReport> decodeSyncReport(const std::string& bytes) {
  constexpr size_t kHeader = 9;
  if (bytes.size() >= 4 && bytes.compare(0, 4, "MOLT") != 0)
    throw std::invalid_argument("state message does not start with MOLT");
  if (bytes.size() >= 5 && bytes[4] != '1')
    throw std::invalid_argument(std::string("state message version '") + bytes[4] +
                                "' is not 1");
  if (bytes.size() < kHeader) return std::nullopt;
  uint32_t len = 0;
  for (size_t i = 5; i < kHeader; ++i)
    len = (len << 8) | static_cast<unsigned char>(bytes[i]);
  if (len > (1u << 20)) throw std::invalid_argument("state message too long");
  if (bytes.size() < kHeader + len) return std::nullopt;
  SyncReport report;
  std::istringstream body(bytes.substr(kHeader, len));
  std::string line;
  while (std::getline(body, line)) {
    auto eq = line.find('=');
    if (eq == std::string::npos) throw std::invalid_argument("bad state line '" + line + "'");
    std::string key = line.substr(0, eq);
    int64_t value = toInt(line.substr(eq + 1), key.c_str());
    if (key == "sync_pid") report.syncPid = static_cast<pid_t>(value);
    else if (key == "drain_signalled_us") report.drainSignalledUs = value;
    else if (key == "signalled") report.signalled.push_back(static_cast<pid_t>(value));
    else if (key == "gone") report.alreadyGone.push_back(static_cast<pid_t>(value));
    // Unknown keys come from a newer synchronizer; they are ignored on purpose.
  }
  return report;
}

std::string encodeNotify(const NotifyMessage& msg) {
  if (msg.kind == NotifyMessage::Kind::kReady)
    return "READY " + std::to_string(msg.pid) + " " + std::to_string(msg.generation) +
           (msg.probation ? " probation" : "") + "\n";
  if (msg.kind == NotifyMessage::Kind::kPass) return "PASS " + std::to_string(msg.generation) + "\n";
  std::string reason = msg.reason;
  for (char& c : reason)
    if (c == '\n') c = ' ';
  return (msg.kind == NotifyMessage::Kind::kStop ? "STOP " : "FAIL ") + reason + "\n";
}

std::optional<NotifyMessage> decodeNotify(const std::string& bytes) {
  auto nl = bytes.find('\n');
  if (nl == std::string::npos) return std::nullopt;
  std::string line = bytes.substr(0, nl);
  NotifyMessage msg;
  if (line.rfind("READY ", 0) == 0) {
    std::istringstream in(line.substr(6));
    long long pid = 0;
    unsigned long long gen = 0;
    if (in >> pid >> gen) {
      msg.kind = NotifyMessage::Kind::kReady;
      msg.pid = static_cast<pid_t>(pid);
      msg.generation = gen;
      std::string word;
      msg.probation = static_cast<bool>(in >> word) && word == "probation";
      return msg;
    }
  } else if (line.rfind("PASS ", 0) == 0) {
    std::istringstream in(line.substr(5));
    unsigned long long gen = 0;
    if (in >> gen) {
      msg.kind = NotifyMessage::Kind::kPass;
      msg.generation = gen;
      return msg;
    }
  } else if (line.rfind("FAIL ", 0) == 0) {
    msg.reason = line.substr(5);
    return msg;
  } else if (line.rfind("STOP ", 0) == 0) {
    msg.kind = NotifyMessage::Kind::kStop;
    msg.reason = line.substr(5);
    return msg;
  }
  msg.reason = "malformed notify line '" + line + "'";
  return msg;
}

}  // namespace reload
