#include "volume_check.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "reload/fd.h"
#include "reload/process.h"
#include "reload/sys_error.h"

namespace server {
namespace {

VolumeCredentials credentialsOfUser(const std::string& user) {
  errno = 0;
  passwd* pw = getpwnam(user.c_str());
  if (pw == nullptr) {
    if (errno != 0) reload::throwSysError("look up user '" + user + "'");
    throw std::runtime_error("no such user '" + user + "'");
  }
  VolumeCredentials c;
  c.uid = pw->pw_uid;
  c.gid = pw->pw_gid;
  const std::string name = pw->pw_name;
  int count = 16;
  for (int attempt = 0; attempt < 8; ++attempt) {
    c.groups.resize(static_cast<size_t>(count));
    int wanted = count;
    if (getgrouplist(name.c_str(), c.gid, c.groups.data(), &wanted) >= 0) {
      c.groups.resize(static_cast<size_t>(wanted));
      return c;
    }
    count = std::max(wanted, count * 2);  // wanted: how many there are
  }
  throw std::runtime_error("cannot list the groups of user '" + user + "'");
}

// Takes `c` wholly, or returns a reason. After it, the process holds no
// capability and no id of root's (unless `c` is root's).
std::string takeCredentials(const VolumeCredentials& c, pid_t parent) {
  if (setgroups(c.groups.size(), c.groups.data()) != 0) return std::string("setgroups: ") + std::strerror(errno);
  if (setresgid(c.gid, c.gid, c.gid) != 0) return std::string("setresgid: ") + std::strerror(errno);
  if (setresuid(c.uid, c.uid, c.uid) != 0) return std::string("setresuid: ") + std::strerror(errno);
  uid_t ruid, euid, suid;
  gid_t rgid, egid, sgid;
  if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0)
    return std::string("getresuid: ") + std::strerror(errno);
  if (ruid != c.uid || euid != c.uid || suid != c.uid || rgid != c.gid || egid != c.gid || sgid != c.gid)
    return "the ids taken are not the ones asked for";
  // setfsuid answers the file-system id held before the call.
  if (static_cast<uid_t>(setfsuid(static_cast<uid_t>(-1))) != c.uid ||
      static_cast<gid_t>(setfsgid(static_cast<gid_t>(-1))) != c.gid)
    return "the file-system ids are not the ones asked for";
  if (c.uid != 0 && (setresuid(0, 0, 0) == 0 || errno != EPERM)) return "root could be taken back";
  // Not dumpable: no process of the user can trace this one or open its
  // descriptors in /proc, which are the master's.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return std::string("PR_SET_DUMPABLE: ") + std::strerror(errno);
  // After the change of ids, which clears it: a check that outlives its
  // caller (given up at its deadline) goes with it.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return std::string("PR_SET_PDEATHSIG: ") + std::strerror(errno);
  if (getppid() != parent) return "the caller is gone";
  return "";
}

constexpr int kCannotTakeCredentials = 3;
constexpr size_t kMaxOutput = size_t{4} << 20;

std::string volumeLine(const Volume& v) {
  std::string problem = v.problem;
  for (char& c : problem)
    if (c == '\t' || c == '\n') c = ' ';
  return "volume\t" + v.path + "\t" + (v.writable ? "1" : "0") + "\t" + std::to_string(v.freeBytes) + "\t" +
         std::to_string(v.totalBytes) + "\t" + problem + "\n";
}

std::string repairedLine(std::string line) {
  for (char& c : line)
    if (c == '\t' || c == '\n') c = ' ';
  return "repaired\t" + line + "\n";
}

// The check of `paths`, with the credentials this process has.
std::string checkAsSelf(const StorageSettings& storage, const std::vector<std::string>& paths,
                        const std::string& trigger) {
  std::vector<Volume> volumes;
  for (const auto& path : paths) volumes.push_back(scanVolume(path, storage));
  std::string out;
  // Only the uploads of dead workers (a crash, a respawn) go, at start too:
  // workers of an earlier generation may still serve.
  out += "removed\t" + std::to_string(ObjectStore::removeTempFiles(volumes)) + "\n";
  for (const auto& v : volumes) {
    if (v.problem == "not a directory") continue;
    for (const auto& line : ObjectStore::removePlantedLinks(v.path)) out += repairedLine(line);
    if (size_t stale = ObjectStore::removeStaleIndexTemps(v.path))
      out += repairedLine("removed " + std::to_string(stale) + " temporary index names in " + v.path +
                          " left by a key index rebuild cut short");
  }
  if (trigger == "start") {
    for (const auto& line : ObjectStore::repairIndexes(volumes)) out += repairedLine(line);
    volumes.clear();  // a repair may have made a volume healthy
    for (const auto& path : paths) volumes.push_back(scanVolume(path, storage));
  }
  for (const auto& v : volumes) out += volumeLine(v);
  return out;
}

// `result` with its volume lines in the order of `paths` (after the others).
std::string inVolumeOrder(const std::string& result, const std::vector<std::string>& paths) {
  std::string others;
  std::vector<std::string> lines(paths.size());
  size_t at = 0;
  while (at < result.size()) {
    size_t end = result.find('\n', at);
    end = end == std::string::npos ? result.size() : end + 1;
    std::string line = result.substr(at, end - at);
    at = end;
    auto slot = paths.end();
    if (line.compare(0, 7, "volume\t") == 0) {
      std::string path = line.substr(7, line.find('\t', 7) - 7);
      slot = std::find(paths.begin(), paths.end(), path);
    }
    if (slot == paths.end()) others += line;
    else lines[static_cast<size_t>(slot - paths.begin())] += line;
  }
  for (const auto& line : lines) others += line;
  return others;
}

}  // namespace

VolumeCredentials volumeCredentials(const std::string& user, const std::string& volume) {
  if (!user.empty()) return credentialsOfUser(user);
  struct stat st {};
  if (stat(volume.c_str(), &st) != 0) reload::throwSysError("stat " + volume);
  VolumeCredentials c;
  c.uid = st.st_uid;
  c.gid = st.st_gid;
  return c;
}

std::string runWithCredentials(const VolumeCredentials& credentials, const std::function<std::string()>& body) {
  int ends[2];
  if (pipe2(ends, O_CLOEXEC) != 0) reload::throwSysError("pipe for a check as uid " + std::to_string(credentials.uid));
  reload::Fd readEnd(ends[0]), writeEnd(ends[1]);
  const pid_t parent = getpid();
  // The child keeps the caller's name (and so its place in ps and logs).
  pid_t pid = reload::spawnChild("", [&]() -> int {
    readEnd.reset();
    std::string refused = takeCredentials(credentials, parent);
    if (!refused.empty()) {
      dprintf(STDERR_FILENO, "volume check pid %d cannot run as uid %u: %s\n", static_cast<int>(getpid()),
              static_cast<unsigned>(credentials.uid), refused.c_str());
      return kCannotTakeCredentials;
    }
    return reload::writeAll(writeEnd.get(), body()) ? 0 : 1;
  });
  writeEnd.reset();
  std::string out;
  bool overflow = false;
  char buf[8192];
  for (;;) {
    ssize_t n = read(readEnd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // an error ends the result like its end: the status says the rest
    if (out.size() + static_cast<size_t>(n) > kMaxOutput) overflow = true;  // read on, so the child never blocks
    else out.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) reload::throwSysError("wait for the check as uid " + std::to_string(credentials.uid));
  const std::string who = "the volume check as uid " + std::to_string(credentials.uid);
  if (WIFEXITED(status) && WEXITSTATUS(status) == kCannotTakeCredentials)
    throw std::system_error(EPERM, std::generic_category(), who + " could not take those credentials");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::system_error(EIO, std::generic_category(), who + " " + reload::describeWaitStatus(status));
  if (overflow) throw std::system_error(EMSGSIZE, std::generic_category(), who + " said too much");
  return out;
}

std::string checkVolumes(const StorageSettings& storage, const std::string& user, const std::string& trigger) {
  const auto paths = volumePaths(storage);
  if (geteuid() != 0) return checkAsSelf(storage, paths, trigger);
  // The volumes of each set of credentials, in the order of their first.
  std::vector<std::pair<VolumeCredentials, std::vector<std::string>>> groups;
  std::string out;
  for (const auto& path : paths) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      out += volumeLine(scanVolume(path, storage));  // nothing inside to touch
      continue;
    }
    VolumeCredentials credentials;
    try {
      credentials = volumeCredentials(user, path);
    } catch (const std::exception& e) {
      Volume v;
      v.path = path;
      v.problem = std::string("cannot tell whose it is: ") + e.what();
      out += volumeLine(v);
      continue;
    }
    auto group = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == credentials; });
    if (group == groups.end()) groups.push_back({credentials, {path}});
    else group->second.push_back(path);
  }
  for (const auto& [credentials, group] : groups) {
    if (credentials.uid == 0) {
      // A volume of root's and no `user`: the workers run as root, and only
      // root (and whom root let) writes there.
      out += checkAsSelf(storage, group, trigger);
      continue;
    }
    // As root, and only through descriptors: index files a root worker of
    // an earlier setup left are given to the user, who could not open them.
    for (const auto& path : group) {
      try {
        for (const auto& line : ObjectStore::adoptRootIndex(path, credentials.uid, credentials.gid))
          out += repairedLine(line);
      } catch (const std::system_error& e) {
        out += repairedLine(std::string("cannot give the key index of ") + path + " to its user: " + e.what());
      }
    }
    try {
      const std::vector<std::string>& groupPaths = group;  // a structured binding is not captured in C++17
      out += runWithCredentials(credentials, [&] { return checkAsSelf(storage, groupPaths, trigger); });
    } catch (const std::system_error& e) {
      for (const auto& path : group) {
        Volume v;
        v.path = path;
        v.problem = std::string("cannot be checked: ") + e.what();
        out += volumeLine(v);
      }
    }
  }
  return inVolumeOrder(out, paths);
}

}  // namespace server
