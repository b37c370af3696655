#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <system_error>
#include <tuple>
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

// The rule for any sequence of arms, re-arms and cancels over many timers:
// what fires is every timer left armed with a deadline due, each once, in
// (deadline, order of its last arm) order; the rest stay queued. Checked
// against that model over random sequences, with many equal deadlines.
BOOST_AUTO_TEST_CASE(AnyArmAndCancelSequenceFiresByDeadlineThenArmOrder) {
  std::mt19937 random(20261203);
  for (int trial = 0; trial < 200; ++trial) {
    EventLoop loop;
    const int64_t now = loop.nowMs();
    const int count = 1 + static_cast<int>(random() % 40);
    std::vector<int> fired;
    std::vector<std::unique_ptr<RecordingTimer>> timers;
    for (int i = 0; i < count; ++i) timers.push_back(std::make_unique<RecordingTimer>(loop, i, fired));
    struct Model {
      bool armed = false;
      int64_t deadline = 0;
      uint64_t armedAs = 0;
    };
    std::vector<Model> model(count);
    uint64_t arms = 0;
    for (int step = 0; step < 300; ++step) {
      int i = static_cast<int>(random() % count);
      if (random() % 4 == 0) {
        timers[i]->cancel();
        model[i].armed = false;
        continue;
      }
      // Past, due now or in the future; a few distinct values so that ties are common.
      int64_t deadline = now - 3 + static_cast<int64_t>(random() % 7) * (random() % 2 ? 1 : 20000);
      timers[i]->arm(deadline);
      if (!model[i].armed || model[i].deadline != deadline) model[i].armedAs = ++arms;
      model[i].armed = true;
      model[i].deadline = deadline;
    }
    size_t armedCount = 0;
    for (const auto& m : model) armedCount += m.armed;
    BOOST_TEST(loop.pendingTimers() == armedCount);
    loop.runOnce(0);
    const int64_t after = loop.nowMs();
    std::vector<std::tuple<int64_t, uint64_t, int>> due;
    for (int i = 0; i < count; ++i)
      if (model[i].armed && model[i].deadline <= after) due.emplace_back(model[i].deadline, model[i].armedAs, i);
    std::sort(due.begin(), due.end());
    std::vector<int> expected;
    for (const auto& d : due) expected.push_back(std::get<2>(d));
    BOOST_TEST(fired == expected, "trial " << trial);
    BOOST_TEST(loop.pendingTimers() == armedCount - due.size());
    for (int i = 0; i < count; ++i)
      BOOST_TEST(timers[i]->armed() == (model[i].armed && model[i].deadline > after));
  }
}

namespace {

// A timer that, when it fires, hands its id to a callback (which may arm,
// move or cancel any timer, itself included).
class CallbackTimer : public reload::Timer {
 public:
  CallbackTimer(EventLoop& loop, int id, std::function<void(int)>& fire) : Timer(loop), id_(id), fire_(fire) {}
  void onTimer() override { fire_(id_); }

 private:
  int id_;
  std::function<void(int)>& fire_;
};

}  // namespace

// Thousands of timers armed, moved and cancelled at random, also from
// inside a firing timer, against an ordered set of (deadline, arm order,
// id): every timer fires exactly when it is the model's first due entry,
// and the queue's size and each timer's state match the model throughout.
// Deadlines are far in the past (due) or far in the future (never due in
// the test), so what is due does not depend on the clock.
BOOST_AUTO_TEST_CASE(ThousandsOfRandomArmsMovesAndCancelsMatchAnOrderedModel) {
  std::mt19937 random(1203);
  EventLoop loop;
  const int64_t base = loop.nowMs();
  const int count = 3000;
  using Entry = std::tuple<int64_t, uint64_t, int>;
  std::set<Entry> model;
  std::vector<bool> armed(count, false);
  std::vector<int64_t> deadline(count, 0);
  std::vector<uint64_t> armedAs(count, 0);
  uint64_t arms = 0;
  std::function<void(int)> fire;
  std::vector<std::unique_ptr<CallbackTimer>> timers;
  for (int i = 0; i < count; ++i) timers.push_back(std::make_unique<CallbackTimer>(loop, i, fire));

  auto pickDeadline = [&] {
    // Few distinct values, so ties (ordered by arm) are frequent.
    int64_t offset = static_cast<int64_t>(random() % 16);
    return random() % 2 ? base - 1000 - offset : base + 1000000000 + offset;
  };
  auto armBoth = [&](int i, int64_t when) {
    timers[i]->arm(when);
    if (armed[i] && deadline[i] == when) return;  // arming the same deadline again changes nothing
    if (armed[i]) model.erase(Entry(deadline[i], armedAs[i], i));
    armed[i] = true;
    deadline[i] = when;
    armedAs[i] = ++arms;
    model.emplace(when, armedAs[i], i);
  };
  auto cancelBoth = [&](int i) {
    timers[i]->cancel();
    if (!armed[i]) return;
    model.erase(Entry(deadline[i], armedAs[i], i));
    armed[i] = false;
  };
  auto mutate = [&] {
    int i = static_cast<int>(random() % count);
    if (random() % 3 == 0) cancelBoth(i);
    else armBoth(i, pickDeadline());
  };
  size_t firedCount = 0;
  fire = [&](int id) {
    BOOST_REQUIRE(!model.empty());
    const Entry first = *model.begin();
    BOOST_REQUIRE(std::get<0>(first) < base);
    BOOST_REQUIRE_EQUAL(std::get<2>(first), id);
    model.erase(model.begin());
    armed[id] = false;
    BOOST_REQUIRE(!timers[id]->armed());
    ++firedCount;
    // Now and then a firing timer changes the queue it is being run from.
    if (random() % 4 == 0) mutate();
    if (random() % 8 == 0) armBoth(id, pickDeadline());
  };

  for (int round = 0; round < 40; ++round) {
    for (int step = 0; step < 2000; ++step) mutate();
    BOOST_REQUIRE_EQUAL(loop.pendingTimers(), model.size());
    loop.runOnce(0);
    // Everything due has fired, including what firing timers armed in the past.
    BOOST_REQUIRE(model.empty() || std::get<0>(*model.begin()) > base);
    BOOST_REQUIRE_EQUAL(loop.pendingTimers(), model.size());
    for (int i = 0; i < count; ++i) BOOST_REQUIRE_EQUAL(timers[i]->armed(), static_cast<bool>(armed[i]));
  }
  BOOST_TEST(firedCount > 10000u);
  // Destroying armed timers takes them out of the heap in any order.
  std::shuffle(timers.begin(), timers.end(), random);
  timers.resize(count / 2);
  size_t stillArmed = 0;
  for (const auto& timer : timers) stillArmed += timer->armed();
  BOOST_TEST(loop.pendingTimers() == stillArmed);
  fire = [](int) { BOOST_FAIL("no timer left is due"); };
  loop.runOnce(0);
  timers.clear();
  BOOST_TEST(loop.pendingTimers() == 0u);
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
