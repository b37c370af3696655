#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdint>
#include <system_error>
#include <vector>

#include "reload/event_loop.h"
#include "reload/fd.h"

using reload::EventLoop;

namespace {

class RecordingTimer : public reload::Timer {
 public:
  RecordingTimer(EventLoop& loop, int id, std::vector<int>& fired)
      : Timer(loop), id_(id), fired_(fired) {}
  void onTimer() override { fired_.push_back(id_); }

 private:
  int id_;
  std::vector<int>& fired_;
};

class CountingHandler : public reload::EventHandler {
 public:
  void onEvents(uint32_t events) override {
    ++calls;
    lastEvents = events;
  }
  int calls = 0;
  uint32_t lastEvents = 0;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(EventLoopTest)

BOOST_AUTO_TEST_CASE(TimersFireInDeadlineOrderAndLeaveTheQueue) {
  EventLoop loop;
  std::vector<int> fired;
  RecordingTimer late(loop, 2, fired), early(loop, 1, fired), future(loop, 3, fired);
  late.arm(loop.nowMs() - 1);
  early.arm(loop.nowMs() - 5);
  future.arm(loop.nowMs() + 60000);
  BOOST_TEST(loop.pendingTimers() == 3u);
  loop.runOnce(0);
  BOOST_TEST(fired == (std::vector<int>{1, 2}));
  BOOST_TEST(!early.armed());
  BOOST_TEST(!late.armed());
  BOOST_TEST(future.armed());
  BOOST_TEST(loop.pendingTimers() == 1u);
}

BOOST_AUTO_TEST_CASE(RearmingMovesTheOneEntryAndCancelRemovesIt) {
  EventLoop loop;
  std::vector<int> fired;
  RecordingTimer timer(loop, 7, fired);
  timer.arm(loop.nowMs() + 60000);
  timer.arm(loop.nowMs() - 1);
  BOOST_TEST(loop.pendingTimers() == 1u);
  loop.runOnce(0);
  BOOST_TEST(fired == (std::vector<int>{7}));
  timer.arm(loop.nowMs() - 1);
  timer.cancel();
  BOOST_TEST(loop.pendingTimers() == 0u);
  loop.runOnce(0);
  BOOST_TEST(fired.size() == 1u);
}

BOOST_AUTO_TEST_CASE(ADestroyedTimerLeavesNothingBehind) {
  EventLoop loop;
  std::vector<int> fired;
  {
    RecordingTimer timer(loop, 1, fired);
    timer.arm(loop.nowMs() - 1);
  }
  BOOST_TEST(loop.pendingTimers() == 0u);
  loop.runOnce(0);
  BOOST_TEST(fired.empty());
}

BOOST_AUTO_TEST_CASE(TheWaitEndsAtTheNextDeadline) {
  EventLoop loop;
  std::vector<int> fired;
  RecordingTimer timer(loop, 1, fired);
  int64_t armedAt = reload::monotonicMs();
  timer.arm(armedAt + 30);
  // Waits far less than the 10 s asked for: the timer bounds the wait.
  while (fired.empty() && reload::monotonicMs() - armedAt < 5000) loop.runOnce(10000);
  BOOST_TEST(fired.size() == 1u);
  BOOST_TEST(reload::monotonicMs() - armedAt >= 30);
  BOOST_TEST(reload::monotonicMs() - armedAt < 5000);
}

BOOST_AUTO_TEST_CASE(AReadyDescriptorReachesItsHandler) {
  EventLoop loop;
  reload::Fd wake(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  BOOST_REQUIRE(wake);
  CountingHandler handler;
  loop.add(wake.get(), EPOLLIN, &handler);
  loop.runOnce(0);
  BOOST_TEST(handler.calls == 0);
  uint64_t one = 1;
  BOOST_REQUIRE(write(wake.get(), &one, sizeof one) == static_cast<ssize_t>(sizeof one));
  loop.runOnce(1000);
  BOOST_TEST(handler.calls == 1);
  BOOST_TEST((handler.lastEvents & EPOLLIN) != 0u);
  loop.remove(wake.get());
  BOOST_REQUIRE(write(wake.get(), &one, sizeof one) == static_cast<ssize_t>(sizeof one));
  loop.runOnce(0);
  BOOST_TEST(handler.calls == 1);
}

namespace {

reload::Fd readyEventFd() {
  reload::Fd fd(eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK));  // readable at once
  BOOST_REQUIRE(fd);
  return fd;
}

// Removes (and closes) the other descriptor when it runs.
class RemovingHandler : public reload::EventHandler {
 public:
  RemovingHandler(EventLoop& loop, reload::Fd& other) : loop_(loop), other_(other) {}
  void onEvents(uint32_t) override {
    ++calls;
    if (other_) {
      loop_.remove(other_.get());
      other_.reset();
    }
  }
  int calls = 0;

 private:
  EventLoop& loop_;
  reload::Fd& other_;
};

}  // namespace

BOOST_AUTO_TEST_CASE(AHandlerRemovedByAnEarlierOneInTheSameBatchIsNotCalled) {
  EventLoop loop;
  reload::Fd a = readyEventFd();
  reload::Fd b = readyEventFd();
  // Each removes the other: whichever epoll reports first runs, the other
  // must not, although both were ready in the same epoll_wait.
  RemovingHandler first(loop, b), second(loop, a);
  loop.add(a.get(), EPOLLIN, &first);
  loop.add(b.get(), EPOLLIN, &second);
  loop.runOnce(1000);
  BOOST_TEST(first.calls + second.calls == 1);
  BOOST_TEST(loop.watchedDescriptors() == 1u);
}

BOOST_AUTO_TEST_CASE(ANumberReusedInTheSameBatchDoesNotGetTheOldEvent) {
  EventLoop loop;
  reload::Fd a = readyEventFd();
  reload::Fd b = readyEventFd();
  CountingHandler newcomer;
  // Each handler closes the other descriptor and watches a fresh one,
  // not yet readable, that the kernel gives the same number.
  struct Replacing : reload::EventHandler {
    EventLoop& loop;
    reload::Fd& other;
    CountingHandler& newcomer;
    int calls = 0;
    Replacing(EventLoop& l, reload::Fd& o, CountingHandler& n) : loop(l), other(o), newcomer(n) {}
    void onEvents(uint32_t) override {
      ++calls;
      if (!other) return;
      int number = other.get();
      loop.remove(number);
      other.reset();
      other.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
      BOOST_REQUIRE(other.get() == number);
      loop.add(number, EPOLLIN, &newcomer);
    }
  };
  Replacing first(loop, b, newcomer), second(loop, a, newcomer);
  loop.add(a.get(), EPOLLIN, &first);
  loop.add(b.get(), EPOLLIN, &second);
  loop.runOnce(1000);
  BOOST_TEST(first.calls + second.calls == 1);
  BOOST_TEST(newcomer.calls == 0);
}

BOOST_AUTO_TEST_CASE(ADescriptorClosedWithoutRemoveIsForgottenWhenItsNumberReturns) {
  EventLoop loop;
  CountingHandler old, fresh;
  int number = -1;
  {
    reload::Fd a(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    number = a.get();
    loop.add(number, EPOLLIN, &old);
  }  // closed: epoll drops it by itself
  reload::Fd b = readyEventFd();
  BOOST_REQUIRE(b.get() == number);
  loop.add(b.get(), EPOLLIN, &fresh);
  loop.runOnce(1000);
  BOOST_TEST(old.calls == 0);
  BOOST_TEST(fresh.calls == 1);
  BOOST_TEST(loop.watchedDescriptors() == 1u);
}

BOOST_AUTO_TEST_CASE(AddingAWatchedDescriptorAgainFailsAndLeavesItsHandler) {
  EventLoop loop;
  CountingHandler first, second;
  reload::Fd ready = readyEventFd();
  loop.add(ready.get(), EPOLLIN, &first);
  BOOST_CHECK_THROW(loop.add(ready.get(), EPOLLIN, &second), std::system_error);
  loop.runOnce(1000);
  BOOST_TEST(first.calls == 1);
  BOOST_TEST(second.calls == 0);
  BOOST_TEST(loop.watchedDescriptors() == 1u);
}

BOOST_AUTO_TEST_CASE(WatchedFdLeavesTheLoopBeforeItCloses) {
  EventLoop loop;
  int calls = 0;
  reload::Fd shared = readyEventFd();
  {
    reload::WatchedFd watched(loop, [&](uint32_t) { ++calls; });
    // A copy of the same open file stays open, as in a forked child: a
    // plain close would leave the level-triggered entry in the epoll set.
    watched.watch(reload::Fd(dup(shared.get())), EPOLLIN);
    loop.runOnce(1000);
    BOOST_TEST(calls == 1);
  }
  BOOST_TEST(loop.watchedDescriptors() == 0u);
  loop.runOnce(0);
  BOOST_TEST(calls == 1);
}

BOOST_AUTO_TEST_CASE(ModifyChangesWhatIsWatchedForUnderTheSameHandler) {
  EventLoop loop;
  int fds[2];
  BOOST_REQUIRE(pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
  reload::Fd readEnd(fds[0]), writeEnd(fds[1]);
  CountingHandler handler;
  loop.add(writeEnd.get(), EPOLLIN, &handler);
  loop.runOnce(0);
  BOOST_TEST(handler.calls == 0);  // a write end is never readable
  loop.modify(writeEnd.get(), EPOLLOUT);
  loop.runOnce(1000);
  BOOST_TEST(handler.calls == 1);
  BOOST_TEST((handler.lastEvents & EPOLLOUT) != 0u);
}

BOOST_AUTO_TEST_CASE(ANegativeWaitSleepsUntilTheNextTimer) {
  EventLoop loop;
  int fired = 0;
  reload::FunctionTimer timer(loop, [&] { ++fired; });
  timer.armIn(20);
  int64_t start = reload::monotonicMs();
  while (fired == 0 && reload::monotonicMs() - start < 5000) loop.runOnce(-1);
  BOOST_TEST(fired == 1);
  BOOST_TEST(loop.pendingTimers() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
