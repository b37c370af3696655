// systemd's notify and socket-activation protocols, implemented directly:
// they are a datagram and a few environment variables, and libsystemd would
// add seven shared libraries to every process start (twice per seamless
// reload: the config check and the new image).
#pragma once

#include <string>
#include <vector>

namespace reload::systemd {

constexpr int kListenFdsStart = 3;

// Sends `state` to $NOTIFY_SOCKET. Returns 0 when there is no socket (not
// under systemd), 1 when sent, or -errno. Never unsets the variable: the
// re-exec'ed image needs it.
int notify(const std::string& state);

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
