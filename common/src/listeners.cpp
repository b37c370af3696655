#include "reload/listeners.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include "reload/sys_error.h"

namespace reload {
namespace {

void setIntOption(int fd, int level, int name, int value, const std::string& what) {
  if (setsockopt(fd, level, name, &value, sizeof value) != 0) throwSysError(what);
}

// A Unix socket file only blocks bind(). If nothing accepts on it any more it
// was left by a server that died, and it is safe to remove.
void removeStaleUnixSocket(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return;
  if (!S_ISSOCK(st.st_mode)) return;  // bind() will report EADDRINUSE for us
  Fd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe) throwSysError("socket(AF_UNIX) to probe " + path);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return;
  if (errno == ECONNREFUSED && unlink(path.c_str()) != 0 && errno != ENOENT)
    throwSysError("unlink stale socket " + path);
}

Fd bindUnix(const ListenAddress& address, int backlog) {
  removeStaleUnixSocket(address.path);
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) throwSysError("socket for " + address.toString());
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, address.path.c_str(), sizeof addr.sun_path - 1);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throwSysError("bind " + address.toString());
  if (listen(fd.get(), backlog) != 0) throwSysError("listen " + address.toString());
  return fd;
}

Fd bindTcp(const ListenAddress& address, const sockaddr* addr, socklen_t len, int backlog) {
  std::string what = address.toString();
  Fd fd(socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) throwSysError("socket for " + what);
  setIntOption(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR on " + what);
  setIntOption(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT on " + what);
  if (addr->sa_family == AF_INET6)
    setIntOption(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY on " + what);
  if (bind(fd.get(), addr, len) != 0) throwSysError("bind " + what);
  if (listen(fd.get(), backlog) != 0) throwSysError("listen " + what);
  return fd;
}

// A datagram socket bound for every generation. Not SO_REUSEPORT-shared
// with anyone: the one socket is what every worker reads, so that its
// receive queue outlives them (closing one socket of a SO_REUSEPORT group
// drops the datagrams queued on it). SO_REUSEPORT is still set, as on every
// listener. With `refuseShared`, an address another socket holds is
// EADDRINUSE: a probe bound without SO_REUSEPORT fails there.
Fd bindUdp(const ListenAddress& address, const sockaddr* addr, socklen_t len, bool refuseShared) {
  std::string what = address.toString();
  auto make = [&](bool reusePort) {
    Fd fd(socket(addr->sa_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) throwSysError("socket for " + what);
    if (reusePort) setIntOption(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT on " + what);
    if (addr->sa_family == AF_INET6)
      setIntOption(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY on " + what);
    return fd;
  };
  if (refuseShared) {
    Fd probe = make(false);
    if (bind(probe.get(), addr, len) != 0) {
      if (errno == EADDRINUSE)
        throw std::system_error(EADDRINUSE, std::generic_category(),
                                "bind " + what + ": another socket is bound there");
      throwSysError("bind " + what);
    }
  }
  Fd fd = make(true);
  if (bind(fd.get(), addr, len) != 0) throwSysError("bind " + what);
  return fd;
}

}  // namespace

// Whether something accepts connections at `addr` (the wildcard is probed
// through loopback).
bool somethingAccepts(sockaddr_storage addr, socklen_t len) {
  if (addr.ss_family == AF_INET) {
    auto& in = reinterpret_cast<sockaddr_in&>(addr);
    if (in.sin_addr.s_addr == htonl(INADDR_ANY)) in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  } else if (addr.ss_family == AF_INET6) {
    auto& in6 = reinterpret_cast<sockaddr_in6&>(addr);
    if (IN6_IS_ADDR_UNSPECIFIED(&in6.sin6_addr)) in6.sin6_addr = in6addr_loopback;
  }
  Fd probe(socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!probe) return false;
  if (connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), len) == 0) return true;
  if (errno != EINPROGRESS) return false;
  pollfd p{probe.get(), POLLOUT, 0};
  int err = 0;
  socklen_t errLen = sizeof err;
  return poll(&p, 1, 200) == 1 && getsockopt(probe.get(), SOL_SOCKET, SO_ERROR, &err, &errLen) == 0 &&
         err == 0;
}

Fd bindListener(const ListenAddress& address, bool refuseShared, int backlog) {
  if (address.kind == ListenAddress::Kind::kUnix) return bindUnix(address, backlog);
  sockaddr_storage addr{};
  socklen_t len = 0;
  try {
    len = resolveSockaddr(address, addr);
  } catch (const std::invalid_argument& e) {
    throw std::system_error(EINVAL, std::generic_category(), e.what());
  }
  if (address.kind == ListenAddress::Kind::kUdp)
    return bindUdp(address, reinterpret_cast<const sockaddr*>(&addr), len, refuseShared);
  if (refuseShared && address.port != 0 && somethingAccepts(addr, len))
    throw std::system_error(EADDRINUSE, std::generic_category(),
                            "bind " + address.toString() + ": another process accepts there");
  return bindTcp(address, reinterpret_cast<const sockaddr*>(&addr), len, backlog);
}

bool stillListening(int fd) {
  int accepting = 0;
  socklen_t len = sizeof accepting;
  return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == 0 && accepting != 0;
}

namespace {

// The address a datagram socket is bound to, when it is an IPv4 or IPv6
// one with a port.
bool boundDatagram(int fd, sockaddr_storage& addr, socklen_t& addrLen) {
  addrLen = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &addrLen) != 0) return false;
  if (addr.ss_family == AF_INET) return reinterpret_cast<const sockaddr_in&>(addr).sin_port != 0;
  if (addr.ss_family == AF_INET6) return reinterpret_cast<const sockaddr_in6&>(addr).sin6_port != 0;
  return false;
}

int socketType(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 ? type : -1;
}

}  // namespace

bool stillServes(int fd) {
  int type = socketType(fd);
  if (type == SOCK_STREAM) return stillListening(fd);
  sockaddr_storage addr{};
  socklen_t len = 0;
  return type == SOCK_DGRAM && boundDatagram(fd, addr, len);
}

std::string listeningSocketKey(int fd) {
  int type = socketType(fd);
  sockaddr_storage addr{};
  socklen_t addrLen = sizeof addr;
  if (type == SOCK_DGRAM)
    return boundDatagram(fd, addr, addrLen) ? socketKey(addr, addrLen, true) : "";
  if (type != SOCK_STREAM) return "";
  if (!stillListening(fd)) return "";
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &addrLen) != 0) return "";
  return socketKey(addr, addrLen);
}

void setCloseOnExec(int fd, bool on) {
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0) throwSysError("fcntl(F_GETFD) on fd " + std::to_string(fd));
  int wanted = on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
  if (wanted != flags && fcntl(fd, F_SETFD, wanted) != 0)
    throwSysError("fcntl(F_SETFD) on fd " + std::to_string(fd));
}

namespace {
constexpr const char* kActivatedSuffix = ".activated";
bool endsWithActivated(const std::string& name) {
  const std::string suffix = kActivatedSuffix;
  return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

std::string handoffFdName(const Listener& listener) {
  return listener.role + (listener.ownsPath ? "" : kActivatedSuffix);
}

std::string roleOfHandoffFdName(const std::string& name) {
  const size_t suffix = std::char_traits<char>::length(kActivatedSuffix);
  std::string role = endsWithActivated(name) ? name.substr(0, name.size() - suffix) : name;
  return role == "admin" ? "admin" : "public";
}

bool fromSocketActivation(const std::string& name, bool afterExec) {
  return !afterExec || endsWithActivated(name);
}

std::string rebindQueueLoss(const std::string& sysctlPath) {
  std::ifstream in(sysctlPath);
  std::string value;
  if (!(in >> value))
    return "listener_handoff = rebind: this kernel has no " + sysctlPath +
           " (Linux 5.14 and later), so the connections waiting in the old sockets' accept "
           "queues when they are shut down after a seamless reload are reset; use "
           "listener_handoff = inherit";
  if (value != "0") return "";
  return "listener_handoff = rebind: net.ipv4.tcp_migrate_req is 0, so the connections waiting "
         "in the old sockets' accept queues when they are shut down after a seamless reload are "
         "reset; set it to 1 (sysctl -w net.ipv4.tcp_migrate_req=1, or a file in /etc/sysctl.d) "
         "or use listener_handoff = inherit";
}

}  // namespace reload
