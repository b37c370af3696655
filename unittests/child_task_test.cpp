#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <stdexcept>
#include <string>

#include "reload/child_task.h"
#include "reload/event_loop.h"
#include "reload/process.h"

using reload::ChildTask;

namespace {

// Runs the loop as the master does until the task's child exits, bounded at
// 20 s. Returns the wait status.
int runToExit(reload::EventLoop& loop, ChildTask& task) {
  const int64_t giveUpAt = reload::monotonicMs() + 20000;
  while (reload::monotonicMs() < giveUpAt) {
    loop.runOnce(20);
    int status = 0;
    if (waitpid(task.pid(), &status, WNOHANG) == task.pid()) return status;
  }
  task.kill();
  int status = 0;
  waitpid(task.pid(), &status, 0);
  BOOST_FAIL("child did not end within 20 s");
  return status;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ChildTaskTest)

BOOST_AUTO_TEST_CASE(ChildThatWritesAndExitsReportsItsOutputAndStatus) {
  reload::EventLoop loop;
  int timeouts = 0;
  ChildTask task(loop, [&] { ++timeouts; });
  task.start("test-child", "a test", 1024, reload::monotonicMs() + 10000, [](int out) {
    return reload::writeAll(out, "OK\nresult") ? 3 : 1;
  });
  BOOST_TEST(task.running());
  BOOST_TEST(task.pid() > 0);
  int status = runToExit(loop, task);
  auto outcome = task.finish(status);
  BOOST_TEST(!task.running());
  BOOST_TEST(task.outputFd() == -1);
  BOOST_TEST(outcome.output == "OK\nresult");
  BOOST_TEST(timeouts == 0);
  BOOST_TEST(!outcome.timedOut);
  BOOST_TEST(!outcome.truncated);
  BOOST_TEST(WIFEXITED(outcome.status));
  BOOST_TEST(WEXITSTATUS(outcome.status) == 3);
}

BOOST_AUTO_TEST_CASE(ChildPastItsDeadlineIsKilledAndReportedTimedOut) {
  reload::EventLoop loop;
  int timeouts = 0;
  ChildTask task(loop, [&] { ++timeouts; });
  const int64_t started = reload::monotonicMs();
  task.start("test-hang", "a test", 1024, started + 200, [](int out) {
    reload::writeAll(out, "partial");
    for (;;) pause();
    return 0;
  });
  int status = runToExit(loop, task);
  BOOST_TEST(reload::monotonicMs() - started >= 200);
  auto outcome = task.finish(status);
  BOOST_TEST(outcome.timedOut);
  BOOST_TEST(timeouts == 1);
  BOOST_TEST(WIFSIGNALED(outcome.status));
  BOOST_TEST(WTERMSIG(outcome.status) == SIGKILL);
  BOOST_TEST(outcome.output == "partial");
  BOOST_TEST(loop.pendingTimers() == 0u);
  BOOST_TEST(loop.watchedDescriptors() == 0u);
}

// A stop kills the child at once and waits for it no longer than the grace:
// one that is not reaped by then is given up on as at its own deadline.
BOOST_AUTO_TEST_CASE(StopKillsAndBringsTheDeadlineForwardOnly) {
  for (int64_t ownDeadline : {60000, 300}) {
    reload::EventLoop loop;
    int timeouts = 0;
    ChildTask task(loop, [&] { ++timeouts; });
    const int64_t started = reload::monotonicMs();
    task.start("test-stop", "a test", 1024, started + ownDeadline, [](int) {
      for (;;) pause();
      return 0;
    });
    pid_t pid = task.pid();
    loop.updateClock();
    task.stop(ownDeadline == 60000 ? 200 : 60000);
    // Not reaped here, as if the child could not die: onTimeout must come.
    while (timeouts == 0 && reload::monotonicMs() - started < 10000) loop.runOnce(20);
    const int64_t waited = reload::monotonicMs() - started;
    BOOST_TEST(timeouts == 1);
    BOOST_TEST(waited >= 200);
    BOOST_TEST(waited < 5000, "waited " << waited << " ms for a deadline of " << ownDeadline);
    BOOST_TEST(task.timedOut());
    task.giveUp();
    int status = 0;
    BOOST_REQUIRE(waitpid(pid, &status, 0) == pid);
    BOOST_TEST(WIFSIGNALED(status));
    BOOST_TEST(WTERMSIG(status) == SIGKILL);
  }
}

BOOST_AUTO_TEST_CASE(OutputPastTheLimitIsDroppedWithoutBlockingTheChild) {
  reload::EventLoop loop;
  int timeouts = 0;
  ChildTask task(loop, [&] { ++timeouts; });
  task.start("test-flood", "a test", 1000, reload::monotonicMs() + 10000, [](int out) {
    return reload::writeAll(out, std::string(1 << 20, 'x')) ? 0 : 1;
  });
  int status = runToExit(loop, task);
  auto outcome = task.finish(status);
  BOOST_TEST(!outcome.timedOut);
  BOOST_TEST(WIFEXITED(outcome.status));
  BOOST_TEST(WEXITSTATUS(outcome.status) == 0);  // every byte was taken
  BOOST_TEST(outcome.output.size() == 1000u);
  BOOST_TEST(outcome.truncated);
}

BOOST_AUTO_TEST_CASE(AChildThatThrowsEndsInItsOwnProcess) {
  const pid_t self = getpid();
  reload::EventLoop loop;
  int timeouts = 0;
  ChildTask task(loop, [&] { ++timeouts; });
  task.start("test-throw", "a test", 1024, reload::monotonicMs() + 10000, [](int) -> int {
    throw std::runtime_error("boom");
  });
  BOOST_TEST(getpid() == self);
  int status = runToExit(loop, task);
  auto outcome = task.finish(status);
  BOOST_TEST(WIFEXITED(outcome.status));
  BOOST_TEST(WEXITSTATUS(outcome.status) == 70);
}

BOOST_AUTO_TEST_CASE(AChildGivenUpOnIsForgottenAndStillReapable) {
  reload::EventLoop loop;
  int timeouts = 0;
  ChildTask task(loop, [&] { ++timeouts; });
  task.start("test-giveup", "a test", 1024, reload::monotonicMs() - 1, [](int) {
    for (;;) pause();
    return 0;
  });
  pid_t pid = task.pid();
  loop.runOnce(0);  // the deadline has passed: killed once, reported once
  loop.runOnce(0);
  BOOST_TEST(timeouts == 1);
  auto outcome = task.giveUp();
  BOOST_TEST(outcome.timedOut);
  BOOST_TEST(!task.running());
  BOOST_TEST(loop.watchedDescriptors() == 0u);
  int status = 0;
  BOOST_TEST(waitpid(pid, &status, 0) == pid);
  BOOST_TEST(WIFSIGNALED(status));
}

BOOST_AUTO_TEST_SUITE_END()
