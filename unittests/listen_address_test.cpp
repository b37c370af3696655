#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
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

BOOST_AUTO_TEST_CASE(keys_of_configured_addresses) {
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
}

BOOST_AUTO_TEST_SUITE_END()
