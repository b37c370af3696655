#include <atomic>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "disk_pool.h"
#include "reload/event_loop.h"

namespace {

using Clock = std::chrono::steady_clock;

// Runs the loop until `done` holds or 20 s pass.
template <typename Pred>
bool runUntil(reload::EventLoop& loop, Pred done) {
  auto deadline = Clock::now() + std::chrono::seconds(20);
  while (!done()) {
    if (Clock::now() > deadline) return false;
    loop.runOnce(10);
  }
  return true;
}

// Tasks that end only once `wanted` of them run at the same time: each
// needs a thread of its own.
struct Rendezvous {
  std::mutex mutex;
  std::condition_variable changed;
  int running = 0;
  int wanted = 0;
  bool met = false;
  bool arrive() {
    std::unique_lock<std::mutex> lock(mutex);
    if (++running >= wanted) met = true;
    changed.notify_all();
    return changed.wait_for(lock, std::chrono::seconds(20), [this] { return met; });
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(DiskPoolTest)

BOOST_AUTO_TEST_CASE(all_threads_start_at_once_by_default) {
  reload::EventLoop loop;
  server::DiskPool pool(loop, 6);
  BOOST_CHECK_EQUAL(pool.threadCount(), 6u);
  Rendezvous meet;
  meet.wanted = 6;
  std::atomic<int> met{0}, done{0};
  for (int i = 0; i < 6; ++i)
    pool.submit([&] { met += meet.arrive() ? 1 : 0; }, [&] { ++done; });
  BOOST_REQUIRE(runUntil(loop, [&] { return done == 6; }));
  BOOST_CHECK_EQUAL(met.load(), 6);
}

BOOST_AUTO_TEST_CASE(a_deferred_pool_works_with_its_first_thread_then_starts_the_rest) {
  for (int wanted : {1, 2, 5, 16}) {
    reload::EventLoop loop;
    server::DiskPool pool(loop, wanted, 1);
    BOOST_CHECK_EQUAL(pool.threadCount(), 1u);
    // The one thread takes work before the rest exist.
    std::atomic<int> done{0};
    for (int i = 0; i < 3; ++i) pool.submit([] {}, [&] { ++done; });
    BOOST_REQUIRE(runUntil(loop, [&] { return done == 3; }));
    BOOST_CHECK_EQUAL(pool.threadCount(), 1u);
    pool.startRest();
    BOOST_REQUIRE_MESSAGE(runUntil(loop, [&] { return pool.threadCount() == static_cast<size_t>(wanted); }),
                          "the pool has " << pool.threadCount() << " of " << wanted << " threads");
    // Every one of them takes work: `wanted` tasks meet, each on a thread.
    Rendezvous meet;
    meet.wanted = wanted;
    std::atomic<int> met{0};
    done = 0;
    for (int i = 0; i < wanted; ++i)
      pool.submit([&] { met += meet.arrive() ? 1 : 0; }, [&] { ++done; });
    BOOST_REQUIRE(runUntil(loop, [&] { return done == wanted; }));
    BOOST_CHECK_EQUAL(met.load(), wanted);
    pool.startRest();  // nothing more to start
    BOOST_CHECK_EQUAL(pool.threadCount(), static_cast<size_t>(wanted));
  }
}

BOOST_AUTO_TEST_CASE(a_pool_destroyed_while_its_threads_start_joins_them_all) {
  // The destructor runs while the chain of starts is under way (or done,
  // or not begun): it must join whatever started, never leave a thread
  // running on a destroyed pool (ASan and TSan would tell) nor hang.
  for (int round = 0; round < 50; ++round) {
    reload::EventLoop loop;
    auto pool = std::make_unique<server::DiskPool>(loop, 16, round % 3 == 0 ? 0 : 1);
    std::atomic<int> ran{0};
    for (int i = 0; i < 4; ++i) pool->submit([&] { ++ran; }, {});
    if (round % 2 == 0) pool->startRest();
    if (round % 5 == 0) std::this_thread::yield();
    pool.reset();
  }
}

BOOST_AUTO_TEST_CASE(a_task_that_throws_ends_with_its_failure_and_the_next_task_runs) {
  // One thread: the task after the one that threw runs on the same thread.
  reload::EventLoop loop;
  server::DiskPool pool(loop, 1);
  int failedStatus = 0;
  std::string failedText;
  bool thrownDone = false, nextRan = false, nextDone = false;
  pool.submit([] { throw std::runtime_error("disk on fire at /secret/path"); },
              [&] { thrownDone = true; },
              [&](int status, const std::string& text) {
                failedStatus = status;
                failedText = text;
              });
  pool.submit([&] { nextRan = true; }, [&] { nextDone = true; });
  BOOST_REQUIRE(runUntil(loop, [&] { return failedStatus != 0 && nextDone; }));
  BOOST_CHECK_EQUAL(failedStatus, 500);
  BOOST_CHECK(!thrownDone);
  BOOST_CHECK(nextRan);
  // The client is told nothing of what went wrong inside.
  BOOST_CHECK_EQUAL(failedText.find("/secret"), std::string::npos);
  BOOST_CHECK_EQUAL(failedText.find("fire"), std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
