// moltd: the molt object server.
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "moltd_service.h"
#ifdef MOLT_TEST_FAULTS
#include "test_faults.h"
#endif
#include "reload/master.h"
#include "reload/master_config.h"
#include "version.h"

namespace {

constexpr int kExitUsage = 64;   // EX_USAGE
constexpr int kExitConfig = 78;  // EX_CONFIG
constexpr const char* kDefaultConfig = "/etc/molt/moltd.conf";

void usage(std::ostream& out) {
  out << "usage: moltd [--config PATH] [--check-config | -t] [--config-keys] [--version] [--help]\n"
         "\n"
         "  -c, --config PATH   configuration file (default " << kDefaultConfig << ")\n"
         "  -t, --check-config  validate the configuration, print \"moltd VERSION configuration\n"
         "                      ok: sha256:DIGEST\" and exit 0 if it is valid\n"
         "  --config-keys       list every configuration key moltd accepts\n"
         "  -V, --version       print the version and exit\n"
         "\n"
         "Signals to the master: HUP reload in place, USR1 seamless reload (new binary,\n"
         "same PID), TERM graceful stop, INT/QUIT immediate stop, USR2 re-check read-only.\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
#ifdef MOLT_TEST_FAULTS
  server::FaultyService service;
#else
  server::MoltdService service;
#endif
  std::string configPath = kDefaultConfig;
  bool checkOnly = false;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-c" || a == "--config") {
      if (i + 1 >= args.size()) {
        std::cerr << "moltd: " << a << " needs a path\n";
        return kExitUsage;
      }
      configPath = args[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      configPath = a.substr(9);
    } else if (a == "-t" || a == "--check-config") {
      checkOnly = true;
    } else if (a == "--config-keys") {
      // Every key the parsers accept, as "section.key": the man page is tested against it.
      reload::IniConfig ini("(defaults)", "");
      reload::parseMasterConfig(ini);
      service.parseConfig(ini, reload::MasterConfig{});
      for (const auto& key : ini.knownKeys()) std::cout << key << "\n";
      return 0;
    } else if (a == "-V" || a == "--version") {
      std::cout << "moltd " << server::moltVersion() << "\n";
      return 0;
    } else if (a == "-h" || a == "--help") {
      usage(std::cout);
      return 0;
    } else {
      std::cerr << "moltd: unknown argument '" << a << "'\n";
      usage(std::cerr);
      return kExitUsage;
    }
  }

  reload::ServiceMainOptions serviceMain;
  serviceMain.configPath = configPath;
  serviceMain.args = args;
  serviceMain.checkOnly = checkOnly;
  serviceMain.exitConfig = kExitConfig;
#ifdef MOLT_TEST_FAULTS
  serviceMain.beforeMaster = [] { server::armMasterFault(); };
#endif
  return reload::runServiceMain(service, serviceMain);
}
