#include "notify_socket.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "reload/sys_error.h"

namespace run {

std::map<std::string, std::string> parseNotifyMessage(const std::string& datagram) {
  std::map<std::string, std::string> fields;
  size_t pos = 0;
  while (pos < datagram.size()) {
    size_t end = datagram.find('\n', pos);
    if (end == std::string::npos) end = datagram.size();
    std::string line = datagram.substr(pos, end - pos);
    pos = end + 1;
    size_t eq = line.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    fields[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return fields;
}

bool sendNotify(const std::string& address, const std::string& message) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (address.size() < 2 || address.size() >= sizeof addr.sun_path) {
    errno = EINVAL;
    return false;
  }
  std::memcpy(addr.sun_path, address.data(), address.size());
  if (address[0] == '@') addr.sun_path[0] = 0;
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
  reload::Fd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  return sendto(fd.get(), message.data(), message.size(), MSG_NOSIGNAL,
                reinterpret_cast<const sockaddr*>(&addr), len) == static_cast<ssize_t>(message.size());
}

NotifySocket::NotifySocket(const std::string& tag) {
  fd_.reset(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd_) reload::throwSysError("notify socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string name = "molt-run/" + tag;
  if (name.size() + 1 > sizeof addr.sun_path) name.resize(sizeof addr.sun_path - 1);
  std::memcpy(addr.sun_path + 1, name.data(), name.size());  // sun_path[0] = 0: abstract
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0)
    reload::throwSysError("bind notify socket @" + name);
  int on = 1;
  if (setsockopt(fd_.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0)
    reload::throwSysError("SO_PASSCRED on the notify socket");
  address_ = "@" + name;
}

std::optional<NotifySocket::Message> NotifySocket::receive() {
  std::vector<char> buffer(4096);
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * 16)];
  iovec iov{buffer.data(), buffer.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = reload::retryEintr([&] { return recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC); });
  if (n < 0) {
    if (errno == EAGAIN) return std::nullopt;
    reload::throwSysError("recvmsg on the notify socket");
  }
  Message out;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    if (c->cmsg_type == SCM_CREDENTIALS) {
      ucred cred{};
      std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
      out.sender = cred.pid;
    } else if (c->cmsg_type == SCM_RIGHTS) {
      // FDSTORE=1 is not supported: descriptors sent along are closed.
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        if (fd >= 0) close(fd);
      }
    }
  }
  out.fields = parseNotifyMessage(std::string(buffer.data(), static_cast<size_t>(n)));
  return out;
}

}  // namespace run
