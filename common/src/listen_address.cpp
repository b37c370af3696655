#include "reload/listen_address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstring>
#include <stdexcept>

namespace reload {
namespace {

int parsePort(const std::string& text) {
  if (text.empty()) throw std::invalid_argument("missing port");
  if (text.size() > 5 || text.find_first_not_of("0123456789") != std::string::npos)
    throw std::invalid_argument("port '" + text + "' is not a number");
  int port = std::stoi(text);
  if (port > 65535) throw std::invalid_argument("port " + text + " is out of range");
  // Binding port 0 takes a random port, which no client knows and which a
  // reload would not keep.
  if (port == 0)
    throw std::invalid_argument("port " + text + " is not allowed: the kernel would pick a random port");
  return port;
}

}  // namespace

const char* listenKindName(ListenAddress::Kind kind) {
  switch (kind) {
    case ListenAddress::Kind::kTcp: return "tcp";
    case ListenAddress::Kind::kUnix: return "unix";
    case ListenAddress::Kind::kUdp: return "udp";
  }
  return "?";
}

std::string listenerNameProblem(const std::string& name) {
  if (name.empty()) return "a listener name cannot be empty";
  if (name.size() > 255)
    return "listener name of " + std::to_string(name.size()) + " characters: at most 255";
  for (unsigned char c : name) {
    if (c == ':') return "listener name '" + name + "' has a ':' (LISTEN_FDNAMES separates names with it)";
    if (c < 0x20 || c > 0x7e)
      return "listener name has a character that is not printable ASCII (code " +
             std::to_string(static_cast<int>(c)) + ")";
  }
  return "";
}

ListenAddress ListenAddress::parse(const std::string& raw) {
  std::string text = raw;
  ListenAddress address;
  // "NAME=ADDRESS": every address has a ':' and a name has none, so an '='
  // before the first ':' ends a name (a Unix path may hold '=' itself).
  auto equals = text.find('=');
  if (equals != std::string::npos && text.find(':') > equals) {
    address.name = text.substr(0, equals);
    if (auto problem = listenerNameProblem(address.name); !problem.empty())
      throw std::invalid_argument(problem + ": '" + text + "'");
    text = text.substr(equals + 1);
  }
  if (text.rfind("udp:", 0) == 0) {
    ListenAddress inet = parse(text.substr(4));
    if (inet.kind != Kind::kTcp || !inet.name.empty())
      throw std::invalid_argument("expected udp:host:port or udp:[v6-address]:port, got '" + text + "'");
    inet.kind = Kind::kUdp;
    inet.name = address.name;
    return inet;
  }
  if (text.rfind("unix:", 0) == 0) {
    address.kind = Kind::kUnix;
    address.path = text.substr(5);
    if (address.path.empty() || address.path[0] != '/')
      throw std::invalid_argument("unix socket path must be absolute: '" + text + "'");
    if (address.path.size() >= sizeof(sockaddr_un::sun_path))
      throw std::invalid_argument("unix socket path is too long: '" + text + "'");
    return address;
  }
  std::string portText;
  if (!text.empty() && text[0] == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      throw std::invalid_argument("expected [v6-address]:port, got '" + text + "'");
    address.host = text.substr(1, close - 1);
    portText = text.substr(close + 2);
    in6_addr probe{};
    if (inet_pton(AF_INET6, address.host.c_str(), &probe) != 1)
      throw std::invalid_argument("'" + address.host + "' is not an IPv6 address");
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos)
      throw std::invalid_argument("expected host:port, got '" + text + "'");
    address.host = text.substr(0, colon);
    if (address.host.find(':') != std::string::npos)
      throw std::invalid_argument("IPv6 addresses need brackets: '" + text + "'");
    if (address.host == "*") address.host.clear();
    portText = text.substr(colon + 1);
  }
  address.port = parsePort(portText);
  return address;
}

std::string ListenAddress::toString() const {
  if (kind == Kind::kUnix) return "unix:" + path;
  std::string shown = host.empty() ? "*" : host;
  if (shown.find(':') != std::string::npos) shown = "[" + shown + "]";
  return (kind == Kind::kUdp ? "udp:" : "") + shown + ":" + std::to_string(port);
}

std::string socketKey(const sockaddr_storage& addr, socklen_t len, bool datagram) {
  const std::string scheme = datagram ? "udp:" : "tcp:";
  char buf[INET6_ADDRSTRLEN] = {};
  switch (addr.ss_family) {
    case AF_INET: {
      const auto& in = reinterpret_cast<const sockaddr_in&>(addr);
      inet_ntop(AF_INET, &in.sin_addr, buf, sizeof buf);
      return scheme + buf + ":" + std::to_string(ntohs(in.sin_port));
    }
    case AF_INET6: {
      const auto& in6 = reinterpret_cast<const sockaddr_in6&>(addr);
      inet_ntop(AF_INET6, &in6.sin6_addr, buf, sizeof buf);
      return scheme + "[" + buf + "]:" + std::to_string(ntohs(in6.sin6_port));
    }
    case AF_UNIX: {
      const auto& un = reinterpret_cast<const sockaddr_un&>(addr);
      auto pathLen = static_cast<size_t>(len) - offsetof(sockaddr_un, sun_path);
      std::string path(un.sun_path, strnlen(un.sun_path, pathLen));
      return "unix:" + path;
    }
    default:
      return "family:" + std::to_string(addr.ss_family);
  }
}

socklen_t resolveSockaddr(const ListenAddress& address, sockaddr_storage& out) {
  out = sockaddr_storage{};
  if (address.resolvedLength > 0) {
    std::memcpy(&out, &address.resolved, address.resolvedLength);
    return address.resolvedLength;
  }
  auto port = htons(static_cast<uint16_t>(address.port));
  auto& in = reinterpret_cast<sockaddr_in&>(out);
  auto& in6 = reinterpret_cast<sockaddr_in6&>(out);
  // Numeric hosts and the wildcard need no lookup (and no NSS modules).
  if (address.host.empty()) {
    in.sin_family = AF_INET;
    in.sin_port = port;
    in.sin_addr.s_addr = htonl(INADDR_ANY);
    return sizeof(sockaddr_in);
  }
  if (inet_pton(AF_INET, address.host.c_str(), &in.sin_addr) == 1) {
    in.sin_family = AF_INET;
    in.sin_port = port;
    return sizeof(sockaddr_in);
  }
  if (inet_pton(AF_INET6, address.host.c_str(), &in6.sin6_addr) == 1) {
    in6.sin6_family = AF_INET6;
    in6.sin6_port = port;
    return sizeof(sockaddr_in6);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* result = nullptr;
  std::string service = std::to_string(address.port);
  int rc = getaddrinfo(address.host.c_str(), service.c_str(), &hints, &result);
  if (rc != 0 || result == nullptr)
    throw std::invalid_argument("cannot resolve '" + address.host + "': " +
                                (rc == EAI_SYSTEM ? std::strerror(errno) : gai_strerror(rc)));
  addrinfo* chosen = result;  // prefer IPv4, as most servers do
  for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET) {
      chosen = ai;
      break;
    }
  }
  std::memcpy(&out, chosen->ai_addr, chosen->ai_addrlen);
  auto len = chosen->ai_addrlen;
  freeaddrinfo(result);
  return len;
}

void resolveListenAddress(ListenAddress& address) {
  if (!address.isInet() || address.resolvedLength > 0) return;
  sockaddr_storage storage{};
  socklen_t len = resolveSockaddr(address, storage);
  address.resolved = storage;
  address.resolvedLength = len;
}

std::string resolvedKey(const ListenAddress& address) {
  if (address.kind == ListenAddress::Kind::kUnix) return "unix:" + address.path;
  sockaddr_storage storage{};
  socklen_t len = resolveSockaddr(address, storage);
  return socketKey(storage, len, address.kind == ListenAddress::Kind::kUdp);
}

}  // namespace reload
