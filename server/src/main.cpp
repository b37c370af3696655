// moltd: the molt object server.
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "moltd_service.h"
#ifdef MOLT_TEST_FAULTS
#include "test_faults.h"
#endif
#include "reload/config_check_line.h"
#include "reload/log.h"
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

  if (checkOnly) {
    try {
      auto config = reload::loadConfig(configPath, service);
      // The versioned line first, so that no amount of warnings pushes it
      // past what a running image reads of the output.
      std::cout << reload::formatConfigCheckLine(service.name(), server::moltVersion(), config->digest) << "\n"
                << std::flush;
      for (const auto& w : config->warnings) std::cerr << "warning: " << w << "\n";
      return 0;
    } catch (const std::exception& e) {
      std::cerr << e.what() << "\n";
      return kExitConfig;
    }
  }

  reload::MasterOptions options;
  options.configPath = configPath;
  options.argv = args;
  options.executable = args[0];
  if (options.executable.find('/') != std::string::npos && options.executable[0] != '/') {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd)) options.executable = std::string(cwd) + "/" + options.executable;
  }
  // Until the configuration names the log, records go to standard error in
  // the server's own format (Boost.Log's default sink has another).
  reload::log::configure(reload::log::Settings{});
  auto fail = [](const std::string& message, int code) {
    std::cerr << message << "\n";
    if (reload::log::currentTarget() != "stderr") MOLT_LOG(kCritical) << message;
    return code;
  };
  try {
#ifdef MOLT_TEST_FAULTS
    server::armMasterFault();
#endif
    return reload::runMaster(service, options);
  } catch (const reload::ConfigError& e) {
    return fail(e.what(), kExitConfig);
  } catch (const std::exception& e) {
    return fail(std::string("moltd: ") + e.what(), 1);
  }
}
