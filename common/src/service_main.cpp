#include <unistd.h>

#include <climits>
#include <iostream>

#include "reload/config_check_line.h"
#include "reload/ini_config.h"
#include "reload/last_good.h"
#include "reload/log.h"
#include "reload/master.h"
#include "reload/master_config.h"

namespace reload {

namespace {

// The record the start script took, for this binary: checked whole before
// anything uses it.
LastGoodRecord takenRecord(Service& service, const std::string& dir) {
  if (dir.empty()) throw std::invalid_argument("--last-good-dir is needed");
  LastGoodRecord record = LastGoodDir(dir).readTaken();
  if (record.service != service.name())
    throw std::invalid_argument("the record is of " + record.service + ", not " + service.name());
  if (record.version != service.version())
    throw std::invalid_argument("the record is of version " + record.version + ", this binary is " +
                                service.version());
  decodeValidated(record.validated);
  return record;
}

}  // namespace

int runServiceMain(Service& service, const ServiceMainOptions& run) {
  if (run.checkLastGood) {
    try {
      LastGoodRecord record = takenRecord(service, run.lastGoodDir);
      std::cout << service.name() << " " << service.version()
                << " last good record ok: executable " << record.executable << ", config "
                << record.configPath << " (" << record.configDigest << "), " << record.why << "\n";
      return 0;
    } catch (const std::exception& e) {
      std::cerr << service.name() << ": last good record in " << run.lastGoodDir << ": " << e.what()
                << "\n";
      return 1;
    }
  }
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
  options.lastGoodDir = run.lastGoodDir;
  // Until the configuration names the log, records go to standard error in
  // the server's own format (Boost.Log's default sink has another).
  log::configure(log::Settings{});
  if (run.startFromLastGood) {
    // This process runs the record's copy of the binary: later reloads run
    // the real executable with the real configuration file.
    try {
      LastGoodRecord record = takenRecord(service, run.lastGoodDir);
      LastGoodDir dir(run.lastGoodDir);
      options.configPath = record.configPath;
      options.executable = record.executable;
      options.argv = {record.executable, "--config", record.configPath, "--last-good-dir",
                      run.lastGoodDir};
      options.startValidated = record.validated;
      options.startDigest = record.configDigest;
      std::string note = dir.readReloadNote();
      options.startNote = "started from the last good record (binary " + dir.path() +
                          "/taken/binary, version " + record.version + ", executable " +
                          record.executable + ", config " + record.configPath + " digest " +
                          record.configDigest + ", recorded " + record.why + "): the previous master died " +
                          (note.empty() ? std::string("outside a seamless reload")
                                        : "during " + note);
    } catch (const std::exception& e) {
      std::cerr << service.name() << ": cannot start from the last good record in "
                << run.lastGoodDir << ": " << e.what() << "\n";
      return 1;
    }
  }
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
      << "       " << name << " [--config PATH] [--last-good-dir DIR [--start-from-last-good | --check-last-good]]\n"
      << "\n"
      << "  -c, --config PATH   configuration file (default " << commandLine.defaultConfig << ")\n"
      << "  -t, --check-config  " << commandLine.checkHelp << "\n"
      << "  --config-keys       list every configuration key " << name << " accepts\n"
      << "  --last-good-dir DIR keep a copy of the last good binary and configuration in DIR\n"
      << "  --start-from-last-good  start with the record the start script took (DIR/taken)\n"
      << "  --check-last-good   check that record, print what it holds and exit 0 if it is whole\n"
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
    } else if (a == "--last-good-dir") {
      if (i + 1 >= args.size() || args[i + 1].empty() || args[i + 1][0] != '/') {
        std::cerr << name << ": " << a << " needs an absolute path\n";
        printUsage(std::cerr, name, commandLine);
        return kExitUsage;
      }
      run.lastGoodDir = args[++i];
    } else if (a == "--start-from-last-good") {
      run.startFromLastGood = true;
    } else if (a == "--check-last-good") {
      run.checkLastGood = true;
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
