#include "launch.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>

#include "reload/fd.h"
#include "reload/process.h"
#include "reload/sys_error.h"

namespace run {

std::vector<std::string> programEnvironment(const ProgramConfig& config,
                                            const std::function<const char*(const char*)>& lookup,
                                            const std::vector<std::string>& listenerNames,
                                            const std::string& notifySocket, uint64_t generation,
                                            int slot) {
  std::vector<std::pair<std::string, std::string>> entries;
  auto set = [&entries](const std::string& name, const std::string& value) {
    for (auto& entry : entries)
      if (entry.first == name) {
        entry.second = value;
        return;
      }
    entries.emplace_back(name, value);
  };
  for (const auto& name : config.inheritEnvironment)
    if (const char* value = lookup(name.c_str())) set(name, value);
  for (const auto& [name, value] : config.environment) set(name, value);
  std::string names;
  for (size_t i = 0; i < listenerNames.size(); ++i)
    names += (i ? ":" : "") + fdName(listenerNames[i]);
  set("LISTEN_FDS", std::to_string(listenerNames.size()));
  set("LISTEN_FDNAMES", names);
  if (!notifySocket.empty()) set("NOTIFY_SOCKET", notifySocket);
  set("MOLT_RUN_GENERATION", std::to_string(generation));
  set("MOLT_RUN_SLOT", std::to_string(slot));
  std::vector<std::string> out;
  out.reserve(entries.size());
  for (const auto& [name, value] : entries) out.push_back(name + "=" + value);
  return out;
}

std::string fdName(const std::string& name) {
  if (name.empty() || name.size() > 255) return "unknown";
  for (unsigned char c : name)
    if (c <= ' ' || c >= 127 || c == ':') return "unknown";
  return name;
}

void prepareDescriptors(const std::vector<int>& listenerFds) {
  reload::Fd devNull(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!devNull) reload::throwSysError("open /dev/null");
  if (dup2(devNull.get(), STDIN_FILENO) < 0) reload::throwSysError("dup2 /dev/null to stdin");
  // Closed now: it may sit in the target range, where a listener goes next.
  devNull.reset();
  // FdLayout moves whatever sits at 3.. out of the way first, so a source
  // that is itself in the target range is never overwritten.
  reload::FdLayout layout(listenerFds);
  std::vector<int> keep;
  for (size_t i = 0; i < listenerFds.size(); ++i) {
    int fd = 3 + static_cast<int>(i);
    keep.push_back(fd);
    if (fcntl(fd, F_SETFD, 0) != 0) reload::throwSysError("clear FD_CLOEXEC on " + std::to_string(fd));
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
      reload::throwSysError("clear O_NONBLOCK on " + std::to_string(fd));
  }
  reload::closeAllFdsExcept(keep);
}

namespace {

[[noreturn]] void failLaunch(const std::string& what, int err) {
  dprintf(STDERR_FILENO, "molt-run: cannot start the program (pid %d): %s: %s\n",
          static_cast<int>(getpid()), what.c_str(), std::strerror(err));
  _exit(127);
}

void dropPrivileges(const std::string& user) {
  if (user.empty() || geteuid() != 0) return;
  errno = 0;
  passwd* pw = getpwnam(user.c_str());
  if (pw == nullptr) failLaunch("no such user '" + user + "'", errno ? errno : ENOENT);
  if (initgroups(pw->pw_name, pw->pw_gid) != 0) failLaunch("initgroups " + user, errno);
  if (setgid(pw->pw_gid) != 0) failLaunch("setgid for " + user, errno);
  if (setuid(pw->pw_uid) != 0) failLaunch("setuid to " + user, errno);
}

}  // namespace

void execProgram(const LaunchPlan& plan, pid_t expectedParent) {
  // A process group of its own, so that whatever the program leaves behind
  // can be stopped with it.
  if (setpgid(0, 0) != 0) failLaunch("setpgid", errno);
  dropPrivileges(plan.user);
  // After setuid, which clears it; kept across the exec. The worker that
  // started the program is its supervisor: without it, the program goes.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) failLaunch("PR_SET_PDEATHSIG", errno);
  if (getppid() != expectedParent) _exit(127);
  if (setpriority(PRIO_PROCESS, 0, plan.nice) != 0) failLaunch("setpriority", errno);
  if (chdir(plan.workingDirectory.c_str()) != 0) failLaunch("chdir " + plan.workingDirectory, errno);
  try {
    prepareDescriptors(plan.listenerFds);
  } catch (const std::system_error& e) {
    failLaunch(e.what(), e.code().value());
  }
  std::vector<std::string> environment = plan.environment;
  environment.push_back("LISTEN_PID=" + std::to_string(getpid()));
  std::vector<char*> envp;
  for (auto& entry : environment) envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::vector<std::string> argvCopy = plan.argv;
  std::vector<char*> argv;
  for (auto& arg : argvCopy) argv.push_back(arg.data());
  argv.push_back(nullptr);
  // The program starts as any program does: default dispositions, nothing
  // blocked (molt-run blocks and ignores signals it reads from a signalfd).
  for (int sig = 1; sig < NSIG; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) != 0) failLaunch("sigprocmask", errno);
  execve(plan.executable.c_str(), argv.data(), envp.data());
  failLaunch("exec " + plan.executable, errno);
}

}  // namespace run
