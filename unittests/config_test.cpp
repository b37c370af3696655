#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdio>
#include <fstream>
#include <string>

#include "reload/ini_config.h"
#include "reload/master_config.h"
#include "moltd_service.h"
#include "reload/master.h"
#include "server_config.h"

namespace {

struct TempConfig {
  explicit TempConfig(const std::string& text) {
    char name[] = "/tmp/molt-unit-XXXXXX";
    int fd = mkstemp(name);
    close(fd);
    path = name;
    std::ofstream(path) << text;
  }
  ~TempConfig() { std::remove(path.c_str()); }
  std::string path;
};

std::string errorsOf(const std::string& text) {
  TempConfig file(text);
  reload::IniConfig ini(file.path);
  reload::parseMasterConfig(ini);
  server::parseObjectServerConfig(ini);
  try {
    ini.finish();
  } catch (const reload::ConfigError& e) {
    std::string msg = e.what();
    // Make messages independent of the temp file's name.
    for (size_t pos; (pos = msg.find(file.path)) != std::string::npos;) msg.replace(pos, file.path.size(), "F");
    return msg;
  }
  return "";
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ConfigTest)

BOOST_AUTO_TEST_CASE(defaults_and_values) {
  TempConfig file(
      "[server]\nbind = 127.0.0.1:9000, [::1]:9001, unix:/tmp/x.sock\nworkers = 3\n"
      "graceful_timeout = 1.5\nlistener_handoff = rebind\n"
      "[storage]\nvolumes = /srv/a, /srv/b\nmax_object_size = 10M\n");
  reload::IniConfig ini(file.path);
  auto master = reload::parseMasterConfig(ini);
  auto storage = server::parseObjectServerConfig(ini);
  ini.finish();
  BOOST_TEST(master.bind.size() == 3u);
  BOOST_TEST(master.bind[1].host == "::1");
  BOOST_TEST(master.workers == 3);
  BOOST_TEST(master.gracefulTimeout == 1.5);
  BOOST_TEST((master.listenerHandoff == reload::ListenerHandoff::kRebind));
  BOOST_TEST(master.adminBind.at(0).toString() == "127.0.0.1:8081");
  BOOST_TEST(storage->storage.volumes.size() == 2u);
  BOOST_TEST(storage->storage.maxObjectSize == 10u * 1024 * 1024);
  BOOST_TEST(ini.unknownKeys().empty());
  BOOST_TEST(ini.digest().size() == 64u);
}

BOOST_AUTO_TEST_CASE(probation_keys_have_defaults_and_ranges) {
  {
    TempConfig file("[server]\nbind = 127.0.0.1:9000\n");
    reload::IniConfig ini(file.path);
    auto master = reload::parseMasterConfig(ini);
    BOOST_TEST(master.reloadProbation == 10);
    BOOST_TEST(master.probationMax5xxRatio == 0.5);
    BOOST_TEST(master.probationMinRequests == 20);
  }
  {
    TempConfig file("[server]\nreload_probation = 0\nprobation_max_5xx_ratio = 0.25\n"
                    "probation_min_requests = 5\n");
    reload::IniConfig ini(file.path);
    auto master = reload::parseMasterConfig(ini);
    ini.finish();
    BOOST_TEST(master.reloadProbation == 0);
    BOOST_TEST(master.probationMax5xxRatio == 0.25);
    BOOST_TEST(master.probationMinRequests == 5);
  }
  for (const char* ratio : {"0", "1", "0.5", "1.0", ".5", "0.999"})
    BOOST_TEST(errorsOf(std::string("[server]\nprobation_max_5xx_ratio = ") + ratio + "\n")
                       .find("probation") == std::string::npos,
               ratio);
  for (const char* ratio : {"1.5", "-0.1", "50%", "0.5s", "1e-2", ".", "0..5", "x", "2"}) {
    auto errors = errorsOf(std::string("[server]\nprobation_max_5xx_ratio = ") + ratio + "\n");
    BOOST_TEST(errors.find("probation_max_5xx_ratio: must be a number between 0 and 1") !=
                   std::string::npos,
               ratio << ": " << errors);
  }
  BOOST_TEST(errorsOf("[server]\nreload_probation = -1\n").find("reload_probation") !=
             std::string::npos);
  BOOST_TEST(errorsOf("[server]\nreload_probation = 3601\n").find("reload_probation") !=
             std::string::npos);
  BOOST_TEST(errorsOf("[server]\nprobation_min_requests = 0\n").find("probation_min_requests") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(errors_name_file_section_key_and_reason) {
  std::string e = errorsOf("[server]\nworkers = many\ngraceful_timeout = -1\n[storage]\nvolumes = relative\n");
  BOOST_TEST(e.find("F: [server] workers: 'many' is not a whole number") != std::string::npos, e);
  BOOST_TEST(e.find("F: [server] graceful_timeout: must be between 0 and 86400 seconds") != std::string::npos, e);
  BOOST_TEST(e.find("F: [storage] volumes: 'relative' is not an absolute path") != std::string::npos, e);
}

BOOST_AUTO_TEST_CASE(every_problem_is_reported_at_once) {
  std::string e = errorsOf("[server]\nbind = nonsense\nlistener_handoff = teleport\n[log]\nlevel = loud\n");
  BOOST_TEST(e.find("[server] bind: expected host:port, got 'nonsense'") != std::string::npos, e);
  BOOST_TEST(e.find("[server] listener_handoff: 'teleport' is not one of: inherit, rebind") != std::string::npos, e);
  BOOST_TEST(e.find("[log] level: unknown level 'loud'") != std::string::npos, e);
  BOOST_TEST(e.find("[storage] volumes: set volumes or volume_glob") != std::string::npos, e);
}

BOOST_AUTO_TEST_CASE(volume_glob_must_start_with_a_fixed_directory) {
  // Every way of putting a pattern in the first component is refused, and
  // the same pattern one directory down is accepted.
  for (std::string pattern : {"*", "?", "[a-z]", "x*", "*x", "a?b", "[v]ol", "\\*"}) {
    BOOST_TEST(!server::volumeGlobProblem("/" + pattern).empty(), pattern);
    BOOST_TEST(!server::volumeGlobProblem("/" + pattern + "/data").empty(), pattern);
    BOOST_TEST(server::volumeGlobProblem("/srv/" + pattern).empty(), pattern);
  }
  for (std::string bad : {"/", "//*", "/./*", "/../*", "relative/*"})
    BOOST_TEST(!server::volumeGlobProblem(bad).empty(), bad);
  std::string e = errorsOf("[storage]\nvolume_glob = /*\n");
  BOOST_TEST(e.find("[storage] volume_glob: '/*' matches directories at the file system root") !=
                 std::string::npos, e);
}

BOOST_AUTO_TEST_CASE(admin_may_not_share_a_public_address) {
  std::string e = errorsOf("[server]\nbind = 127.0.0.1:9000\n[admin]\nbind = 127.0.0.1:9000\n[storage]\nvolumes = /srv\n");
  BOOST_TEST(e.find("[admin] bind: '127.0.0.1:9000' is also a [server] bind address") != std::string::npos, e);
}

BOOST_AUTO_TEST_CASE(unknown_keys_are_listed) {
  TempConfig file("# comment\n[server]\n  # indented comment\nworkerz = 3\n; semicolon\n"
                  "[storage]\nvolumes = /srv\n[nonsense]\nx = 1\n");
  reload::IniConfig ini(file.path);
  reload::parseMasterConfig(ini);
  server::parseObjectServerConfig(ini);
  ini.finish();
  auto unknown = ini.unknownKeys();
  BOOST_TEST(unknown.size() == 2u);
  BOOST_TEST(unknown[0] == "[nonsense] x");
  BOOST_TEST(unknown[1] == "[server] workerz");
}

BOOST_AUTO_TEST_CASE(missing_file_is_a_config_error) {
  BOOST_CHECK_THROW(reload::IniConfig("/nonexistent/moltd.conf"), reload::ConfigError);
}

BOOST_AUTO_TEST_CASE(sizes_and_durations) {
  BOOST_TEST(reload::parseBytes("512") == 512u);
  BOOST_TEST(reload::parseBytes("64K") == 65536u);
  BOOST_TEST(reload::parseBytes("2g") == 2ULL << 30);
  BOOST_CHECK_THROW(reload::parseBytes("1.5M"), std::invalid_argument);
  BOOST_CHECK_THROW(reload::parseBytes("M"), std::invalid_argument);
  BOOST_TEST(reload::parseSeconds("0.25") == 0.25);
  BOOST_CHECK_THROW(reload::parseSeconds("5s"), std::invalid_argument);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(ServiceListenerKindsTest)

// moltd serves HTTP on stream sockets: a UDP entry is refused by the one
// validation (moltd -t and every reload), with file, key and reason; a
// named entry is accepted and keeps its name.
BOOST_AUTO_TEST_CASE(moltd_refuses_udp_and_takes_names) {
  char dir[] = "/tmp/molt-kinds-XXXXXX";
  BOOST_REQUIRE(mkdtemp(dir));
  std::string volume = std::string(dir);
  server::MoltdService service;
  {
    TempConfig file("[server]\nbind = web=127.0.0.1:9000, stats=udp:127.0.0.1:8125\n[storage]\nvolumes = " +
                    volume + "\n[log]\nlevel = info\n");
    try {
      reload::loadConfig(file.path, service);
      BOOST_ERROR("a udp: bind entry was accepted by moltd");
    } catch (const reload::ConfigError& e) {
      std::string msg = e.what();
      BOOST_TEST(msg.find(file.path + ": [server] bind: 'udp:127.0.0.1:8125': moltd does not serve UDP listeners") !=
                     std::string::npos, msg);
    }
  }
  {
    TempConfig file("[server]\nbind = web=127.0.0.1:9000\n[storage]\nvolumes = " + volume + "\n");
    auto config = reload::loadConfig(file.path, service);
    BOOST_REQUIRE(config->master.bind.size() == 1u);
    BOOST_TEST(config->master.bind[0].name == "web");
  }
  {
    TempConfig file("[server]\nbind = 127.0.0.1:9000\n[admin]\nbind = udp:127.0.0.1:9001\n[storage]\nvolumes = " +
                    volume + "\n");
    try {
      reload::loadConfig(file.path, service);
      BOOST_ERROR("a udp: admin address was accepted");
    } catch (const reload::ConfigError& e) {
      BOOST_TEST(std::string(e.what()).find("[admin] bind: 'udp:127.0.0.1:9001': the admin endpoint needs a stream socket") !=
                     std::string::npos, e.what());
    }
  }
  rmdir(dir);
}

BOOST_AUTO_TEST_SUITE_END()
