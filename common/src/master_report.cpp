#include "reload/master_report.h"

#include <cctype>
#include <sstream>

namespace reload {

std::string metricPrefix(const std::string& service) {
  // Prometheus names are [a-zA-Z_:][a-zA-Z0-9_:]*: "molt-run" is "molt_run_".
  std::string prefix;
  for (char c : service) prefix += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  if (prefix.empty() || std::isdigit(static_cast<unsigned char>(prefix[0]))) prefix = "_" + prefix;
  return prefix + "_";
}

JsonObject statusReport(const MasterSnapshot& snap) {
  JsonObject s;
  s.add("service", snap.service);
  s.add("version", snap.version);
  s.add("pid", static_cast<int64_t>(snap.pid));
  s.add("state", phaseName(snap.phase));
  s.add("generation", snap.servingGeneration);
  s.add("config", snap.configPath);
  s.add("config_digest", snap.configDigest);
  s.add("started_at", snap.startedEpoch);
  s.add("uptime_seconds", snap.nowEpoch - snap.startedEpoch);
  JsonArray workers, draining;
  for (const auto& w : snap.workers) {
    JsonObject o;
    o.add("pid", static_cast<int64_t>(w.pid));
    o.add("generation", w.generation);
    o.add("slot", w.slot);
    o.add("state", workerStateName(w.state));
    if (w.state == WorkerState::kDraining) {
      o.add("draining_seconds", w.drainStartedAt > 0 ? snap.nowMonotonic - w.drainStartedAt : 0.0);
      draining.push(o);
    } else {
      workers.push(o);
    }
  }
  s.raw("workers", workers.str());
  s.raw("draining_workers", draining.str());
  JsonArray listeners;
  for (const auto& l : snap.listeners) {
    JsonObject o;
    o.add("address", l.address);
    o.add("role", l.role);
    o.add("listening", l.listening);
    listeners.push(o);
  }
  s.raw("listeners", listeners.str());
  s.add("listener_handoff", snap.inheritListeners ? "inherit" : "rebind");
  s.add("reloads", snap.counters.reloadsOk);
  s.add("reloads_failed", snap.counters.reloadsFailed);
  s.add("worker_restarts", snap.counters.workerRestarts);
  s.add("drain_kills", snap.counters.drainKills);
  s.add("rollbacks", snap.counters.rollbacks);
  s.add("reload_in_progress", reloadKindName(snap.activeReload));
  s.add("pending_reload", reloadKindName(snap.pendingReload));
  if (snap.lastReload) {
    const ReloadRecord& last = *snap.lastReload;
    JsonObject r;
    r.add("kind", last.kind);
    r.add("result", last.result);
    r.add("reason", last.reason);
    r.add("duration_ms", last.durationMs);
    r.add("at", last.finishedEpoch);
    r.add("generation", last.generation);
    s.add("last_reload", r);
  } else {
    s.raw("last_reload", "null");
  }
  if (snap.probation) {
    const ProbationReport& p = *snap.probation;
    JsonObject o;
    o.add("generation", p.generation);
    o.add("last_good_generation", p.lastGood);
    o.add("kind", p.kind);
    o.add("seconds_on", p.secondsOn);
    o.add("seconds_left", p.secondsLeft);
    o.add("answers", p.answers);
    o.add("answers_5xx", p.serverErrors);
    s.add("probation", o);
  } else {
    s.raw("probation", "null");
  }
  JsonObject start;
  start.add("from", snap.lastGood.startedFrom);
  start.add("note", snap.lastGood.startNote);
  s.add("start", start);
  if (!snap.lastGood.dir.empty()) {
    JsonObject record;
    record.add("dir", snap.lastGood.dir);
    record.add("state", snap.lastGood.state);
    record.add("version", snap.lastGood.version);
    record.add("config_digest", snap.lastGood.configDigest);
    record.add("why", snap.lastGood.why);
    record.add("error", snap.lastGood.error);
    s.add("last_good_record", record);
  } else {
    s.raw("last_good_record", "null");
  }
  return s;
}

std::string metricsReport(const MasterSnapshot& snap) {
  std::ostringstream m;
  const std::string prefix = metricPrefix(snap.service);
  auto gauge = [&](const std::string& name, const char* help, double value) {
    m << "# HELP " << name << " " << help << "\n# TYPE " << name << " gauge\n"
      << name << " " << value << "\n";
  };
  auto counter = [&](const std::string& name, const char* help, uint64_t value) {
    m << "# HELP " << name << " " << help << "\n# TYPE " << name << " counter\n"
      << name << " " << value << "\n";
  };
  size_t draining = 0, standby = 0;
  for (const auto& w : snap.workers) {
    if (w.state == WorkerState::kDraining) ++draining;
    if (w.state == WorkerState::kStandby) ++standby;
  }
  gauge(prefix + "generation", "Generation of the workers now serving.",
        static_cast<double>(snap.servingGeneration));
  gauge(prefix + "workers", "Workers of the serving generation.",
        static_cast<double>(snap.workers.size() - draining - standby));
  gauge(prefix + "standby_workers",
        "Workers of the last good generation standing by while a reload is on probation.",
        static_cast<double>(standby));
  gauge(prefix + "probation", "1 while a reload's generation is on probation.",
        snap.probation ? 1 : 0);
  gauge(prefix + "draining_workers", "Old workers still finishing their requests.",
        static_cast<double>(draining));
  gauge(prefix + "uptime_seconds", "Seconds since the master first started.",
        static_cast<double>(snap.nowEpoch - snap.startedEpoch));
  m << "# HELP " << prefix << "listener_listening Whether a listening socket the master holds still "
       "listens (1) or was shut down by one of its holders (0).\n"
       "# TYPE " << prefix << "listener_listening gauge\n";
  for (const auto& l : snap.listeners)
    m << prefix << "listener_listening{address=\"" << prometheusLabel(l.address) << "\",role=\""
      << prometheusLabel(l.role) << "\"} " << (l.listening ? 1 : 0) << "\n";
  counter(prefix + "reloads_total", "Reloads that completed.", snap.counters.reloadsOk);
  counter(prefix + "reloads_failed_total", "Reloads refused or failed.", snap.counters.reloadsFailed);
  counter(prefix + "worker_restarts_total", "Workers respawned after an unexpected exit.",
          snap.counters.workerRestarts);
  counter(prefix + "log_dropped_records_total",
          "Log records dropped, by every process, because the log took nothing while "
          "64 KiB of records waited for it.",
          snap.logRecordsDropped);
  counter(prefix + "drain_kills_total", "Old workers killed at a drain deadline.",
          snap.counters.drainKills);
  counter(prefix + "reload_rollbacks_total",
          "Reloads whose generation failed its probation and was rolled back.",
          snap.counters.rollbacks);
  return m.str();
}

std::string prometheusLabel(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace reload
