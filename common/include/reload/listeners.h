// Listening sockets that outlive worker generations and images.
//
// Every listener is created with SOCK_CLOEXEC | SOCK_NONBLOCK and SO_REUSEPORT.
// Non-blocking matters: several processes accept on the same socket, and a
// blocking accept() in a process that lost the race would hang its drain.
#pragma once

#include <string>
#include <vector>

#include "reload/fd.h"
#include "reload/listen_address.h"

namespace reload {

struct Listener {
  ListenAddress address;
  std::string key;   // socketKey() of the bound socket
  std::string role;  // "public" (workers serve it) or "admin" (the master serves it)
  Fd fd;
  // This server bound the socket (not socket activation): a Unix socket's
  // path is its to remove. A path systemd created stays, or the socket unit
  // would be broken for the next start.
  bool ownsPath = true;
};

// The name of a listener in LISTEN_FDNAMES across the master's own exec:
// its role, with ".activated" when it came from socket activation.
std::string handoffFdName(const Listener& listener);
// The role a handoff name gives: "admin" or "public".
std::string roleOfHandoffFdName(const std::string& name);
// Whether an inherited socket named `name` came from socket activation:
// on a first start every inherited socket did; after the master's own exec
// those it named so (see handoffFdName).
bool fromSocketActivation(const std::string& name, bool afterExec);

// Binds and listens (a UDP address is bound only). Throws std::system_error naming the address and the step.
// A Unix socket path left by a dead server is removed first; one that still
// accepts connections is reported as EADDRINUSE. With `refuseShared`, a TCP
// address where something already accepts is EADDRINUSE too: SO_REUSEPORT
// would otherwise let a second server of the same user share its traffic.
Fd bindListener(const ListenAddress& address, bool refuseShared = true, int backlog = 4096);

// The key of the address a socket is bound to, or "" if it is neither a
// bound listening stream socket nor a bound IPv4/IPv6 datagram socket.
std::string listeningSocketKey(int fd);

// Whether `fd` is a socket that still listens. Cheap and non-blocking
// (getsockopt SO_ACCEPTCONN): a listening socket shut down by any of the
// processes sharing it no longer does.
bool stillListening(int fd);
// stillListening for a stream socket; for a datagram socket, whether it is
// still bound to an IPv4 or IPv6 port.
bool stillServes(int fd);

// Why listener_handoff = rebind can lose connections on this host, or ""
// when it cannot: the old sockets are shut down once the new generation
// serves, and the connections still in their accept queues are reset unless
// the kernel moves them to the new sockets of the same SO_REUSEPORT group
// (net.ipv4.tcp_migrate_req = 1, Linux 5.14 and later). `sysctlPath` is
// that setting's file.
std::string rebindQueueLoss(const std::string& sysctlPath = "/proc/sys/net/ipv4/tcp_migrate_req");

// Sets or clears FD_CLOEXEC. Throws std::system_error.
void setCloseOnExec(int fd, bool on);

}  // namespace reload
