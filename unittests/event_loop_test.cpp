#include <sys/eventfd.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdint>
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

BOOST_AUTO_TEST_SUITE_END()
