#include <signal.h>

#include <boost/test/unit_test.hpp>

#include "reload/probation.h"
#include "reload/reload_state.h"

using reload::AnswerCounts;
using reload::Phase;
using reload::ProbationLimits;
using reload::ProbationVerdict;
using reload::ReloadDecision;
using reload::ReloadKind;
using reload::WorkerEnd;

BOOST_AUTO_TEST_SUITE(ProbationTest)

BOOST_AUTO_TEST_CASE(every_reload_but_the_first_start_is_on_probation) {
  BOOST_TEST(reload::probationSeconds(ReloadKind::kNone, 10) == 0);
  BOOST_TEST(reload::probationSeconds(ReloadKind::kHup, 10) == 10);
  BOOST_TEST(reload::probationSeconds(ReloadKind::kSeamless, 2.5) == 2.5);
  BOOST_TEST(reload::probationSeconds(ReloadKind::kHup, 0) == 0);
  BOOST_TEST(reload::probationSeconds(ReloadKind::kSeamless, 0) == 0);
}

BOOST_AUTO_TEST_CASE(any_end_the_master_did_not_ask_for_fails_probation) {
  for (int sig = 1; sig < 32; ++sig) {
    WorkerEnd end{true, sig, 0, false};
    auto why = reload::exitFailsProbation(end);
    BOOST_TEST_REQUIRE(why.has_value(), sig);
    BOOST_TEST(why->rfind("killed by SIG", 0) == 0, *why);
    end.askedToStop = true;
    BOOST_TEST(!reload::exitFailsProbation(end).has_value());
  }
  for (int code = 0; code < 256; ++code) {
    WorkerEnd end{false, 0, code, false};
    auto why = reload::exitFailsProbation(end);
    BOOST_TEST_REQUIRE(why.has_value(), code);
    if (code == 0) BOOST_TEST(why->find("stopped being ready") != std::string::npos);
    else BOOST_TEST(*why == "exited with status " + std::to_string(code));
    end.askedToStop = true;
    BOOST_TEST(!reload::exitFailsProbation(end).has_value());
  }
  BOOST_TEST(*reload::exitFailsProbation(WorkerEnd{true, SIGSEGV, 0, false}) == "killed by SIGSEGV");
}

BOOST_AUTO_TEST_CASE(the_5xx_share_is_judged_past_the_minimum_count) {
  ProbationLimits limits{10, 0.5, 20};
  for (uint64_t total = 0; total <= 60; ++total)
    for (uint64_t errors = 0; errors <= total; ++errors) {
      bool fails = reload::answersFailProbation(AnswerCounts{total, errors}, limits).has_value();
      bool expected = total >= 20 && errors * 2 > total;
      BOOST_TEST(fails == expected, total << " answers, " << errors << " 5xx");
    }
  ProbationLimits strict{10, 0, 1};
  BOOST_TEST(reload::answersFailProbation(AnswerCounts{1, 1}, strict).has_value());
  BOOST_TEST(!reload::answersFailProbation(AnswerCounts{1, 0}, strict).has_value());
  ProbationLimits lax{10, 1, 1};
  BOOST_TEST(!reload::answersFailProbation(AnswerCounts{100, 100}, lax).has_value());
  auto why = reload::answersFailProbation(AnswerCounts{40, 40}, limits);
  BOOST_TEST(*why == "40 of 40 answers were 5xx (100%, limit 50%)");
}

BOOST_AUTO_TEST_CASE(a_heartbeat_older_than_the_bound_fails_and_none_is_not_judged) {
  const int64_t now = 1000000;
  for (int64_t age = 0; age <= 5000; age += 50) {
    auto why = reload::heartbeatFailsProbation(now - age, now);
    BOOST_TEST(why.has_value() == (age > reload::kHeartbeatTimeoutMs), age);
    BOOST_TEST(!reload::heartbeatFailsProbation(0, now + age).has_value());
    BOOST_TEST(reload::heartbeatFailsProbation(now - age, now, 1000).has_value() == (age > 1000));
  }
  BOOST_TEST(*reload::heartbeatFailsProbation(now - 2500, now) ==
             "stopped turning its loop: no turn for 2.5 s (limit 2.0 s)");
}

BOOST_AUTO_TEST_CASE(probation_passes_at_its_end_unless_a_failure_was_seen) {
  BOOST_TEST((reload::judgeProbation(5, 10, false) == ProbationVerdict::kGoOn));
  BOOST_TEST((reload::judgeProbation(10, 10, false) == ProbationVerdict::kPass));
  BOOST_TEST((reload::judgeProbation(11, 10, false) == ProbationVerdict::kPass));
  BOOST_TEST((reload::judgeProbation(5, 10, true) == ProbationVerdict::kFail));
  BOOST_TEST((reload::judgeProbation(11, 10, true) == ProbationVerdict::kFail));
}

BOOST_AUTO_TEST_CASE(a_rollback_resumes_what_stands_by_and_runs_the_kept_binary) {
  for (ReloadKind kind : {ReloadKind::kHup, ReloadKind::kSeamless})
    for (size_t alive : {0, 1, 4})
      for (bool binary : {false, true}) {
        auto plan = reload::planRollback(kind, alive, binary);
        BOOST_TEST(plan.resumeLastGood == (alive > 0));
        BOOST_TEST(plan.startLastGood == (alive == 0));
        BOOST_TEST(plan.execLastGoodBinary == (kind == ReloadKind::kSeamless && binary));
      }
}

BOOST_AUTO_TEST_CASE(a_reload_queued_during_probation_runs_after_a_pass_only) {
  for (ReloadKind pending : {ReloadKind::kNone, ReloadKind::kHup, ReloadKind::kSeamless}) {
    BOOST_TEST((reload::pendingAfterProbation(ProbationVerdict::kPass, pending) == pending));
    BOOST_TEST((reload::pendingAfterProbation(ProbationVerdict::kFail, pending) == ReloadKind::kNone));
  }
  for (ReloadKind requested : {ReloadKind::kHup, ReloadKind::kSeamless}) {
    auto d = reload::decideReload(Phase::kProbation, false, ReloadKind::kNone, requested);
    BOOST_TEST((d.action == ReloadDecision::Action::kQueue));
    BOOST_TEST((d.pending == requested));
    BOOST_TEST(!reload::pendingMayStart(Phase::kProbation, false, requested));
  }
  BOOST_TEST(!reload::maintainsWorkersIn(Phase::kProbation, 3));
}

BOOST_AUTO_TEST_CASE(the_state_goes_through_probation_to_a_pass_or_a_rollback) {
  for (bool pass : {true, false}) {
    reload::ReloadState state;
    state.beginGeneration(ReloadKind::kNone);
    state.completeStart();
    BOOST_TEST_REQUIRE((state.request(ReloadKind::kHup, false).action == ReloadDecision::Action::kStart));
    uint64_t next = state.beginGeneration(ReloadKind::kHup);
    state.completeStart();
    state.beginProbation(1);
    BOOST_TEST((state.phase() == Phase::kProbation));
    BOOST_TEST(state.probation()->generation == next);
    BOOST_TEST(state.probation()->lastGood == 1u);
    BOOST_TEST((state.probation()->kind == ReloadKind::kHup));
    BOOST_TEST(!state.abandonActiveReload());
    BOOST_TEST((state.request(ReloadKind::kSeamless, false).action == ReloadDecision::Action::kQueue));
    BOOST_TEST((state.takePending(false) == ReloadKind::kNone));
    auto ended = pass ? state.passProbation() : state.failProbation();
    BOOST_TEST(ended.generation == next);
    BOOST_TEST((state.phase() == Phase::kRunning));
    BOOST_TEST(state.servingGeneration() == (pass ? next : 1u));
    BOOST_TEST(!state.probation().has_value());
  }
  reload::ReloadState fresh;
  BOOST_CHECK_THROW(fresh.beginProbation(1), std::logic_error);
  BOOST_CHECK_THROW(fresh.passProbation(), std::logic_error);
}

BOOST_AUTO_TEST_CASE(stopping_ends_probation) {
  reload::ReloadState state;
  state.beginGeneration(ReloadKind::kNone);
  state.completeStart();
  state.beginGeneration(ReloadKind::kHup);
  state.completeStart();
  state.beginProbation(1);
  state.stop();
  BOOST_TEST(!state.probation().has_value());
  BOOST_TEST((state.request(ReloadKind::kHup, false).action == ReloadDecision::Action::kIgnore));
}

BOOST_AUTO_TEST_SUITE_END()
