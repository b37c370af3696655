#include "reload/exec_handoff.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <sstream>

#include "reload/master.h"
#include "reload/sys_error.h"

namespace reload {

namespace {

const char* const kLayoutVariables[] = {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
                                        "MOLT_HANDOFF", "MOLT_HANDOFF_FD", kLogDropsVariable};

Fd copyAbove(int fd, int lowest, const char* what) {
  Fd copy(fcntl(fd, F_DUPFD_CLOEXEC, lowest));
  if (!copy) throwSysError(std::string("dup the ") + what + " for the handoff");
  return copy;
}

}  // namespace

ExecLayout::ExecLayout(HandoffEnv env, int notifyFd, int stateFd, int countersFd,
                       std::vector<int> listeners, std::vector<std::string> names)
    : env_(std::move(env)), listeners_(std::move(listeners)), names_(std::move(names)) {
  const int above = 3 + static_cast<int>(listeners_.size());
  // A rollback's image has no synchronizer to talk to: no pipes then.
  if (notifyFd >= 0) notify_ = copyAbove(notifyFd, above, "notify pipe");
  if (stateFd >= 0) state_ = copyAbove(stateFd, above, "state pipe");
  counters_ = copyAbove(countersFd, above, "counters");
  if (env_.binaryFd >= 0) binary_ = copyAbove(env_.binaryFd, above, "binary");
  if (env_.workerNotifyFd >= 0)
    workerNotify_ = copyAbove(env_.workerNotifyFd, above, "worker notify socket");
  for (auto& [pid, fd] : env_.readyPipes) {
    readyPipes_.push_back(copyAbove(fd, above, "ready pipe"));
    fd = readyPipes_.back().get();
  }
  env_.notifyFd = notify_ ? notify_.get() : -1;
  env_.stateFd = state_ ? state_.get() : -1;
  env_.countersFd = counters_.get();
  env_.binaryFd = binary_ ? binary_.get() : -1;
  env_.workerNotifyFd = workerNotify_ ? workerNotify_.get() : -1;
  Fd memfd(writeHandoffMemfd(encodeHandoffText(env_)));
  memfd_ = copyAbove(memfd.get(), above, "handoff memfd");
}

void ExecLayout::apply(pid_t pid) {
  applied_ = true;
  if (!listeners_.empty()) {
    layout_.emplace(listeners_);
    std::string names;
    for (size_t i = 0; i < names_.size(); ++i) names += (i ? ":" : "") + names_[i];
    setenv("LISTEN_FDS", std::to_string(listeners_.size()).c_str(), 1);
    setenv("LISTEN_PID", std::to_string(pid).c_str(), 1);
    setenv("LISTEN_FDNAMES", names.c_str(), 1);
  }
  setenv("MOLT_HANDOFF", std::to_string(kHandoffMemfdVersion).c_str(), 1);
  setenv("MOLT_HANDOFF_FD", std::to_string(memfd_.get()).c_str(), 1);
  setCloseOnExecExcept(passedFds());
}

Fd ExecLayout::copyClearOfListeners(int fd, const char* what) const {
  return copyAbove(fd, 3 + static_cast<int>(listeners_.size()), what);
}

std::vector<int> ExecLayout::passedFds() const {
  std::vector<int> fds;
  for (const Fd* fd : {&notify_, &state_, &counters_, &memfd_, &binary_, &workerNotify_})
    if (*fd) fds.push_back(fd->get());
  for (const Fd& fd : readyPipes_) fds.push_back(fd.get());
  for (size_t i = 0; layout_ && i < listeners_.size(); ++i) fds.push_back(3 + static_cast<int>(i));
  return fds;
}

void ExecLayout::undo() noexcept {
  if (layout_) layout_->undo();
  layout_.reset();
  if (applied_)
    for (const char* name : kLayoutVariables) unsetenv(name);
  applied_ = false;
  // The synchronizer sees EOF on the notify pipe and leaves everything alone.
  notify_.reset();
  state_.reset();
  counters_.reset();
  memfd_.reset();
  binary_.reset();
  workerNotify_.reset();
  readyPipes_.clear();
}

std::string resolveExecutable(const std::string& executable) {
  auto check = [](const std::string& path) {
    struct stat st {};
    return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
  };
  if (executable.find('/') != std::string::npos) {
    if (!check(executable)) {
      int err = errno ? errno : EACCES;
      char target[PATH_MAX];
      ssize_t n = readlink(executable.c_str(), target, sizeof target - 1);
      std::string shown = executable;
      if (n > 0) shown += " -> " + std::string(target, static_cast<size_t>(n));
      throwSysError("executable " + shown, err);
    }
    return executable;
  }
  const char* pathEnv = getenv("PATH");
  std::istringstream dirs(pathEnv ? pathEnv : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + executable;
    if (check(candidate)) return candidate;
  }
  throwSysError("executable " + executable + " in PATH", ENOENT);
}

std::string checkHandoffFds(const HandoffEnv& env) {
  auto pipeEnd = [](int fd, int mode) {
    struct stat st {};
    int flags = fcntl(fd, F_GETFL);
    return fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) && flags >= 0 && (flags & O_ACCMODE) == mode;
  };
  if (env.binaryFd != -1) {
    struct stat st {};
    if (fstat(env.binaryFd, &st) != 0 || !S_ISREG(st.st_mode))
      return "binary fd " + std::to_string(env.binaryFd) + " is not a regular file";
  }
  if (env.workerNotifyFd != -1) {
    int type = 0;
    socklen_t len = sizeof type;
    sockaddr_storage addr{};
    socklen_t addrLen = sizeof addr;
    if (getsockopt(env.workerNotifyFd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_DGRAM ||
        getsockname(env.workerNotifyFd, reinterpret_cast<sockaddr*>(&addr), &addrLen) != 0 ||
        addr.ss_family != AF_UNIX)
      return "worker notify fd " + std::to_string(env.workerNotifyFd) +
             " is not a Unix datagram socket";
  }
  for (const auto& [pid, fd] : env.readyPipes)
    if (!pipeEnd(fd, O_RDONLY))
      return "ready pipe fd " + std::to_string(fd) + " of pid " + std::to_string(pid) +
             " is not the read end of a pipe";
  if (!(env.rollback && env.notifyFd == -1) && !pipeEnd(env.notifyFd, O_WRONLY))
    return "notify fd " + std::to_string(env.notifyFd) + " is not the write end of a pipe";
  if (!(env.rollback && env.stateFd == -1) && !pipeEnd(env.stateFd, O_RDONLY))
    return "state fd " + std::to_string(env.stateFd) + " is not the read end of a pipe";
  return "";
}

InheritedHandoff takeInheritedHandoff() {
  InheritedHandoff inherited;
  // The environment is input: a handoff is used only if it decodes, every
  // number in it is in range and its descriptors are what they claim to be.
  inherited.afterExec = getenv("MOLT_HANDOFF") != nullptr;
  try {
    inherited.handoff = readHandoff([](const char* name) { return getenv(name); });
    if (inherited.handoff) inherited.untrusted = checkHandoffFds(*inherited.handoff);
  } catch (const std::exception& e) {
    inherited.untrusted = e.what();
  }
  for (const auto& name : handoffEnvNames()) unsetenv(name.c_str());
  unsetenv("MOLT_HANDOFF_FD");
  if (!inherited.untrusted.empty()) inherited.handoff.reset();
  if (const char* drops = getenv(kLogDropsVariable); drops != nullptr && inherited.handoff) {
    // A count, and a plausible one: anything else is not this project's.
    char* end = nullptr;
    errno = 0;
    unsigned long long n = std::strtoull(drops, &end, 10);
    if (errno == 0 && end != drops && *end == '\0' && drops[0] >= '0' && drops[0] <= '9' &&
        n <= (1ULL << 48))
      inherited.logDrops = n;
  }
  unsetenv(kLogDropsVariable);
  return inherited;
}

void handLogDropsOn(uint64_t records) {
  setenv(kLogDropsVariable, std::to_string(records).c_str(), 1);
}

}  // namespace reload
