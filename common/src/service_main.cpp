#include <unistd.h>

#include <climits>
#include <iostream>

#include "reload/config_check_line.h"
#include "reload/log.h"
#include "reload/master.h"

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
    return runMaster(service, options);
  } catch (const ConfigError& e) {
    return fail(e.what(), run.exitConfig);
  } catch (const std::exception& e) {
    return fail(service.name() + ": " + e.what(), 1);
  }
}

}  // namespace reload
