#include <boost/test/unit_test.hpp>

#include "reload/reload_policy.h"

using reload::Phase;
using reload::ReloadDecision;
using reload::ReloadKind;
using reload::WorkerExit;

BOOST_AUTO_TEST_SUITE(ReloadPolicyTest)

BOOST_AUTO_TEST_CASE(a_reload_starts_from_a_steady_state) {
  auto d = reload::decideReload(Phase::kRunning, false, ReloadKind::kNone, ReloadKind::kHup);
  BOOST_TEST((d.action == ReloadDecision::Action::kStart));
  BOOST_TEST((d.pending == ReloadKind::kNone));
}

BOOST_AUTO_TEST_CASE(a_reload_during_another_is_queued) {
  for (Phase p : {Phase::kStarting, Phase::kValidating, Phase::kReloading, Phase::kPreflight,
                  Phase::kHandoff}) {
    auto d = reload::decideReload(p, false, ReloadKind::kNone, ReloadKind::kHup);
    BOOST_TEST((d.action == ReloadDecision::Action::kQueue), reload::phaseName(p));
    BOOST_TEST((d.pending == ReloadKind::kHup));
  }
}

BOOST_AUTO_TEST_CASE(a_reload_waits_for_the_synchronizers_report) {
  auto d = reload::decideReload(Phase::kRunning, true, ReloadKind::kNone, ReloadKind::kSeamless);
  BOOST_TEST((d.action == ReloadDecision::Action::kQueue));
  BOOST_TEST(!reload::pendingMayStart(Phase::kRunning, true, ReloadKind::kSeamless));
  BOOST_TEST(reload::pendingMayStart(Phase::kRunning, false, ReloadKind::kSeamless));
}

BOOST_AUTO_TEST_CASE(a_reload_waits_below_the_draining_bound) {
  for (int limit = 1; limit <= 8; ++limit)
    for (size_t draining = 0; draining <= 10; ++draining)
      BOOST_TEST(reload::drainingAllowsReload(draining, limit) ==
                     (draining < static_cast<size_t>(limit)),
                 draining << " draining, limit " << limit);
}

BOOST_AUTO_TEST_CASE(queued_reloads_coalesce_to_the_strongest) {
  auto d = reload::decideReload(Phase::kReloading, false, ReloadKind::kSeamless, ReloadKind::kHup);
  BOOST_TEST((d.pending == ReloadKind::kSeamless));
  d = reload::decideReload(Phase::kReloading, false, ReloadKind::kHup, ReloadKind::kSeamless);
  BOOST_TEST((d.pending == ReloadKind::kSeamless));
  d = reload::decideReload(Phase::kReloading, false, ReloadKind::kHup, ReloadKind::kHup);
  BOOST_TEST((d.pending == ReloadKind::kHup));
}

BOOST_AUTO_TEST_CASE(reloads_while_stopping_are_ignored) {
  auto d = reload::decideReload(Phase::kStopping, false, ReloadKind::kNone, ReloadKind::kSeamless);
  BOOST_TEST((d.action == ReloadDecision::Action::kIgnore));
  BOOST_TEST((d.pending == ReloadKind::kNone));
  BOOST_TEST(!reload::pendingMayStart(Phase::kStopping, false, ReloadKind::kHup));
}

BOOST_AUTO_TEST_CASE(nothing_queued_nothing_starts) {
  BOOST_TEST(!reload::pendingMayStart(Phase::kRunning, false, ReloadKind::kNone));
}

BOOST_AUTO_TEST_CASE(a_starting_generation_fails_when_one_of_its_workers_exits) {
  BOOST_TEST((reload::decideWorkerExit(Phase::kReloading, false, 3, 2, 3) == WorkerExit::kFailStart));
  BOOST_TEST((reload::decideWorkerExit(Phase::kHandoff, false, 3, 2, 3) == WorkerExit::kFailStart));
}

BOOST_AUTO_TEST_CASE(a_serving_worker_is_respawned_in_any_phase_but_stopping) {
  BOOST_TEST((reload::decideWorkerExit(Phase::kRunning, false, 2, 2, std::nullopt) == WorkerExit::kRespawn));
  BOOST_TEST((reload::decideWorkerExit(Phase::kReloading, false, 2, 2, 3) == WorkerExit::kRespawn));
  BOOST_TEST((reload::decideWorkerExit(Phase::kStopping, false, 2, 2, std::nullopt) == WorkerExit::kIgnore));
}

BOOST_AUTO_TEST_CASE(draining_and_stale_workers_are_forgotten) {
  BOOST_TEST((reload::decideWorkerExit(Phase::kRunning, true, 2, 2, std::nullopt) == WorkerExit::kIgnore));
  BOOST_TEST((reload::decideWorkerExit(Phase::kRunning, false, 1, 2, std::nullopt) == WorkerExit::kIgnore));
}

BOOST_AUTO_TEST_CASE(respawn_backoff_doubles_up_to_ten_seconds) {
  BOOST_TEST(reload::respawnDelay(0) == 0.1);
  BOOST_TEST(reload::respawnDelay(1) == 0.2);
  BOOST_TEST(reload::respawnDelay(3) == 0.8);
  BOOST_TEST(reload::respawnDelay(20) == 10.0);
}

BOOST_AUTO_TEST_CASE(workers_are_maintained_only_while_a_generation_serves) {
  BOOST_TEST(reload::maintainsWorkersIn(Phase::kRunning, 1));
  BOOST_TEST(reload::maintainsWorkersIn(Phase::kValidating, 1));
  BOOST_TEST(reload::maintainsWorkersIn(Phase::kReloading, 1));
  BOOST_TEST(reload::maintainsWorkersIn(Phase::kPreflight, 1));
  BOOST_TEST(!reload::maintainsWorkersIn(Phase::kHandoff, 1));
  BOOST_TEST(!reload::maintainsWorkersIn(Phase::kStarting, 1));
  BOOST_TEST(!reload::maintainsWorkersIn(Phase::kStopping, 1));
  BOOST_TEST(!reload::maintainsWorkersIn(Phase::kRunning, 0));
}

BOOST_AUTO_TEST_SUITE_END()
