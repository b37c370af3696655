// A small blocking HTTP/1.1 client for the benchmarks: one connection,
// Content-Length responses, failures classified by kind.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <algorithm>
#include <cstdint>
#include <string>

namespace bench {

enum FailKind { kRefused, kReset, kTimeout, kShortRead, kNon2xx, kOther, kFailKinds };
const char* kFailNames[] = {"refused", "reset", "timeout", "short_read", "non_2xx", "other"};

struct Target {
  bool unix = false;
  sockaddr_storage addr{};
  socklen_t len = 0;
  std::string hostHeader = "localhost";
};

// A loopback TCP port that was free a moment ago.
inline int freePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

inline Target parseTarget(const std::string& text) {
  Target t;
  if (text.rfind("unix:", 0) == 0) {
    t.unix = true;
    auto* un = reinterpret_cast<sockaddr_un*>(&t.addr);
    un->sun_family = AF_UNIX;
    std::strncpy(un->sun_path, text.c_str() + 5, sizeof un->sun_path - 1);
    t.len = sizeof(sockaddr_un);
    return t;
  }
  auto colon = text.rfind(':');
  auto* in = reinterpret_cast<sockaddr_in*>(&t.addr);
  in->sin_family = AF_INET;
  in->sin_port = htons(static_cast<uint16_t>(std::stoi(text.substr(colon + 1))));
  inet_pton(AF_INET, text.substr(0, colon).c_str(), &in->sin_addr);
  t.len = sizeof(sockaddr_in);
  t.hostHeader = text;
  return t;
}

inline FailKind kindOf(int err) {
  switch (err) {
    case ECONNREFUSED: return kRefused;
    case ECONNRESET:
    case EPIPE: return kReset;
    case EAGAIN:
    case ETIMEDOUT: return kTimeout;
    default: return kOther;
  }
}

class Connection {
 public:
  explicit Connection(const Target& t, double timeout) : target_(t), timeout_(timeout) {}
  ~Connection() { closeFd(); }
  bool open() const { return fd_ >= 0; }
  void closeFd() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    buffer_.clear();
  }
  // Returns -1 on success or a FailKind.
  int connectIfNeeded(std::string* note = nullptr) {
    if (fd_ >= 0) return -1;
    fd_ = socket(target_.unix ? AF_UNIX : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{static_cast<time_t>(timeout_), 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (!target_.unix) {
      int one = 1;
      setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    int rc = connect(fd_, reinterpret_cast<const sockaddr*>(&target_.addr), target_.len);
    if (rc != 0 && errno == EINTR) {
      // An interrupted connect goes on in the background: wait for its result.
      pollfd p{fd_, POLLOUT, 0};
      int err = 0;
      socklen_t len = sizeof err;
      if (poll(&p, 1, static_cast<int>(timeout_ * 1000)) == 1 &&
          getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
        rc = 0;
      else
        errno = err ? err : ETIMEDOUT;
    }
    if (rc != 0) {
      int err = errno;
      closeFd();
      if (note) *note = std::string("connect: ") + std::strerror(err);
      return kindOf(err);
    }
    return -1;
  }
  struct Response {
    int status = 0;
    bool close = false;
    uint64_t generation = 0;
    bool keepBody = true;  // false: count the body's bytes and drop them
    uint64_t bodyBytes = 0;
    std::string body;
  };
  // Returns -1 on success or a FailKind; `note` says what happened.
  int exchange(const std::string& request, Response& resp, std::string& note) {
    size_t sent = 0;
    while (sent < request.size()) {
      ssize_t n = send(fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        note = std::string("send: ") + std::strerror(errno);
        return kindOf(errno);
      }
      sent += static_cast<size_t>(n);
    }
    size_t headerEnd;
    while ((headerEnd = buffer_.find("\r\n\r\n")) == std::string::npos) {
      int r = fill(note);
      if (r >= 0) return r;
    }
    std::string head = buffer_.substr(0, headerEnd);
    buffer_.erase(0, headerEnd + 4);
    if (std::sscanf(head.c_str(), "HTTP/1.%*d %d", &resp.status) != 1) {
      note = "bad status line";
      return kOther;
    }
    size_t length = 0;
    std::istringstream lines(head);
    std::string line;
    while (std::getline(lines, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (name == "content-length") length = std::stoul(value);
      else if (name == "connection") resp.close = strcasecmp(value.c_str(), "close") == 0;
      else if (name == "x-molt-generation") resp.generation = std::stoull(value);
    }
    if (resp.status == 100) return exchange("", resp, note);
    if (!resp.keepBody) {
      size_t have = std::min(buffer_.size(), length);
      buffer_.erase(0, have);
      resp.bodyBytes = have;
      static thread_local char sink[1 << 20];
      while (resp.bodyBytes < length) {
        ssize_t n = recv(fd_, sink, std::min(sizeof sink, length - resp.bodyBytes), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          note = n == 0 ? "connection closed inside the body" : std::string("recv: ") + std::strerror(errno);
          return n == 0 ? kShortRead : kindOf(errno);
        }
        resp.bodyBytes += static_cast<uint64_t>(n);
      }
      return -1;
    }
    while (buffer_.size() < length) {
      int r = fill(note);
      if (r >= 0) return r;
    }
    resp.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return -1;
  }

 private:
  int fill(std::string& note) {
    char chunk[65536];
    ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<size_t>(n));
      return -1;
    }
    if (n == 0) {
      note = "connection closed before the response was complete";
      return kShortRead;
    }
    if (errno == EINTR) return -1;
    note = std::string("recv: ") + std::strerror(errno);
    return kindOf(errno);
  }

  Target target_;
  double timeout_;
  int fd_ = -1;
  std::string buffer_;
};

}  // namespace bench
