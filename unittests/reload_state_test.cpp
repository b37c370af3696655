#include <boost/test/unit_test.hpp>
#include <stdexcept>

#include "reload/reload_state.h"

using reload::Phase;
using reload::ReloadDecision;
using reload::ReloadKind;
using reload::ReloadState;
using reload::WorkerExit;

namespace {

// A master serving generation 1 after its first start.
ReloadState serving() {
  ReloadState state;
  state.beginGeneration(ReloadKind::kNone);
  state.completeStart();
  return state;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ReloadStateTest)

BOOST_AUTO_TEST_CASE(the_first_start_serves_generation_one) {
  ReloadState state;
  BOOST_TEST((state.phase() == Phase::kStarting));
  BOOST_TEST(state.beginGeneration(ReloadKind::kNone) == 1u);
  BOOST_TEST((state.phase() == Phase::kStarting));
  BOOST_TEST(!state.maintainsWorkers());
  auto ended = state.completeStart();
  BOOST_TEST(ended.started.generation == 1u);
  BOOST_TEST(ended.previousServing == 0u);
  BOOST_TEST((state.phase() == Phase::kRunning));
  BOOST_TEST(state.servingGeneration() == 1u);
  BOOST_TEST(!state.starting());
  BOOST_TEST(state.maintainsWorkers());
}

BOOST_AUTO_TEST_CASE(a_failed_first_start_leaves_the_stop_to_the_master) {
  ReloadState state;
  state.beginGeneration(ReloadKind::kNone);
  auto ended = state.failStart();
  BOOST_TEST((ended.started.kind == ReloadKind::kNone));
  BOOST_TEST((state.phase() == Phase::kStarting));
  BOOST_TEST(state.servingGeneration() == 0u);
  state.stop();
  BOOST_TEST((state.phase() == Phase::kStopping));
}

BOOST_AUTO_TEST_CASE(a_reload_asked_for_while_running_becomes_the_active_one) {
  ReloadState state = serving();
  auto d = state.request(ReloadKind::kHup, false);
  BOOST_TEST((d.action == ReloadDecision::Action::kStart));
  BOOST_TEST((state.active() == ReloadKind::kHup));
  BOOST_TEST((state.pending() == ReloadKind::kNone));
}

BOOST_AUTO_TEST_CASE(validation_and_the_binary_check_are_phases_that_end_in_running) {
  ReloadState state = serving();
  state.request(ReloadKind::kSeamless, false);
  state.beginValidation();
  BOOST_TEST((state.phase() == Phase::kValidating));
  BOOST_TEST(state.maintainsWorkers());
  state.endCheck();
  state.beginPreflight();
  BOOST_TEST((state.phase() == Phase::kPreflight));
  state.endCheck();
  BOOST_TEST((state.phase() == Phase::kRunning));
  state.finishReload();
  BOOST_TEST((state.active() == ReloadKind::kNone));
}

BOOST_AUTO_TEST_CASE(ending_a_check_outside_one_changes_nothing) {
  ReloadState state = serving();
  state.beginGeneration(ReloadKind::kHup);
  state.endCheck();
  BOOST_TEST((state.phase() == Phase::kReloading));
  state.stop();
  state.endCheck();
  BOOST_TEST((state.phase() == Phase::kStopping));
}

BOOST_AUTO_TEST_CASE(a_reload_during_another_is_queued_and_coalesced) {
  ReloadState state = serving();
  state.request(ReloadKind::kHup, false);
  state.beginValidation();
  auto d = state.request(ReloadKind::kHup, false);
  BOOST_TEST((d.action == ReloadDecision::Action::kQueue));
  state.request(ReloadKind::kSeamless, false);
  state.request(ReloadKind::kHup, false);
  BOOST_TEST((state.pending() == ReloadKind::kSeamless));
  BOOST_TEST((state.active() == ReloadKind::kHup));  // the queued one does not replace it
  BOOST_TEST((state.takePending(false) == ReloadKind::kNone));  // not while validating
  BOOST_TEST((state.pending() == ReloadKind::kSeamless));
}

BOOST_AUTO_TEST_CASE(the_queued_reload_is_taken_once_the_master_is_steady) {
  ReloadState state = serving();
  state.request(ReloadKind::kHup, false);
  state.beginGeneration(ReloadKind::kHup);
  state.request(ReloadKind::kSeamless, false);
  state.completeStart();
  state.finishReload();
  BOOST_TEST((state.takePending(true) == ReloadKind::kNone));  // the synchronizer's report first
  BOOST_TEST((state.takePending(false) == ReloadKind::kSeamless));
  BOOST_TEST((state.pending() == ReloadKind::kNone));
  BOOST_TEST((state.takePending(false) == ReloadKind::kNone));
}

BOOST_AUTO_TEST_CASE(a_reload_waits_for_the_synchronizers_report) {
  ReloadState state = serving();
  auto d = state.request(ReloadKind::kHup, true);
  BOOST_TEST((d.action == ReloadDecision::Action::kQueue));
  BOOST_TEST((state.active() == ReloadKind::kNone));
  BOOST_TEST((state.pending() == ReloadKind::kHup));
}

BOOST_AUTO_TEST_CASE(stopping_ignores_reloads_and_forgets_the_start) {
  ReloadState state = serving();
  state.beginGeneration(ReloadKind::kHup);
  state.stop();
  BOOST_TEST(!state.starting());
  auto d = state.request(ReloadKind::kSeamless, false);
  BOOST_TEST((d.action == ReloadDecision::Action::kIgnore));
  BOOST_TEST((state.pending() == ReloadKind::kNone));
  BOOST_TEST(!state.maintainsWorkers());
}

BOOST_AUTO_TEST_CASE(a_sighup_generation_replaces_the_serving_one) {
  ReloadState state = serving();
  state.request(ReloadKind::kHup, false);
  BOOST_TEST(state.beginGeneration(ReloadKind::kHup) == 2u);
  BOOST_TEST((state.phase() == Phase::kReloading));
  BOOST_TEST(state.maintainsWorkers());  // generation 1 still serves
  auto ended = state.completeStart();
  BOOST_TEST(ended.previousServing == 1u);
  BOOST_TEST((ended.started.kind == ReloadKind::kHup));
  BOOST_TEST(state.servingGeneration() == 2u);
  BOOST_TEST((state.phase() == Phase::kRunning));
}

BOOST_AUTO_TEST_CASE(a_failed_sighup_keeps_the_old_generation_and_uses_up_its_number) {
  ReloadState state = serving();
  state.beginGeneration(ReloadKind::kHup);
  auto ended = state.failStart();
  BOOST_TEST(ended.started.generation == 2u);
  BOOST_TEST((state.phase() == Phase::kRunning));
  BOOST_TEST(state.servingGeneration() == 1u);
  BOOST_TEST(state.beginGeneration(ReloadKind::kHup) == 3u);
}

BOOST_AUTO_TEST_CASE(a_new_image_stays_handing_over_until_its_generation_is_ready) {
  ReloadState state;
  state.adoptHandoff(4, 4, ReloadKind::kHup);
  BOOST_TEST((state.phase() == Phase::kHandoff));
  BOOST_TEST((state.active() == ReloadKind::kSeamless));
  BOOST_TEST(!state.maintainsWorkers());  // the old workers belong to the old image's count
  BOOST_TEST(state.beginGeneration(ReloadKind::kSeamless) == 5u);
  BOOST_TEST((state.phase() == Phase::kHandoff));
  BOOST_TEST((state.takePending(false) == ReloadKind::kNone));
  auto ended = state.completeStart();
  BOOST_TEST(ended.previousServing == 4u);
  BOOST_TEST(state.servingGeneration() == 5u);
  BOOST_TEST((state.phase() == Phase::kRunning));
  state.finishReload();
  BOOST_TEST((state.takePending(false) == ReloadKind::kHup));
}

BOOST_AUTO_TEST_CASE(a_new_image_that_fails_hands_the_old_generation_back) {
  ReloadState state;
  state.adoptHandoff(4, 4, ReloadKind::kNone);
  state.beginGeneration(ReloadKind::kSeamless);  // even one whose workers never started
  auto ended = state.failStart();
  BOOST_TEST((ended.started.kind == ReloadKind::kSeamless));
  BOOST_TEST((state.phase() == Phase::kRunning));
  BOOST_TEST(state.servingGeneration() == 4u);
  BOOST_TEST(state.lastGeneration() == 5u);
}

BOOST_AUTO_TEST_CASE(an_unexpected_error_abandons_the_active_reload_but_not_a_handoff) {
  ReloadState state = serving();
  BOOST_TEST(!state.abandonActiveReload());  // none active
  state.request(ReloadKind::kHup, false);
  state.beginValidation();
  BOOST_TEST(state.abandonActiveReload());
  BOOST_TEST((state.phase() == Phase::kRunning));
  ReloadState image;
  image.adoptHandoff(1, 1, ReloadKind::kNone);
  BOOST_TEST(!image.abandonActiveReload());
  BOOST_TEST((image.phase() == Phase::kHandoff));
}

BOOST_AUTO_TEST_CASE(worker_exits_are_judged_against_the_serving_and_starting_generations) {
  ReloadState state = serving();
  state.beginGeneration(ReloadKind::kHup);
  BOOST_TEST((state.workerExit(false, 1) == WorkerExit::kRespawn));
  BOOST_TEST((state.workerExit(false, 2) == WorkerExit::kFailStart));
  BOOST_TEST((state.workerExit(true, 1) == WorkerExit::kIgnore));
  BOOST_TEST((state.workerExit(false, 7) == WorkerExit::kIgnore));
  state.stop();
  BOOST_TEST((state.workerExit(false, 1) == WorkerExit::kIgnore));
}

BOOST_AUTO_TEST_CASE(ending_a_start_that_was_never_begun_is_a_logic_error) {
  ReloadState state;
  BOOST_CHECK_THROW(state.completeStart(), std::logic_error);
  BOOST_CHECK_THROW(state.failStart(), std::logic_error);
}

BOOST_AUTO_TEST_SUITE_END()
