#include "reload/handoff.h"

#include <sstream>
#include <stdexcept>

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

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, sep))
    if (!part.empty()) parts.push_back(part);
  return parts;
}

}  // namespace

EnvPairs encodeHandoffEnv(const HandoffEnv& env) {
  std::string children;
  for (const auto& c : env.children) {
    if (!children.empty()) children += ';';
    children += std::to_string(c.pid) + ":" + std::to_string(c.generation) + ":" +
                std::to_string(c.slot) + ":" + (c.draining ? "d" : "r") + ":" +
                std::to_string(c.killAtUs);
  }
  const auto& k = env.counters;
  std::string counters = std::to_string(k.reloadsOk) + ":" + std::to_string(k.reloadsFailed) +
                         ":" + std::to_string(k.workerRestarts) + ":" +
                         std::to_string(k.drainKills);
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
  env.notifyFd = static_cast<int>(toInt(get("MOLT_NOTIFY_FD"), "MOLT_NOTIFY_FD"));
  env.stateFd = static_cast<int>(toInt(get("MOLT_STATE_FD"), "MOLT_STATE_FD"));
  env.countersFd = static_cast<int>(toInt(get("MOLT_COUNTERS_FD"), "MOLT_COUNTERS_FD"));
  env.syncPid = static_cast<pid_t>(toInt(get("MOLT_SYNC_PID"), "MOLT_SYNC_PID"));
  env.lastGeneration = static_cast<uint64_t>(toInt(get("MOLT_GENERATION"), "MOLT_GENERATION"));
  env.servingGeneration = static_cast<uint64_t>(
      toInt(get("MOLT_SERVING_GENERATION"), "MOLT_SERVING_GENERATION"));
  env.startedEpoch = toInt(get("MOLT_STARTED"), "MOLT_STARTED");
  env.reloadStartedUs = toInt(get("MOLT_RELOAD_STARTED_US"), "MOLT_RELOAD_STARTED_US");
  env.pending = get("MOLT_PENDING");
  if (!env.pending.empty() && env.pending != "hup" && env.pending != "usr1")
    throw std::invalid_argument("bad MOLT_PENDING '" + env.pending + "'");
  env.workerNice = static_cast<int>(toInt(get("MOLT_WORKER_NICE"), "MOLT_WORKER_NICE"));
  auto counters = split(get("MOLT_COUNTERS"), ':');
  if (counters.size() != 4) throw std::invalid_argument("bad MOLT_COUNTERS");
  env.counters.reloadsOk = static_cast<uint64_t>(toInt(counters[0], "counter"));
  env.counters.reloadsFailed = static_cast<uint64_t>(toInt(counters[1], "counter"));
  env.counters.workerRestarts = static_cast<uint64_t>(toInt(counters[2], "counter"));
  env.counters.drainKills = static_cast<uint64_t>(toInt(counters[3], "counter"));
  for (const auto& entry : split(get("MOLT_CHILDREN"), ';')) {
    auto fields = split(entry, ':');
    if (fields.size() != 5 || (fields[3] != "d" && fields[3] != "r"))
      throw std::invalid_argument("bad MOLT_CHILDREN entry '" + entry + "'");
    HandoffChild child;
    child.pid = static_cast<pid_t>(toInt(fields[0], "child pid"));
    child.generation = static_cast<uint64_t>(toInt(fields[1], "child generation"));
    child.slot = static_cast<int>(toInt(fields[2], "child slot"));
    child.draining = fields[3] == "d";
    child.killAtUs = toInt(fields[4], "child deadline");
    env.children.push_back(child);
  }
  return env;
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
    return "READY " + std::to_string(msg.pid) + " " + std::to_string(msg.generation) + "\n";
  std::string reason = msg.reason;
  for (char& c : reason)
    if (c == '\n') c = ' ';
  return "FAIL " + reason + "\n";
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
      return msg;
    }
  } else if (line.rfind("FAIL ", 0) == 0) {
    msg.reason = line.substr(5);
    return msg;
  }
  msg.reason = "malformed notify line '" + line + "'";
  return msg;
}

}  // namespace reload
