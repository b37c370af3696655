// A configured listen address: "host:port", "[v6]:port", "*:port" or "unix:/path".
#pragma once

#include <sys/socket.h>

#include <string>

namespace reload {

struct ListenAddress {
  enum class Kind { kTcp, kUnix };
  Kind kind = Kind::kTcp;
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

  // The form the operator wrote, normalised ("127.0.0.1:8080", "[::1]:8080",
  // "unix:/run/moltd.sock").
  std::string toString() const;
};

// Identity of a bound socket, used to match inherited listeners with the
// configuration: "tcp:127.0.0.1:8080", "tcp:[::1]:8080", "unix:/path".
std::string socketKey(const sockaddr_storage& addr, socklen_t len);

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
