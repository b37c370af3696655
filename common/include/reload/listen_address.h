// A configured listen address: "host:port", "[v6]:port", "*:port" or
// "unix:/path" (stream sockets), "udp:host:port" or "udp:[v6]:port"
// (datagram sockets), each optionally named: "NAME=ADDRESS". The name is
// what a worker's LISTEN_FDNAMES carries (systemd's rules: 1 to 255
// printable ASCII characters, no ':').
#pragma once

#include <sys/socket.h>

#include <string>

namespace reload {

struct ListenAddress {
  enum class Kind { kTcp, kUnix, kUdp };
  Kind kind = Kind::kTcp;
  std::string name;  // "" when the entry has none
  std::string host;  // empty means every address (wildcard); no brackets
  int port = 0;
  std::string path;  // Unix sockets only
  // Where a TCP address binds, once resolved (see resolveListenAddress);
  // resolvedLength 0 until then. A validated configuration carries it, so
  // nothing after validation looks a name up again.
  sockaddr_storage resolved{};
  socklen_t resolvedLength = 0;

  // Parses one entry of a `bind` list. Throws std::invalid_argument with a
  // reason that names what is wrong ("port 99999 is out of range").
  static ListenAddress parse(const std::string& text);

  // The address the operator wrote, normalised, without its name
  // ("127.0.0.1:8080", "[::1]:8080", "unix:/run/app.sock", "udp:[::1]:53").
  // Two entries with the same toString() are the same socket.
  std::string toString() const;
  // TCP and UDP addresses have a host and a port to resolve.
  bool isInet() const { return kind != Kind::kUnix; }
};

// The name a listener kind has in reports and in WorkerListener: "tcp",
// "unix" or "udp".
const char* listenKindName(ListenAddress::Kind kind);

// "" when `name` may name a listener (systemd's fdname_is_valid: 1 to 255
// printable ASCII characters, no ':'), else why not.
std::string listenerNameProblem(const std::string& name);

// Identity of a bound socket, used to match inherited listeners with the
// configuration: "tcp:127.0.0.1:8080", "tcp:[::1]:8080", "unix:/path",
// with `datagram` "udp:127.0.0.1:8125".
std::string socketKey(const sockaddr_storage& addr, socklen_t len, bool datagram = false);

// The socket address a TCP listen address binds to: the stored result if
// there is one, else a lookup of the host name (preferring IPv4); numeric
// hosts are never looked up. Throws std::invalid_argument.
socklen_t resolveSockaddr(const ListenAddress& address, sockaddr_storage& out);

// Stores the result of resolveSockaddr in the address. Throws
// std::invalid_argument when the host does not resolve.
void resolveListenAddress(ListenAddress& address);

// The key a configured address will have once bound. Resolves host names.
// Throws std::invalid_argument if the host cannot be resolved.
std::string resolvedKey(const ListenAddress& address);

}  // namespace reload
