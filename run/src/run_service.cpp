#include "run_service.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "keeper.h"

#ifndef MOLT_VERSION
#define MOLT_VERSION "0.0.0"
#endif

namespace run {

std::string runVersion() { return MOLT_VERSION; }

std::string RunService::version() const { return runVersion(); }

std::shared_ptr<const reload::ServiceConfig> RunService::parseConfig(
    reload::IniConfig& ini, const reload::MasterConfig& /*master*/) {
  return parseProgramConfig(ini);
}

void RunService::checkEnvironment(const reload::LoadedConfig& config, reload::IniConfig& ini) {
  const auto& program = static_cast<const ProgramConfig&>(*config.service);
  struct stat st {};
  if (stat(program.workingDirectory.c_str(), &st) != 0)
    ini.fail("program", "working_directory", program.workingDirectory + ": " + std::strerror(errno));
  else if (!S_ISDIR(st.st_mode))
    ini.fail("program", "working_directory", program.workingDirectory + " is not a directory");
  if (program.argv.empty()) return;
  std::string why;
  if (resolveProgram(program.argv[0], programSearchPath(program, getenv("PATH")),
                     program.workingDirectory, why)
          .empty())
    ini.fail("program", "command", why);
}

int RunService::runWorker(const reload::WorkerContext& context) noexcept {
  return runKeeper(context, static_cast<const ProgramConfig&>(*context.config->service));
}

void RunService::addStatus(const reload::LoadedConfig& config, reload::JsonObject& status) {
  const auto& program = static_cast<const ProgramConfig&>(*config.service);
  reload::JsonArray argv;
  for (const auto& word : program.argv) argv.push(word);
  reload::JsonObject described;
  described.raw("argv", argv.str());
  described.add("working_directory", program.workingDirectory);
  described.add("ready", program.ready.toString());
  described.add("stop_signal", signalName(program.stopSignal));
  status.add("program", described);
}

}  // namespace run
