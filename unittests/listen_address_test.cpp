#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdlib>

#include "reload/fd.h"
#include "reload/listen_address.h"
#include "reload/listeners.h"

using reload::ListenAddress;

BOOST_AUTO_TEST_SUITE(ListenAddressTest)

BOOST_AUTO_TEST_CASE(parses_every_form) {
  auto v4 = ListenAddress::parse("127.0.0.1:8080");
  BOOST_TEST(v4.host == "127.0.0.1");
  BOOST_TEST(v4.port == 8080);
  auto v6 = ListenAddress::parse("[::1]:8443");
  BOOST_TEST(v6.host == "::1");
  BOOST_TEST(v6.toString() == "[::1]:8443");
  auto any = ListenAddress::parse("*:80");
  BOOST_TEST(any.host.empty());
  BOOST_TEST(any.toString() == "*:80");
  auto unix = ListenAddress::parse("unix:/run/moltd.sock");
  BOOST_TEST((unix.kind == ListenAddress::Kind::kUnix));
  BOOST_TEST(unix.path == "/run/moltd.sock");
}

BOOST_AUTO_TEST_CASE(rejects_with_reasons) {
  auto reason = [](const std::string& text) {
    try {
      ListenAddress::parse(text);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  BOOST_TEST(reason("8080") == "expected host:port, got '8080'");
  BOOST_TEST(reason("host:99999") == "port 99999 is out of range");
  BOOST_TEST(reason("host:http") == "port 'http' is not a number");
  BOOST_TEST(reason("::1:80") == "IPv6 addresses need brackets: '::1:80'");
  BOOST_TEST(reason("[nothex]:80") == "'nothex' is not an IPv6 address");
  BOOST_TEST(reason("unix:relative.sock") == "unix socket path must be absolute: 'unix:relative.sock'");
  BOOST_TEST(reason("host:") == "missing port");
}

// Every spelling of port 0, on every kind of host, is refused; every other
// port in range is taken as written.
BOOST_AUTO_TEST_CASE(port_zero_is_refused_in_every_spelling) {
  for (const char* host : {"127.0.0.1", "*", "[::1]", "[::]", "localhost", "0.0.0.0"}) {
    for (const char* zeroText : {"0", "00", "000", "0000", "00000"}) {
      const std::string zero = zeroText;
      try {
        ListenAddress::parse(std::string(host) + ":" + zero);
        BOOST_ERROR(std::string(host) + ":" + zero + " was accepted");
      } catch (const std::invalid_argument& e) {
        BOOST_TEST(std::string(e.what()).find("port " + zero + " is not allowed") == 0u, e.what());
      }
    }
  }
  for (int port = 1; port <= 65535; ++port)
    BOOST_REQUIRE(ListenAddress::parse("127.0.0.1:" + std::to_string(port)).port == port);
}

BOOST_AUTO_TEST_CASE(udp_and_named_entries) {
  auto udp = ListenAddress::parse("udp:127.0.0.1:8125");
  BOOST_TEST((udp.kind == ListenAddress::Kind::kUdp));
  BOOST_TEST(udp.host == "127.0.0.1");
  BOOST_TEST(udp.port == 8125);
  BOOST_TEST(udp.toString() == "udp:127.0.0.1:8125");
  auto udp6 = ListenAddress::parse("udp:[::1]:53");
  BOOST_TEST((udp6.kind == ListenAddress::Kind::kUdp));
  BOOST_TEST(udp6.toString() == "udp:[::1]:53");
  BOOST_TEST(ListenAddress::parse("udp:*:9").toString() == "udp:*:9");
  auto web = ListenAddress::parse("web=127.0.0.1:8000");
  BOOST_TEST(web.name == "web");
  BOOST_TEST(web.toString() == "127.0.0.1:8000");  // the name is not the address
  auto stats = ListenAddress::parse("stats=udp:[::1]:8125");
  BOOST_TEST(stats.name == "stats");
  BOOST_TEST((stats.kind == ListenAddress::Kind::kUdp));
  // An '=' after the scheme's ':' belongs to the path.
  auto path = ListenAddress::parse("unix:/run/a=b.sock");
  BOOST_TEST(path.name.empty());
  BOOST_TEST(path.path == "/run/a=b.sock");
  auto namedPath = ListenAddress::parse("app=unix:/run/a=b.sock");
  BOOST_TEST(namedPath.name == "app");
  BOOST_TEST(namedPath.path == "/run/a=b.sock");
  for (const char* bad : {"udp:8125", "udp:unix:/x", "udp:a=127.0.0.1:1", "=127.0.0.1:1",
                          "udp:127.0.0.1:0", "udp:::1:53"}) {
    BOOST_CHECK_THROW(ListenAddress::parse(bad), std::invalid_argument);
  }
}

// systemd's rule for a descriptor name, over every byte and both length
// bounds: printable ASCII but ':', 1 to 255 characters.
BOOST_AUTO_TEST_CASE(listener_names_follow_systemds_rule) {
  for (int c = 0; c < 256; ++c) {
    std::string name = "a" + std::string(1, static_cast<char>(c)) + "b";
    bool allowed = c >= 0x20 && c <= 0x7e && c != ':';
    BOOST_TEST(reload::listenerNameProblem(name).empty() == allowed, "byte " << c);
    // In a bind entry too, when the byte can be written there at all ('='
    // ends the name, ',' the entry, and the entry is trimmed).
    if (c == '=' || c == ',' || c == ':') continue;
    std::string entry = name + "=127.0.0.1:80";
    if (allowed) {
      BOOST_TEST(ListenAddress::parse(entry).name == name, "byte " << c);
    } else {
      BOOST_CHECK_THROW(ListenAddress::parse(entry), std::invalid_argument);
    }
  }
  BOOST_TEST(reload::listenerNameProblem(std::string(255, 'n')).empty());
  BOOST_TEST(!reload::listenerNameProblem(std::string(256, 'n')).empty());
  BOOST_TEST(!reload::listenerNameProblem("").empty());
  BOOST_TEST(ListenAddress::parse(std::string(255, 'n') + "=udp:127.0.0.1:1").name.size() == 255u);
  BOOST_CHECK_THROW(ListenAddress::parse(std::string(256, 'n') + "=127.0.0.1:1"), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(keys_of_configured_addresses) {
  BOOST_TEST(reload::resolvedKey(ListenAddress::parse("udp:127.0.0.1:80")) == "udp:127.0.0.1:80");
  BOOST_TEST(reload::resolvedKey(ListenAddress::parse("udp:[::1]:80")) == "udp:[::1]:80");
  BOOST_TEST(reload::resolvedKey(ListenAddress::parse("127.0.0.1:80")) == "tcp:127.0.0.1:80");
  BOOST_TEST(reload::resolvedKey(ListenAddress::parse("*:80")) == "tcp:0.0.0.0:80");
  BOOST_TEST(reload::resolvedKey(ListenAddress::parse("[::1]:80")) == "tcp:[::1]:80");
  BOOST_TEST(reload::resolvedKey(ListenAddress::parse("[::]:80")) == "tcp:[::]:80");
}

// Adoption across an exec matches an inherited socket with the configuration
// by comparing these two keys: they must agree for every form of address.
BOOST_AUTO_TEST_CASE(configured_key_equals_the_bound_sockets_key) {
  auto freePort = [](int family) {
    reload::Fd probe(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_storage addr{};
    socklen_t len = 0;
    if (family == AF_INET) {
      auto& in = reinterpret_cast<sockaddr_in&>(addr);
      in.sin_family = AF_INET;
      in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof in;
    } else {
      auto& in6 = reinterpret_cast<sockaddr_in6&>(addr);
      in6.sin6_family = AF_INET6;
      in6.sin6_addr = in6addr_loopback;
      len = sizeof in6;
    }
    if (!probe || bind(probe.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) return 0;
    getsockname(probe.get(), reinterpret_cast<sockaddr*>(&addr), &len);
    return static_cast<int>(ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in&>(addr).sin_port
                                                    : reinterpret_cast<sockaddr_in6&>(addr).sin6_port));
  };
  auto check = [](const std::string& text) {
    auto address = ListenAddress::parse(text);
    auto fd = reload::bindListener(address);
    BOOST_TEST(reload::listeningSocketKey(fd.get()) == reload::resolvedKey(address), text);
  };
  int v4 = freePort(AF_INET);
  BOOST_REQUIRE(v4 > 0);
  check("127.0.0.1:" + std::to_string(v4));
  check("udp:127.0.0.1:" + std::to_string(v4));  // UDP and TCP of one port are two sockets
  check("*:" + std::to_string(freePort(AF_INET)));
  char dir[] = "/tmp/molt-key-XXXXXX";
  BOOST_REQUIRE(mkdtemp(dir));
  check(std::string("unix:") + dir + "/s.sock");
  unlink((std::string(dir) + "/s.sock").c_str());
  rmdir(dir);
  int v6 = freePort(AF_INET6);
  if (v6 == 0) {
    BOOST_TEST_MESSAGE("no IPv6 loopback here: IPv6 keys not checked");
    return;
  }
  check("[::1]:" + std::to_string(v6));
  check("[::]:" + std::to_string(freePort(AF_INET6)));
  check("udp:[::1]:" + std::to_string(v6));
}

// A UDP socket is bound once: a second bind of the address (another
// server, or this one by mistake) is refused rather than silently sharing
// its datagrams through SO_REUSEPORT; the socket is bound, not connected,
// non-blocking and close-on-exec like every listener.
BOOST_AUTO_TEST_CASE(udp_listener_is_bound_once) {
  auto address = ListenAddress::parse("udp:127.0.0.1:1");
  reload::Fd first;
  for (int port = 20000 + getpid() % 20000, tries = 0; tries < 200 && !first; ++port, ++tries) {
    address.port = port;
    try {
      first = reload::bindListener(address);
    } catch (const std::system_error&) {
    }
  }
  BOOST_REQUIRE(first);
  BOOST_TEST(reload::stillServes(first.get()));
  BOOST_TEST(!reload::stillListening(first.get()));
  BOOST_TEST((fcntl(first.get(), F_GETFL) & O_NONBLOCK) != 0);
  BOOST_TEST((fcntl(first.get(), F_GETFD) & FD_CLOEXEC) != 0);
  int reuse = 0;
  socklen_t len = sizeof reuse;
  BOOST_TEST(getsockopt(first.get(), SOL_SOCKET, SO_REUSEPORT, &reuse, &len) == 0);
  BOOST_TEST(reuse == 1);
  try {
    reload::bindListener(address);
    BOOST_ERROR("a second UDP socket was bound on " << address.toString());
  } catch (const std::system_error& e) {
    BOOST_TEST(e.code().value() == EADDRINUSE, e.what());
  }
  // A datagram sent to the address is in the one socket's queue.
  reload::Fd sender(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_storage to{};
  socklen_t toLen = reload::resolveSockaddr(address, to);
  BOOST_REQUIRE(sendto(sender.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&to), toLen) == 1);
  pollfd p{first.get(), POLLIN, 0};
  BOOST_TEST(poll(&p, 1, 5000) == 1);
}

BOOST_AUTO_TEST_SUITE_END()
