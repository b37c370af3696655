// molt-run: seamless upgrades for any program that takes its sockets by
// systemd's convention (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES).
#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "reload/master.h"
#include "reload/master_config.h"
#include "run_service.h"

namespace {

constexpr int kExitUsage = 64;   // EX_USAGE
constexpr int kExitConfig = 78;  // EX_CONFIG
constexpr const char* kDefaultConfig = "/etc/molt/molt-run.conf";

void usage(std::ostream& out) {
  out << "usage: molt-run [--config PATH] [--check-config | -t] [--config-keys] [--version] [--help]\n"
         "\n"
         "  -c, --config PATH   configuration file (default " << kDefaultConfig << ")\n"
         "  -t, --check-config  validate the configuration (the [program] command must be an\n"
         "                      executable file), print the check line and exit 0 if valid\n"
         "  --config-keys       list every configuration key molt-run accepts\n"
         "  -V, --version       print the version and exit\n"
         "\n"
         "Signals: HUP starts a new generation of the program from the re-read\n"
         "configuration, USR1 re-executes molt-run in place (same PID, workers kept),\n"
         "TERM stops the program gracefully, INT/QUIT stop it at once.\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  run::RunService service;
  std::string configPath = kDefaultConfig;
  bool checkOnly = false;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-c" || a == "--config") {
      if (i + 1 >= args.size()) {
        std::cerr << "molt-run: " << a << " needs a path\n";
        return kExitUsage;
      }
      configPath = args[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      configPath = a.substr(9);
    } else if (a == "-t" || a == "--check-config") {
      checkOnly = true;
    } else if (a == "--config-keys") {
      reload::IniConfig ini("(defaults)", "");
      reload::parseMasterConfig(ini);
      service.parseConfig(ini, reload::MasterConfig{});
      for (const auto& key : ini.knownKeys()) std::cout << key << "\n";
      return 0;
    } else if (a == "-V" || a == "--version") {
      std::cout << "molt-run " << service.version() << "\n";
      return 0;
    } else if (a == "-h" || a == "--help") {
      usage(std::cout);
      return 0;
    } else {
      std::cerr << "molt-run: unknown argument '" << a << "'\n";
      usage(std::cerr);
      return kExitUsage;
    }
  }

  reload::ServiceMainOptions serviceMain;
  serviceMain.configPath = configPath;
  serviceMain.args = args;
  serviceMain.checkOnly = checkOnly;
  serviceMain.exitConfig = kExitConfig;
  return reload::runServiceMain(service, serviceMain);
}
