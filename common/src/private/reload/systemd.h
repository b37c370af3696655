// systemd's notify and socket-activation protocols, implemented directly:
// they are a datagram and a few environment variables, and libsystemd would
// add seven shared libraries to every process start (twice per seamless
// reload: the config check and the new image).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace reload::systemd {

constexpr int kListenFdsStart = 3;

// Sends `state` to $NOTIFY_SOCKET. Returns 0 when there is no socket (not
// under systemd), 1 when sent, or -errno. Never unsets the variable: the
// re-exec'ed image needs it.
int notify(const std::string& state);

// The watchdog interval systemd asks of `self` (WatchdogSec=, passed as
// WATCHDOG_USEC, for the process WATCHDOG_PID names when it is set), in
// microseconds; 0 when there is none or the values are not numbers. Pure.
uint64_t watchdogUsec(const char* usec, const char* pid, pid_t self);
// The same from the environment, which it leaves as it is: a seamless
// reload's image runs under the same PID and needs it too.
uint64_t watchdogUsec();

struct InheritedFds {
  int count = 0;                   // fds kListenFdsStart .. +count-1
  std::vector<std::string> names;  // from LISTEN_FDNAMES, may be shorter
};

constexpr int kMaxListenFds = 1024;

// Reads LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES, sets FD_CLOEXEC on the fds and
// unsets the variables. Nothing is inherited unless LISTEN_PID is our pid.
// Throws std::runtime_error, touching no descriptor, unless LISTEN_FDS is a
// number up to kMaxListenFds and every fd it names is a listening stream
// socket of a supported family (IPv4, IPv6, Unix) or a bound IPv4/IPv6
// datagram socket.
InheritedFds takeListenFds();

}  // namespace reload::systemd
