#include "run_service.h"

#include <sys/stat.h>
#include <unistd.h>

#include <signal.h>

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

std::shared_ptr<const ProgramConfig> RunService::parse(reload::IniConfig& ini,
                                                       const reload::MasterConfig& /*master*/) {
  return parseProgramConfig(ini);
}

void RunService::checkEnvironment(const reload::LoadedConfig& config, reload::IniConfig& ini) {
  const auto& program = configOf(config);
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

reload::GenerationPolicy RunService::policy(const ProgramConfig& program) const {
  const auto& ready = program.ready;
  reload::GenerationPolicy policy;
  policy.drainSignal = SIGTERM;
  policy.probation = reload::ProbationStyle::kCanary;
  auto& check = policy.readiness;
  switch (ready.kind) {
    case Readiness::Kind::kNotify:
      check.mode = reload::Readiness::kNotify;
      break;
    case Readiness::Kind::kDelay:
      check.mode = reload::Readiness::kDelay;
      check.delaySeconds = ready.delaySeconds;
      break;
    case Readiness::Kind::kTcp:
    case Readiness::Kind::kHttp:
      check.mode = ready.kind == Readiness::Kind::kTcp ? reload::Readiness::kConnectProbe
                                                       : reload::Readiness::kHttpProbe;
      check.probeAddress.kind = reload::ListenAddress::Kind::kTcp;
      check.probeAddress.host = ready.host;
      check.probeAddress.port = ready.port;
      // Numeric, parsed by validation: nothing is looked up.
      check.probeAddress.resolved = ready.address;
      check.probeAddress.resolvedLength = ready.addressLength;
      check.probePath = ready.path;
      check.probeIntervalSeconds = 0.05;
      break;
  }
  return policy;
}

int RunService::serve(const reload::WorkerContext& context, const ProgramConfig& program) noexcept {
  return runKeeper(context, program);
}

void RunService::addStatus(const reload::LoadedConfig& config, reload::JsonObject& status) {
  const auto& program = configOf(config);
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
