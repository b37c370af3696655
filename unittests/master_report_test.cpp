#include <boost/test/unit_test.hpp>
#include <cctype>
#include <string>

#include "reload/config_check_line.h"
#include "reload/master_report.h"

using reload::MasterSnapshot;
using reload::metricsReport;
using reload::statusReport;

namespace {

MasterSnapshot sample() {
  MasterSnapshot snap;
  snap.service = "moltd";
  snap.version = "1.2.3";
  snap.pid = 4242;
  snap.phase = reload::Phase::kRunning;
  snap.servingGeneration = 7;
  snap.configPath = "/etc/molt/moltd.conf";
  snap.startedEpoch = 1000;
  snap.nowEpoch = 1060;
  snap.nowMonotonic = 500;
  reload::WorkerInfo ready;
  ready.pid = 11;
  ready.generation = 7;
  ready.state = reload::WorkerState::kReady;
  reload::WorkerInfo old;
  old.pid = 9;
  old.generation = 6;
  old.state = reload::WorkerState::kDraining;
  old.drainStartedAt = 497.5;
  snap.workers = {ready, old};
  snap.listeners = {{"127.0.0.1:8080", "public", true}, {"unix:/run/a\"b", "public", false}};
  snap.counters.reloadsOk = 6;
  snap.counters.drainKills = 1;
  snap.pendingReload = reload::ReloadKind::kHup;
  return snap;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(MasterReportTest)

BOOST_AUTO_TEST_CASE(status_separates_draining_workers_and_ages_them) {
  std::string status = reload::statusReport(sample()).str();
  BOOST_TEST(contains(status, "\"generation\":7"));
  BOOST_TEST(contains(status, "\"uptime_seconds\":60"));
  BOOST_TEST(contains(status, "\"workers\":[{\"pid\":11,\"generation\":7,\"slot\":0,\"state\":\"ready\"}]"));
  BOOST_TEST(contains(status, "\"draining_workers\":[{\"pid\":9,\"generation\":6"));
  BOOST_TEST(contains(status, "\"draining_seconds\":2.5"));
  BOOST_TEST(contains(status, "\"pending_reload\":\"reload\""));
  BOOST_TEST(contains(status, "\"last_reload\":null"));
}

BOOST_AUTO_TEST_CASE(status_and_metrics_show_a_listener_that_stopped_listening) {
  MasterSnapshot snap = sample();
  std::string status = reload::statusReport(snap).str();
  BOOST_TEST(contains(status, "{\"address\":\"127.0.0.1:8080\",\"role\":\"public\",\"listening\":true}"));
  BOOST_TEST(contains(status, "\"listening\":false"));
  std::string metrics = reload::metricsReport(snap);
  BOOST_TEST(contains(metrics, "moltd_listener_listening{address=\"127.0.0.1:8080\",role=\"public\"} 1\n"));
  BOOST_TEST(contains(metrics, "moltd_listener_listening{address=\"unix:/run/a\\\"b\",role=\"public\"} 0\n"));
}

BOOST_AUTO_TEST_CASE(metrics_count_workers_and_reloads) {
  MasterSnapshot snap = sample();
  snap.lastReload = reload::ReloadRecord{"seamless", "failed", "bind: in use", 12.5, 1050, 7};
  std::string metrics = reload::metricsReport(snap);
  BOOST_TEST(contains(metrics, "moltd_workers 1\n"));
  BOOST_TEST(contains(metrics, "moltd_draining_workers 1\n"));
  BOOST_TEST(contains(metrics, "moltd_reloads_total 6\n"));
  BOOST_TEST(contains(metrics, "moltd_drain_kills_total 1\n"));
  BOOST_TEST(contains(metrics, "# TYPE moltd_reloads_total counter\n"));
  std::string status = reload::statusReport(snap).str();
  BOOST_TEST(contains(status, "\"last_reload\":{\"kind\":\"seamless\",\"result\":\"failed\",\"reason\":\"bind: in use\""));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(ServiceNameTest)

// The library names nothing of its own: "service" in /status and every
// metric's prefix are the service's name, made a valid Prometheus name.
BOOST_AUTO_TEST_CASE(status_and_metrics_carry_the_services_name) {
  for (const std::string name : {"moltd", "molt-run", "app.v2", "9lives"}) {
    MasterSnapshot snap;
    snap.service = name;
    snap.version = "1";
    BOOST_TEST(statusReport(snap).str().find("\"service\":\"" + name + "\"") != std::string::npos);
    std::string prefix = reload::metricPrefix(name);
    std::string metrics = metricsReport(snap);
    BOOST_TEST(metrics.find(prefix + "reloads_total 0\n") != std::string::npos, metrics);
    for (size_t at = metrics.find("# TYPE "); at != std::string::npos; at = metrics.find("# TYPE ", at + 1))
      BOOST_TEST(metrics.compare(at + 7, prefix.size(), prefix) == 0, metrics.substr(at, 60));
    for (char c : prefix) BOOST_TEST((std::isalnum(static_cast<unsigned char>(c)) || c == '_'));
    BOOST_TEST(!std::isdigit(static_cast<unsigned char>(prefix[0])));
    if (name != "moltd") BOOST_TEST(metrics.find("moltd") == std::string::npos);
  }
  BOOST_TEST(reload::metricPrefix("molt-run") == "molt_run_");
  BOOST_TEST(reload::metricPrefix("moltd") == "moltd_");
}

BOOST_AUTO_TEST_CASE(check_line_names_the_service) {
  std::string version;
  std::string line = reload::formatConfigCheckLine("molt-run", "1.0", std::string(64, 'a'));
  BOOST_TEST(line == "molt-run 1.0 configuration ok: sha256:" + std::string(64, 'a'));
  BOOST_TEST(reload::configCheckLineProblem("molt-run", line, std::string(64, 'a'), version).empty());
  // Another service's line proves nothing for this one.
  BOOST_TEST(!reload::configCheckLineProblem("moltd", line, std::string(64, 'a'), version).empty());
}

BOOST_AUTO_TEST_SUITE_END()
