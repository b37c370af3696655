#include <unistd.h>

#include <climits>
#include <iostream>

#include "reload/config_check_line.h"
#include "reload/ini_config.h"
#include "reload/log.h"
#include "reload/master.h"
#include "reload/master_config.h"

namespace reload {

int runServiceMain(Service& service, const ServiceMainOptions& run) {
  if (run.checkOnly) {
    try {
      auto config = loadConfig(run.configPath, service);
      // The versioned line first, so that no amount of warnings pushes it
      // past what a running image reads of the output.
      std::cout << formatConfigCheckLine(service.name(), service.version(), config->digest) << "\n"
                << std::flush;
      for (const auto& w : config->warnings) std::cerr << "warning: " << w << "\n";
      return 0;
    } catch (const std::exception& e) {
      std::cerr << e.what() << "\n";
      return run.exitConfig;
    }
  }

  MasterOptions options;
  options.configPath = run.configPath;
  options.argv = run.args;
  options.executable = run.args.empty() ? "" : run.args[0];
  if (options.executable.find('/') != std::string::npos && options.executable[0] != '/') {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd)) options.executable = std::string(cwd) + "/" + options.executable;
  }
  // Until the configuration names the log, records go to standard error in
  // the server's own format (Boost.Log's default sink has another).
  log::configure(log::Settings{});
  auto fail = [](const std::string& message, int code) {
    std::cerr << message << "\n";
    if (log::currentTarget() != "stderr") MOLT_LOG(kCritical) << message;
    return code;
  };
  try {
    if (run.beforeMaster) run.beforeMaster();
    int code = runMaster(service, options);
    log::drain(log::kLogExitDrainMs);
    return code;
  } catch (const ConfigError& e) {
    return fail(e.what(), run.exitConfig);
  } catch (const std::exception& e) {
    return fail(service.name() + ": " + e.what(), 1);
  }
}

namespace {

constexpr int kExitUsage = 64;  // EX_USAGE

void printUsage(std::ostream& out, const std::string& name, const CommandLine& commandLine) {
  out << "usage: " << name << " [--config PATH] [--check-config | -t] [--config-keys] [--version] [--help]\n"
      << "\n"
      << "  -c, --config PATH   configuration file (default " << commandLine.defaultConfig << ")\n"
      << "  -t, --check-config  " << commandLine.checkHelp << "\n"
      << "  --config-keys       list every configuration key " << name << " accepts\n"
      << "  -V, --version       print the version and exit\n";
  if (!commandLine.signalsHelp.empty()) out << "\n" << commandLine.signalsHelp;
}

}  // namespace

int serviceMain(Service& service, int argc, char** argv, const CommandLine& commandLine) {
  const std::string name = service.name();
  ServiceMainOptions run;
  run.args.assign(argv, argv + argc);
  run.configPath = commandLine.defaultConfig;
  run.exitConfig = commandLine.exitConfig;
  run.beforeMaster = commandLine.beforeMaster;
  const std::vector<std::string>& args = run.args;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-c" || a == "--config") {
      if (i + 1 >= args.size()) {
        std::cerr << name << ": " << a << " needs a path\n";
        printUsage(std::cerr, name, commandLine);
        return kExitUsage;
      }
      run.configPath = args[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      run.configPath = a.substr(9);
    } else if (a == "-t" || a == "--check-config") {
      run.checkOnly = true;
    } else if (a == "--config-keys") {
      // What the man pages are checked against.
      IniConfig ini("(defaults)", "");
      parseMasterConfig(ini);
      service.parseConfig(ini, MasterConfig{});
      for (const auto& key : ini.knownKeys()) std::cout << key << "\n";
      return 0;
    } else if (a == "-V" || a == "--version") {
      std::cout << name << " " << service.version() << "\n";
      return 0;
    } else if (a == "-h" || a == "--help") {
      printUsage(std::cout, name, commandLine);
      return 0;
    } else {
      std::cerr << name << ": unknown argument '" << a << "'\n";
      printUsage(std::cerr, name, commandLine);
      return kExitUsage;
    }
  }
  return runServiceMain(service, run);
}

}  // namespace reload
