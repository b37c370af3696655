#include "moltd_service.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <sstream>

#include "http_handlers.h"
#include "object_store.h"
#include "reload/fd.h"
#include "reload/log.h"
#include "reload/process.h"
#include "server_config.h"
#include "version.h"
#include "volume_check.h"
#include "worker.h"


namespace server {

std::string MoltdService::version() const { return moltVersion(); }

std::shared_ptr<const ObjectServerConfig> MoltdService::parse(
    reload::IniConfig& ini, const reload::MasterConfig& /*master*/) {
  return parseObjectServerConfig(ini);
}

int MoltdService::serve(const reload::WorkerContext& context,
                        const ObjectServerConfig& config) noexcept {
  return runObjectWorker(context, config, version());
}

namespace {

// Index of the first of `paths` that `user` cannot create files in, or -1.
// Checked as that user, in a child that drops to it, so that groups and
// ACLs count exactly as they will for the workers.
int firstUnwritableAs(const std::string& user, const std::vector<std::string>& paths) {
  if (user.empty() || geteuid() != 0) {
    for (size_t i = 0; i < paths.size(); ++i)
      if (access(paths[i].c_str(), W_OK | X_OK) != 0) return static_cast<int>(i);
    return -1;
  }
  passwd* pw = getpwnam(user.c_str());
  if (pw == nullptr) return -1;  // reported as an unknown user
  uid_t uid = pw->pw_uid;
  gid_t gid = pw->pw_gid;
  std::string name = pw->pw_name;
  pid_t pid = reload::spawnChild("", [&]() -> int {
    if (initgroups(name.c_str(), gid) != 0 || setgid(gid) != 0 || setuid(uid) != 0) return 255;
    for (size_t i = 0; i < paths.size() && i < 250; ++i)
      if (access(paths[i].c_str(), W_OK | X_OK) != 0) return static_cast<int>(i) + 1;
    return 0;
  });
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) == 255) return static_cast<int>(paths.size());
  return WEXITSTATUS(status) - 1;
}

}  // namespace

void MoltdService::checkEnvironment(const reload::LoadedConfig& config, reload::IniConfig& ini) {
  const auto& cfg = configOf(config);
  if (cfg.accessLog != "off") {
    reload::Fd fd(open(cfg.accessLog.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
    if (!fd)
      ini.fail("log", "access_log", std::string("cannot open for append: ") + std::strerror(errno));
  }
  std::vector<std::string> directories;
  for (const auto& path : cfg.storage.volumes) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0)
      ini.fail("storage", "volumes", path + ": " + std::strerror(errno));
    else if (!S_ISDIR(st.st_mode))
      ini.fail("storage", "volumes", path + " is not a directory");
    else
      directories.push_back(path);
  }
  const std::string& user = config.master.user;
  int bad = firstUnwritableAs(user, directories);
  if (bad >= static_cast<int>(directories.size()))
    ini.fail("server", "user", "cannot switch to user '" + user + "' to check the volumes");
  else if (bad >= 0)
    ini.fail("storage", "volumes",
             directories[static_cast<size_t>(bad)] + " is not writable by " +
                 (user.empty() ? "moltd's user" : "user '" + user + "'"));
}

std::string MoltdService::runCheck(const reload::LoadedConfig& config, const std::string& trigger) {
  const auto& storage = configOf(config).storage;
  // A root master works in the volumes as the workers' user (see volume_check.h).
  std::string out = checkVolumes(storage, config.master.user, trigger);
  struct stat st {};
  bool readOnly = !storage.readOnlyFile.empty() && stat(storage.readOnlyFile.c_str(), &st) == 0;
  out += std::string("read_only\t") + (readOnly ? "1" : "0") + "\n";
  return out;
}

void MoltdService::applyCheck(const reload::LoadedConfig& config, const std::string& trigger,
                              const std::string& result) {
  const auto& storage = configOf(config).storage;
  std::vector<Volume> fresh;
  bool readOnly = readOnly_;
  std::istringstream lines(result);
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> f;
    std::istringstream fields(line);
    for (std::string field; std::getline(fields, field, '\t');) f.push_back(field);
    if (f.size() == 2 && f[0] == "removed" && f[1] != "0") {
      MOLT_LOG(kInfo) << "removed " << f[1] << " temp files left by interrupted uploads";
    } else if (f.size() == 2 && f[0] == "repaired") {
      MOLT_LOG(kWarning) << f[1];
    } else if (f.size() == 2 && f[0] == "read_only") {
      readOnly = f[1] == "1";
    } else if (f.size() >= 5 && f[0] == "volume") {
      Volume v;
      v.path = f[1];
      v.writable = f[2] == "1";
      v.freeBytes = std::strtoull(f[3].c_str(), nullptr, 10);
      v.totalBytes = std::strtoull(f[4].c_str(), nullptr, 10);
      if (f.size() > 5) v.problem = f[5];
      fresh.push_back(v);
    }
  }
  if (volumesKnown_) {
    for (const auto& line : volumeChanges(volumes_, fresh))
      MOLT_LOG(kNotice) << line << " (trigger: " << trigger << ")";
  } else {
    for (const auto& v : fresh)
      MOLT_LOG(kInfo) << "volume " << v.path << ": " << (v.writable ? "writable" : v.problem);
  }
  volumes_ = std::move(fresh);
  volumesKnown_ = true;
  checkedAt_ = time(nullptr);
  ++checksDone_;
  auto name = [](bool ro) { return ro ? "read-only" : "read-write"; };
  if (!modeKnown_) {
    MOLT_LOG(kInfo) << "mode is " << name(readOnly) << " (flag file "
                    << (storage.readOnlyFile.empty() ? "unset" : storage.readOnlyFile) << ")";
  } else if (readOnly != readOnly_) {
    MOLT_LOG(kNotice) << "mode switch: " << name(readOnly_) << " -> " << name(readOnly)
                      << " (trigger: " << trigger << ", flag file " << storage.readOnlyFile << ")";
  }
  if (!modeKnown_ || readOnly != readOnly_) {
    readOnly_ = readOnly;
    modeKnown_ = true;
    modeSince_ = time(nullptr);
  }
}

void MoltdService::checkFailed(const std::string& what) {
  ++checksFailed_;
  lastCheckProblem_ = what;
}

double MoltdService::checkInterval(const reload::LoadedConfig& config) const {
  const auto& storage = configOf(config).storage;
  double a = storage.volumeScanInterval;
  double b = storage.readOnlyCheckInterval;
  if (a <= 0) return b;
  if (b <= 0) return a;
  return std::min(a, b);
}

void MoltdService::addStatus(const reload::LoadedConfig& /*config*/, reload::JsonObject& status) {
  status.add("mode", readOnly_ ? "read-only" : "read-write");
  status.add("mode_since", modeSince_);
  reload::JsonArray volumes;
  for (const auto& v : volumes_) {
    reload::JsonObject o;
    o.add("path", v.path);
    o.add("writable", v.writable);
    o.add("free_bytes", v.freeBytes);
    o.add("total_bytes", v.totalBytes);
    if (!v.problem.empty()) o.add("problem", v.problem);
    volumes.push(o);
  }
  status.raw("volumes", volumes.str());
  status.add("volumes_checked_at", checkedAt_);
  status.add("volume_checks", checksDone_);
  status.add("volume_checks_failed", checksFailed_);
  if (!lastCheckProblem_.empty()) status.add("last_volume_check_problem", lastCheckProblem_);
}

std::string MoltdService::metrics(const reload::LoadedConfig& /*config*/,
                                  const reload::SharedCounters& counters) {
  std::string out =
      "# HELP moltd_http_requests_total Requests answered, by status class; counts across reloads.\n"
      "# TYPE moltd_http_requests_total counter\n";
  for (size_t c = 0; c < 5; ++c)
    out += "moltd_http_requests_total{code=\"" + std::to_string(c + 1) + "xx\"} " +
           std::to_string(counters.load(kStatus1xx + c)) + "\n";
  out += "# HELP moltd_http_requests_by_method_total Requests answered, by method.\n"
         "# TYPE moltd_http_requests_by_method_total counter\n";
  const std::pair<const char*, size_t> methods[] = {{"GET", kMethodGet}, {"HEAD", kMethodHead},
                                                    {"PUT", kMethodPut}, {"DELETE", kMethodDelete},
                                                    {"other", kMethodOther}};
  for (const auto& [name, slot] : methods)
    out += std::string("moltd_http_requests_by_method_total{method=\"") + name + "\"} " +
           std::to_string(counters.load(slot)) + "\n";
  out += "# HELP moltd_http_received_bytes_total Object bytes received.\n"
         "# TYPE moltd_http_received_bytes_total counter\nmoltd_http_received_bytes_total " +
         std::to_string(counters.load(kBytesReceived)) + "\n" +
         "# HELP moltd_http_sent_bytes_total Body bytes sent.\n"
         "# TYPE moltd_http_sent_bytes_total counter\nmoltd_http_sent_bytes_total " +
         std::to_string(counters.load(kBytesSent)) + "\n" +
         "# HELP moltd_access_log_dropped_lines_total Access-log lines dropped because the log took nothing "
         "while its queue filled.\n"
         "# TYPE moltd_access_log_dropped_lines_total counter\nmoltd_access_log_dropped_lines_total " +
         std::to_string(counters.load(kAccessLogLinesDropped)) + "\n";
  out += "# HELP moltd_read_only 1 while the server refuses writes.\n"
                    "# TYPE moltd_read_only gauge\nmoltd_read_only " +
                    std::string(readOnly_ ? "1" : "0") + "\n" +
                    "# HELP moltd_volume_free_bytes Free bytes on each volume.\n"
                    "# TYPE moltd_volume_free_bytes gauge\n";
  for (const auto& v : volumes_)
    out += "moltd_volume_free_bytes{volume=\"" + prometheusLabelValue(v.path) + "\"} " +
           std::to_string(v.freeBytes) + "\n";
  return out;
}

}  // namespace server
