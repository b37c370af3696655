#include <boost/test/unit_test.hpp>
#include <string>

#include "reload/admin_server.h"
#include "reload/ini_config.h"
#include "reload/master.h"
#include "reload/listen_address.h"
#include "reload/master_config.h"

namespace {

std::string syntaxErrorOf(const std::string& text) {
  try {
    reload::IniConfig ini("F", text);
  } catch (const reload::ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

BOOST_AUTO_TEST_SUITE(StrictConfigTest)

BOOST_AUTO_TEST_CASE(section_header_without_bracket) {
  std::string e = syntaxErrorOf("[server\nworkers = 2\n");
  BOOST_TEST(e.find("F:1: section header '[server' has no closing ']'") != std::string::npos, e);
}

BOOST_AUTO_TEST_CASE(line_without_equals) {
  std::string e = syntaxErrorOf("[server]\nworkers 2\n");
  BOOST_TEST(e.find("F:2: 'workers 2' is not 'key = value' (no '=')") != std::string::npos, e);
}

BOOST_AUTO_TEST_CASE(duplicate_keys_and_sections_in_any_case) {
  std::string e = syntaxErrorOf("[server]\nworkers = 2\nWorkers = 3\n[SERVER]\n");
  BOOST_TEST(e.find("F:3: [server] Workers is set twice (first at line 2)") != std::string::npos, e);
  BOOST_TEST(e.find("F:4: section [SERVER] appears twice (first at line 1)") != std::string::npos, e);
}

BOOST_AUTO_TEST_CASE(key_outside_a_section) {
  std::string e = syntaxErrorOf("workers = 2\n[server]\n");
  BOOST_TEST(e.find("F:1: key 'workers' is outside any [section]") != std::string::npos, e);
}

BOOST_AUTO_TEST_CASE(comments_blank_lines_and_crlf_are_fine) {
  reload::IniConfig ini("F", "# hash\r\n; semicolon\r\n\r\n  [server]  \r\n workers = 3 \r\n");
  BOOST_TEST(ini.getInt("server", "workers", 1, 1, 10) == 3);
  BOOST_TEST(ini.errors().empty());
}

BOOST_AUTO_TEST_CASE(value_errors_carry_the_line) {
  reload::IniConfig ini("F", "[server]\n\nworkers = many\n");
  ini.getInt("server", "workers", 1, 1, 10);
  BOOST_TEST(ini.errors().at(0) == "F: [server] workers: 'many' is not a whole number (line 3)");
}

BOOST_AUTO_TEST_CASE(sizes_that_overflow_are_refused) {
  BOOST_TEST(reload::parseBytes("16777215T") == 16777215ULL << 40);
  BOOST_CHECK_THROW(reload::parseBytes("16777216T"), std::invalid_argument);
  BOOST_CHECK_THROW(reload::parseBytes("18446744073709551616"), std::invalid_argument);
  BOOST_TEST(reload::parseBytes("18446744073709551615") == UINT64_MAX);
}

BOOST_AUTO_TEST_CASE(bind_hosts_are_resolved_once_at_validation) {
  reload::IniConfig ini("F", "[server]\nbind = localhost:9000, typo-host.invalid:9001\n");
  // "localhost" as /etc/hosts gives it, so that the test does not depend on
  // the machine having that file (a bare root does not); every other name
  // goes to the real resolver.
  auto resolve = [](reload::ListenAddress& address) {
    if (address.host != "localhost") return reload::resolveListenAddress(address);
    address.host = "127.0.0.1";
    reload::resolveListenAddress(address);
    address.host = "localhost";
  };
  auto master = reload::parseMasterConfig(ini, resolve);
  BOOST_TEST(master.bind.size() == 1u);
  BOOST_TEST(master.bind.at(0).resolvedLength > 0u);
  BOOST_TEST(reload::resolvedKey(master.bind.at(0)) == "tcp:127.0.0.1:9000");
  bool named = false;
  for (const auto& e : ini.errors())
    named = named || e.find("[server] bind: cannot resolve 'typo-host.invalid'") != std::string::npos;
  BOOST_TEST(named);
}

BOOST_AUTO_TEST_CASE(validated_result_round_trips_and_refuses_truncation) {
  reload::ValidatedConfig v;
  v.contents = "[server]\nworkers = 2\n";
  v.adminToken = "tok\x01en";
  v.resolved.emplace_back("localhost:80", std::string("\x02\x00\x00\x50\x7f\x00\x00\x01", 8));
  std::string bytes = reload::encodeValidated(v);
  auto back = reload::decodeValidated(bytes);
  BOOST_TEST(back.contents == v.contents);
  BOOST_TEST(back.adminToken == v.adminToken);
  BOOST_TEST(back.resolved == v.resolved);
  BOOST_CHECK_THROW(reload::decodeValidated(bytes.substr(0, bytes.size() - 1)), std::invalid_argument);
  BOOST_CHECK_THROW(reload::decodeValidated("token \nresolved 99999999\n"), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(bearer_tokens) {
  BOOST_TEST(reload::bearerTokenMatches("Bearer abc", "abc"));
  BOOST_TEST(reload::bearerTokenMatches("bEaReR \tabc ", "abc"));
  BOOST_TEST(!reload::bearerTokenMatches("Bearer abcd", "abc"));
  BOOST_TEST(!reload::bearerTokenMatches("Bearer ab", "abc"));
  BOOST_TEST(!reload::bearerTokenMatches("Basic abc", "abc"));
  BOOST_TEST(!reload::bearerTokenMatches("Bearer ", ""));
}

BOOST_AUTO_TEST_SUITE_END()
