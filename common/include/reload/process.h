// Small process-level helpers around fork/exec, descriptors and clocks.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace reload {

double monotonicSeconds();
int64_t monotonicMicros();

// "exited with status 3", "killed by SIGKILL (core dumped)".
std::string describeWaitStatus(int status);

// Sets the name ps, top and /proc/PID/comm show (15 characters at most).
void setProcessName(const std::string& name);
// The service's name for the names the library gives its processes, memfds
// and log lines ("moltd-master", "moltd-handoff", "moltd[pid]"). runMaster
// sets it from Service::name(); until then, the program's short name.
void setServiceName(const std::string& name);
const std::string& serviceName();

// Closes every descriptor >= 3 that is not in `keep`. For a freshly forked
// child, so that it holds only what it needs. Throws std::system_error.
void closeAllFdsExcept(std::vector<int> keep);

// Forks a child that runs `body` and ends in _exit with its result (70 if
// it throws): nothing in the child ever returns or unwinds into the
// caller's code, so a child can never become a second master. `name` is
// what ps shows for it (empty: keep the parent's until `body` sets one).
// Returns the pid; throws std::system_error if fork fails.
pid_t spawnChild(const std::string& name, const std::function<int()>& body);

// Sets FD_CLOEXEC on every open descriptor >= 3 that is not in `keep`, and
// clears it on those in `keep`. Throws std::system_error.
void setCloseOnExecExcept(const std::vector<int>& keep);

// Puts `sources[i]` at descriptor 3 + i, as LISTEN_FDS requires, without
// losing whatever was there: displaced descriptors are parked and put back by
// undo() if the exec that follows fails.
class FdLayout {
 public:
  // Throws std::system_error; on failure nothing has changed.
  explicit FdLayout(const std::vector<int>& sources);
  FdLayout(const FdLayout&) = delete;
  FdLayout& operator=(const FdLayout&) = delete;
  // Restores the descriptors as they were before the constructor.
  void undo() noexcept;

 private:
  struct Parked {
    int fd = -1;
    int flags = 0;
  };
  std::map<int, Parked> displaced_;  // target fd -> where its old file is parked
  std::vector<int> targets_;
};

// Writes all of `bytes` to `fd`, retrying EINTR. False (errno set) when a
// write fails or writes nothing.
bool writeAll(int fd, const std::string& bytes);

// Reads the PPid field of /proc/PID/status; -1 if the process is gone.
pid_t parentOf(pid_t pid);

}  // namespace reload
