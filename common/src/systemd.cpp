#include "reload/systemd.h"

#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
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

InheritedFds takeListenFds() {
  InheritedFds result;
  const char* pidText = getenv("LISTEN_PID");
  const char* fdsText = getenv("LISTEN_FDS");
  const char* namesText = getenv("LISTEN_FDNAMES");
  bool ours = pidText && fdsText && std::strtol(pidText, nullptr, 10) == getpid();
  int count = ours ? static_cast<int>(std::strtol(fdsText, nullptr, 10)) : 0;
  std::string names = ours && namesText ? namesText : "";
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  if (count <= 0) return result;
  for (int fd = kListenFdsStart; fd < kListenFdsStart + count; ++fd) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0)
      throw std::runtime_error("LISTEN_FDS=" + std::to_string(count) + " but fd " +
                               std::to_string(fd) + " is not open");
    fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
  result.count = count;
  std::istringstream split(names);
  for (std::string name; std::getline(split, name, ':');) result.names.push_back(name);
  return result;
}

}  // namespace reload::systemd
