#include <boost/test/unit_test.hpp>

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

BOOST_AUTO_TEST_CASE(keys_match_bound_sockets) {
  BOOST_TEST(reload::resolvedKey(ListenAddress::parse("127.0.0.1:80")) == "tcp:127.0.0.1:80");
  BOOST_TEST(reload::resolvedKey(ListenAddress::parse("*:80")) == "tcp:0.0.0.0:80");
  BOOST_TEST(reload::resolvedKey(ListenAddress::parse("[::1]:80")) == "tcp:[::1]:80");
  auto fd = reload::bindListener(ListenAddress::parse("127.0.0.1:0"));
  std::string key = reload::listeningSocketKey(fd.get());
  BOOST_TEST(key.rfind("tcp:127.0.0.1:", 0) == 0u);
}

BOOST_AUTO_TEST_CASE(plan_keeps_unchanged_binds_new_releases_old) {
  auto plan = reload::planListeners({"tcp:a:1", "tcp:a:2", "unix:/s"}, {"tcp:a:2", "tcp:a:3"});
  BOOST_TEST(plan.keep == std::vector<size_t>({1}));
  BOOST_TEST(plan.release == std::vector<size_t>({0, 2}));
  BOOST_TEST(plan.bind == std::vector<size_t>({1}));
}

BOOST_AUTO_TEST_SUITE_END()
