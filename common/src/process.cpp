#include "reload/process.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "reload/log.h"
#include <ctime>
#include <fstream>
#include <stdexcept>

#include "reload/sys_error.h"

namespace reload {

double monotonicSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

int64_t monotonicMicros() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

std::string describeWaitStatus(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = sigabbrev_np(WTERMSIG(status));
    std::string text = std::string("killed by SIG") + (name ? name : "?");
    if (WCOREDUMP(status)) text += " (core dumped)";
    return text;
  }
  return "changed state (" + std::to_string(status) + ")";
}

namespace {
std::string& serviceNameStorage() {
  static std::string name = program_invocation_short_name;
  return name;
}
}  // namespace

void setServiceName(const std::string& name) { serviceNameStorage() = name; }
const std::string& serviceName() { return serviceNameStorage(); }

void setProcessName(const std::string& name) {
  prctl(PR_SET_NAME, name.substr(0, 15).c_str(), 0, 0, 0);
}

void closeAllFdsExcept(std::vector<int> keep) {
  std::sort(keep.begin(), keep.end());
  unsigned int next = 3;
  for (int fd : keep) {
    if (fd < 3 || static_cast<unsigned int>(fd) < next) continue;
    if (static_cast<unsigned int>(fd) > next &&
        close_range(next, static_cast<unsigned int>(fd) - 1, 0) != 0)
      throwSysError("close_range " + std::to_string(next) + ".." + std::to_string(fd - 1));
    next = static_cast<unsigned int>(fd) + 1;
  }
  if (close_range(next, ~0U, 0) != 0) throwSysError("close_range from " + std::to_string(next));
}

namespace {

// A child's last words, never waited for longer than its log's exit drain:
// through the log when it has one; else (its sinks removed) to standard
// error only if that takes them now, in one write of at most PIPE_BUF bytes,
// so that a pipe nobody reads never holds a child that is leaving.
void reportChildFailure(const std::string& name, const char* what) noexcept try {
  std::string text = (name.empty() ? std::string("child") : name) + " pid " + std::to_string(getpid()) +
                     ": " + what;
  if (log::hasSink()) {
    MOLT_LOG(kError) << text;
    log::drain(log::kLogExitDrainMs);
    return;
  }
  text.push_back('\n');
  pollfd p{STDERR_FILENO, POLLOUT, 0};
  if (poll(&p, 1, 0) != 1 || (p.revents & POLLOUT) == 0) return;
  ssize_t n = write(STDERR_FILENO, text.data(), std::min<size_t>(text.size(), PIPE_BUF));
  (void)n;  // nothing is left to tell of a failure to tell
} catch (...) {
  // No memory for the words: the exit status says it.
}

}  // namespace

pid_t spawnChild(const std::string& name, const std::function<int()>& body) {
  pid_t pid = fork();
  if (pid < 0) throwSysError("fork" + (name.empty() ? std::string() : " " + name));
  if (pid > 0) return pid;
  int code = 70;  // EX_SOFTWARE
  try {
    log::forgetInherited();
    if (!name.empty()) setProcessName(name);
    code = body();
    // A child that leaves waits for its log (at most kLogExitDrainMs); one
    // that removed its sinks has nothing waiting.
    log::drain(log::kLogExitDrainMs);
  } catch (const std::exception& e) {
    reportChildFailure(name, e.what());
  } catch (...) {
    reportChildFailure(name, "unknown exception");
  }
  _exit(code);
}

static std::vector<int> openFds() {
  std::vector<int> fds;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) throwSysError("opendir /proc/self/fd");
  int own = dirfd(dir);
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    int fd = std::atoi(entry->d_name);
    if (fd != own) fds.push_back(fd);
  }
  closedir(dir);
  return fds;
}

void setCloseOnExecExcept(const std::vector<int>& keep) {
  for (int fd : openFds()) {
    if (fd < 3) continue;
    bool kept = std::find(keep.begin(), keep.end(), fd) != keep.end();
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) continue;  // closed meanwhile
    int wanted = kept ? (flags & ~FD_CLOEXEC) : (flags | FD_CLOEXEC);
    if (wanted != flags && fcntl(fd, F_SETFD, wanted) != 0)
      throwSysError("fcntl(F_SETFD) on fd " + std::to_string(fd));
  }
}

FdLayout::FdLayout(const std::vector<int>& sources) {
  const int firstFree = 3 + static_cast<int>(sources.size());
  std::vector<int> copies;  // sources copied above the target range
  auto cleanup = [&] {
    for (int c : copies) close(c);
    undo();
  };
  for (int src : sources) {
    int copy = fcntl(src, F_DUPFD_CLOEXEC, firstFree);
    if (copy < 0) {
      int err = errno;
      cleanup();
      throwSysError("dup listener fd " + std::to_string(src), err);
    }
    copies.push_back(copy);
  }
  for (size_t i = 0; i < sources.size(); ++i) {
    int target = 3 + static_cast<int>(i);
    int flags = fcntl(target, F_GETFD);
    if (flags >= 0) {
      int parked = fcntl(target, F_DUPFD_CLOEXEC, firstFree);
      if (parked < 0) {
        int err = errno;
        cleanup();
        throwSysError("park fd " + std::to_string(target), err);
      }
      displaced_[target] = Parked{parked, flags};
    }
    targets_.push_back(target);
    if (dup2(copies[i], target) < 0) {  // dup2 leaves the target without FD_CLOEXEC
      int err = errno;
      cleanup();
      throwSysError("dup2 to fd " + std::to_string(target), err);
    }
  }
  for (int c : copies) close(c);
}

void FdLayout::undo() noexcept {
  for (int target : targets_) {
    auto it = displaced_.find(target);
    if (it == displaced_.end()) {
      close(target);
    } else {
      dup2(it->second.fd, target);
      fcntl(target, F_SETFD, it->second.flags);
      close(it->second.fd);
    }
  }
  targets_.clear();
  displaced_.clear();
}

bool writeAll(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

pid_t parentOf(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("PPid:", 0) == 0) return static_cast<pid_t>(std::atoi(line.c_str() + 5));
  }
  return -1;
}

}  // namespace reload
