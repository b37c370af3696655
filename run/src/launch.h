// How a worker's program is started: its descriptors, environment and exec,
// by systemd's socket-passing convention.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "program_config.h"

namespace run {

struct ListenerSpec {
  int fd = -1;       // in the process that starts the program
  std::string name;  // LISTEN_FDNAMES entry
};

struct LaunchPlan {
  std::string executable;                 // resolved path
  std::vector<std::string> argv;
  std::vector<std::string> environment;   // NAME=VALUE, all but LISTEN_PID
  std::vector<int> listenerFds;           // go to 3, 4, ... in this order
  std::string workingDirectory;
  std::string user;                       // empty: keep molt-run's
  int nice = 0;
};

// The program's environment: the inherited variables `lookup` has, then the
// configured ones (which replace an inherited one of the same name), then
// LISTEN_FDS, LISTEN_FDNAMES (names joined with ':'), NOTIFY_SOCKET when
// `notifySocket` is set, MOLT_RUN_GENERATION and MOLT_RUN_SLOT. LISTEN_PID is
// left out: it is the program's own pid, known only after the fork.
std::vector<std::string> programEnvironment(const ProgramConfig& config,
                                            const std::function<const char*(const char*)>& lookup,
                                            const std::vector<std::string>& listenerNames,
                                            const std::string& notifySocket, uint64_t generation,
                                            int slot);

// A LISTEN_FDNAMES entry systemd accepts: 1 to 255 printable ASCII
// characters, no ':'. Anything else becomes "unknown", the name systemd's
// sd_listen_fds_with_names() reports for an unnamed descriptor.
std::string fdName(const std::string& name);

// In the freshly forked child: puts `listenerFds[i]` at descriptor 3 + i,
// without FD_CLOEXEC and in blocking mode (as systemd passes them), points
// standard input at /dev/null and closes every other descriptor above 2.
// Throws std::system_error.
void prepareDescriptors(const std::vector<int>& listenerFds);

// Everything from the fork to the exec, in the child; never returns.
// Writes why the exec failed to standard error and exits 127 then.
[[noreturn]] void execProgram(const LaunchPlan& plan, pid_t expectedParent);

}  // namespace run
