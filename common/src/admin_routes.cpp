// The admin endpoint: which listeners it serves, and its routes (/status,
// /metrics, /healthcheck, POST /reload and /reload-seamless).
#include "master_impl.h"

#include <time.h>

#include <algorithm>
#include <string>
#include <vector>

#include "reload/json.h"
#include "reload/listeners.h"
#include "reload/process.h"

namespace reload {

void MasterImpl::closeAdmin() { admin_.closeAll(); }

// The admin endpoint serves the admin listeners the next generation will
// have; called whenever that set changes, and before one of them closes.
void MasterImpl::serveAdmin() {
  if (state_.phase() == Phase::kStopping) {
    admin_.setListeners({});
    return;
  }
  std::vector<int> fds = listenerFds("admin", true);
  // Rebind mode: the old image's admin sockets share the address's
  // SO_REUSEPORT group until this image serves for good (through
  // probation); connections the kernel queues there are answered too.
  for (const auto& old : oldGenerationSockets_)
    if (old.role == "admin") fds.push_back(old.fd.get());
  admin_.setListeners(fds);
}

AdminResponse MasterImpl::handleAdmin(const AdminRequest& request) {
  auto text = [](int status, const std::string& body) {
    return AdminResponse{status, "text/plain; charset=utf-8", body + "\n"};
  };
  if (request.path == "/status" || request.path == "/metrics" || request.path == "/healthcheck") {
    if (request.method != "GET" && request.method != "HEAD")
      return text(405, "use GET for " + request.path);
    if (request.path == "/status") return AdminResponse{200, "application/json", statusJson() + "\n"};
    if (request.path == "/healthcheck") return text(200, "OK");
    return AdminResponse{200, "text/plain; version=0.0.4", metricsText()};
  }
  if (request.path == "/reload" || request.path == "/reload-seamless") {
    if (request.method != "POST") return text(405, "use POST for " + request.path);
    if (!config_->master.adminTokenFile.empty()) {
      auto it = request.headers.find("authorization");
      if (it == request.headers.end() || !bearerTokenMatches(it->second, config_->master.adminToken))
        return text(401, "missing or wrong bearer token");
    }
    ReloadKind kind = request.path == "/reload" ? ReloadKind::kHup : ReloadKind::kSeamless;
    uint64_t before = counters_.reloadsOk + counters_.reloadsFailed;
    requestReload(kind, "admin POST " + request.path);
    JsonObject body;
    body.add("accepted", reloadKindName(kind));
    body.add("reloads_before", before);
    return AdminResponse{202, "application/json", body.str() + "\n"};
  }
  return text(404, "no such admin resource; try /status, /metrics, POST /reload, POST /reload-seamless");
}

MasterSnapshot MasterImpl::snapshot() const {
  MasterSnapshot snap;
  snap.service = service_.name();
  snap.version = service_.version();
  snap.pid = pid_;
  snap.phase = state_.phase();
  snap.servingGeneration = state_.servingGeneration();
  snap.configPath = config_->path;
  snap.configDigest = config_->digest;
  snap.startedEpoch = startedEpoch_;
  snap.nowEpoch = time(nullptr);
  snap.nowMonotonic = monotonicSeconds();
  snap.workers = registry_.all();
  for (const auto& h : listeners_.held())
    snap.listeners.push_back(ListenerReport{h.listener.address.toString(), h.listener.role,
                                            stillServes(h.listener.fd.get())});
  snap.inheritListeners = config_->master.listenerHandoff == ListenerHandoff::kInherit;
  snap.counters = counters_;
  snap.logRecordsDropped = counters_shared_ ? counters_shared_->load(kLogRecordsDropped) : 0;
  snap.activeReload = state_.active();
  snap.pendingReload = state_.pending();
  snap.lastReload = lastReload_;
  snap.lastGood = lastGoodReport_;
  if (const auto& p = state_.probation()) {
    ProbationReport report;
    report.generation = p->generation;
    report.lastGood = p->lastGood;
    report.kind = reloadKindName(p->kind);
    report.secondsOn = snap.nowMonotonic - probationReadyAt_;
    report.secondsLeft = std::max(0.0, probationReadyAt_ + probationLimits_.seconds - snap.nowMonotonic);
    report.answers = counters_shared_->load(generationAnswersSlot(p->generation));
    report.serverErrors = counters_shared_->load(generationServerErrorsSlot(p->generation));
    snap.probation = report;
  }
  return snap;
}

std::string MasterImpl::statusJson() {
  JsonObject status = statusReport(snapshot());
  service_.addStatus(*config_, status);
  return status.str();
}

std::string MasterImpl::metricsText() {
  return metricsReport(snapshot()) + service_.metrics(*config_, *counters_shared_);
}

}  // namespace reload
