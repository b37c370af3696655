// moltd as a reload::Service: the object server plugged into the master.
#pragma once

#include <string>

#include "object_store.h"
#include "reload/master.h"

namespace server {

// `text` as a label value of the Prometheus text format (\\, \" and \n escaped).
inline std::string prometheusLabelValue(const std::string& text) {
  // The text format escapes exactly these three in a label value.
  std::string out;
  for (char c : text) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

class MoltdService : public reload::Service {
 public:
  std::string version() const override;
  std::string name() const override { return "moltd"; }
  // The ready pipe, SIGTERM to drain, standby probation, and SIGUSR2
  // forwarded (workers re-check the read-only flag and the volumes).
  reload::GenerationPolicy generationPolicy(const reload::LoadedConfig& /*config*/) const override {
    reload::GenerationPolicy policy;
    policy.recheckSignal = SIGUSR2;
    return policy;
  }
  std::shared_ptr<const reload::ServiceConfig> parseConfig(reload::IniConfig& ini,
                                                           const reload::MasterConfig& master) override;
  int runWorker(const reload::WorkerContext& context) noexcept override;
  // Every configured volume must be a directory that `user` (or moltd's own
  // user) can write; the access log must open for append.
  void checkEnvironment(const reload::LoadedConfig& config, reload::IniConfig& ini) override;
  // Scans the volumes and the read-only flag (in the master's probe child).
  std::string runCheck(const reload::LoadedConfig& config, const std::string& trigger) override;
  void applyCheck(const reload::LoadedConfig& config, const std::string& trigger,
                  const std::string& result) override;
  void checkFailed(const std::string& what) override;
  double checkInterval(const reload::LoadedConfig& config) const override;
  void addStatus(const reload::LoadedConfig& config, reload::JsonObject& status) override;
  std::string metrics(const reload::LoadedConfig& config,
                      const reload::SharedCounters& counters) override;

 private:
  bool readOnly_ = false;
  bool modeKnown_ = false;
  int64_t modeSince_ = 0;
  bool volumesKnown_ = false;
  std::vector<Volume> volumes_;  // as of the last check that finished
  int64_t checkedAt_ = 0;         // epoch seconds of that check
  uint64_t checksDone_ = 0;
  uint64_t checksFailed_ = 0;
  std::string lastCheckProblem_;  // why the last check that failed did
};

}  // namespace server
