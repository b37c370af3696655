#include "reload/systemd.h"

#include <fcntl.h>
#include <stddef.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "reload/fd.h"

namespace reload::systemd {

int notify(const std::string& state) {
  const char* path = getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return 0;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  size_t len = std::strlen(path);
  if ((path[0] != '/' && path[0] != '@') || len >= sizeof addr.sun_path) return -EINVAL;
  std::memcpy(addr.sun_path, path, len);
  if (path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  Fd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return -errno;
  auto addrLen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  if (sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL,
             reinterpret_cast<const sockaddr*>(&addr), addrLen) < 0)
    return -errno;
  return 1;
}

namespace {

bool isNumber(const char* text, size_t maxDigits) {
  size_t n = std::strlen(text);
  return n > 0 && n <= maxDigits && std::strspn(text, "0123456789") == n;
}

}  // namespace

uint64_t watchdogUsec(const char* usec, const char* pid, pid_t self) {
  if (usec == nullptr || !isNumber(usec, 19)) return 0;
  if (pid != nullptr && pid[0] != '\0' &&
      (!isNumber(pid, 10) || std::strtoll(pid, nullptr, 10) != self))
    return 0;  // meant for another process
  return std::strtoull(usec, nullptr, 10);
}

uint64_t watchdogUsec() {
  return watchdogUsec(getenv("WATCHDOG_USEC"), getenv("WATCHDOG_PID"), getpid());
}

namespace {

// Why `fd` cannot be adopted as a listener, or "" if it can.
std::string notAListener(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return std::string("not open (") + std::strerror(errno) + ")";
  if (!S_ISSOCK(st.st_mode)) return "not a socket";
  int value = 0;
  socklen_t len = sizeof value;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &len) != 0 ||
      (value != SOCK_STREAM && value != SOCK_DGRAM))
    return "neither a stream nor a datagram socket";
  if (value == SOCK_DGRAM) {
    sockaddr_storage addr{};
    socklen_t addrLen = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &addrLen) != 0 ||
        (addr.ss_family != AF_INET && addr.ss_family != AF_INET6))
      return "a datagram socket that is not IPv4 or IPv6";
    in_port_t port = addr.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in&>(addr).sin_port
                                               : reinterpret_cast<const sockaddr_in6&>(addr).sin6_port;
    if (port == 0) return "a datagram socket that is not bound";
    return "";
  }
  len = sizeof value;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &value, &len) != 0 ||
      (value != AF_INET && value != AF_INET6 && value != AF_UNIX))
    return "a socket of an unsupported family";
  len = sizeof value;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &len) != 0 || !value)
    return "not listening";
  return "";
}

}  // namespace

InheritedFds takeListenFds() {
  InheritedFds result;
  std::string pidText = getenv("LISTEN_PID") ? getenv("LISTEN_PID") : "";
  std::string fdsText = getenv("LISTEN_FDS") ? getenv("LISTEN_FDS") : "";
  std::string names = getenv("LISTEN_FDNAMES") ? getenv("LISTEN_FDNAMES") : "";
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  if (pidText.empty() || fdsText.empty()) return result;
  if (!isNumber(pidText.c_str(), 10) || std::strtoll(pidText.c_str(), nullptr, 10) != getpid())
    return result;  // meant for another process
  if (!isNumber(fdsText.c_str(), 4) || std::atoi(fdsText.c_str()) > kMaxListenFds)
    throw std::runtime_error("LISTEN_FDS='" + fdsText + "' is not a count of at most " +
                             std::to_string(kMaxListenFds) + " descriptors");
  int count = std::atoi(fdsText.c_str());
  for (int fd = kListenFdsStart; fd < kListenFdsStart + count; ++fd) {
    std::string why = notAListener(fd);
    if (!why.empty())
      throw std::runtime_error("LISTEN_FDS=" + std::to_string(count) + " but fd " +
                               std::to_string(fd) + " is " + why +
                               "; only listening stream sockets (IPv4, IPv6, Unix) and IPv4/IPv6 "
                               "datagram sockets are accepted");
  }
  for (int fd = kListenFdsStart; fd < kListenFdsStart + count; ++fd) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0)
      throw std::runtime_error("FD_CLOEXEC on fd " + std::to_string(fd) + ": " + std::strerror(errno));
  }
  result.count = count;
  std::istringstream split(names);
  for (std::string name; std::getline(split, name, ':');) result.names.push_back(name);
  return result;
}

}  // namespace reload::systemd
