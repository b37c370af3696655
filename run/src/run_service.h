// molt-run as a reload::Service: any program that takes its sockets by
// systemd's convention, supervised and upgraded by the reload library.
#pragma once

#include <string>

#include "program_config.h"
#include "reload/master.h"

namespace run {

std::string runVersion();

class RunService : public reload::TypedService<ProgramConfig> {
 public:
  std::string version() const override;
  std::string name() const override { return "molt-run"; }
  // Any program: TCP, Unix stream and UDP sockets.
  reload::ListenerKinds listenerKinds() const override {
    reload::ListenerKinds kinds;
    kinds.udp = true;
    return kinds;
  }
  // A SIGUSR1 upgrades molt-run alone: the program's processes are adopted
  // by the new image, never restarted; SIGHUP is the program's upgrade.
  reload::SeamlessReload seamlessReload() const override {
    return reload::SeamlessReload::kAdoptWorkers;
  }
  std::shared_ptr<const ProgramConfig> parse(reload::IniConfig& ini,
                                             const reload::MasterConfig& master) override;
  // The command must resolve to an executable file and the working
  // directory must exist, as the program's user will see them.
  void checkEnvironment(const reload::LoadedConfig& config, reload::IniConfig& ini) override;
  int serve(const reload::WorkerContext& context, const ProgramConfig& program) noexcept override;
  // The master watches [program] ready (READY=1 comes through the worker),
  // tells a worker to stop with SIGTERM (the worker passes stop_signal on),
  // and runs probation as a canary: the old generation is never paused.
  reload::GenerationPolicy policy(const ProgramConfig& program) const override;
  void addStatus(const reload::LoadedConfig& config, reload::JsonObject& status) override;
};

}  // namespace run
