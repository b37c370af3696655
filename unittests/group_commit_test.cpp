#include <algorithm>
#include <atomic>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "group_commit.h"

namespace {

struct Item : server::GroupCommitItem {
  int id = 0;
  size_t run = 0;  // the run that took it, from 1
};

// A run that the test lets end: runs wait at the gate until it opens for them.
struct Gate {
  std::mutex mutex;
  std::condition_variable changed;
  size_t open = 0;     // runs allowed to end
  size_t started = 0;  // runs begun
  size_t ended = 0;    // runs ended
  void allow(size_t runs) {
    std::lock_guard<std::mutex> lock(mutex);
    open = runs;
    changed.notify_all();
  }
  template <typename Pred>
  bool waitFor(Pred pred) {
    std::unique_lock<std::mutex> lock(mutex);
    return changed.wait_for(lock, std::chrono::seconds(20), pred);
  }
};

// A run that marks its items with its number and ends only once the gate
// allows that many runs.
std::function<void(std::vector<Item*>&)> gatedRuns(Gate& gate) {
  return [&gate](std::vector<Item*>& batch) {
    std::unique_lock<std::mutex> lock(gate.mutex);
    size_t run = ++gate.started;
    for (auto* item : batch) item->run = run;
    gate.changed.notify_all();
    gate.changed.wait(lock, [&] { return gate.open >= run; });
    ++gate.ended;
    gate.changed.notify_all();
  };
}

// Waits (with a deadline) until `n` callers queue behind the run under way.
bool queuedBehind(const server::GroupCommit<Item>& commit, size_t n) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (commit.queued() < n) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(GroupCommitTest)

BOOST_AUTO_TEST_CASE(a_lone_commit_runs_its_own_batch) {
  std::vector<std::vector<int>> batches;
  server::GroupCommit<Item> commit([&](std::vector<Item*>& batch) {
    batches.emplace_back();
    for (auto* item : batch) batches.back().push_back(item->id);
  });
  Item a;
  a.id = 7;
  commit.commit(a);
  BOOST_TEST(batches == std::vector<std::vector<int>>({{7}}));
  BOOST_TEST(commit.runs() == 1u);
}

// Items that arrive while a run is under way share the next run, and no
// caller returns before the run that took its item has ended.
BOOST_AUTO_TEST_CASE(commits_that_arrive_during_a_run_share_the_next_and_wait_for_it) {
  Gate gate;
  server::GroupCommit<Item> commit(gatedRuns(gate));
  constexpr int kLater = 12;
  std::vector<Item> items(kLater + 1);
  std::atomic<int> returnedEarly{0};
  std::atomic<int> returned{0};
  auto call = [&](Item& item) {
    commit.commit(item);
    {
      std::lock_guard<std::mutex> lock(gate.mutex);
      if (gate.ended < item.run) ++returnedEarly;
    }
    ++returned;
  };
  std::vector<std::thread> threads;
  threads.emplace_back(call, std::ref(items[0]));
  BOOST_REQUIRE(gate.waitFor([&] { return gate.started == 1; }));
  for (int i = 1; i <= kLater; ++i) threads.emplace_back(call, std::ref(items[i]));
  // Every later caller is queued behind the first run, which still holds.
  BOOST_REQUIRE(queuedBehind(commit, kLater));
  BOOST_TEST(commit.runs() == 1u);
  BOOST_TEST(returned == 0);
  gate.allow(1);
  BOOST_REQUIRE(gate.waitFor([&] { return gate.started == 2; }));
  // The first caller may return now; the others wait for the second run.
  BOOST_REQUIRE(gate.waitFor([&] { return gate.ended == 1; }));
  for (int i = 1; i <= kLater; ++i) BOOST_TEST(items[i].run == 2u);
  gate.allow(2);
  for (auto& t : threads) t.join();
  BOOST_TEST(returnedEarly == 0);
  BOOST_TEST(commit.runs() == 2u);
  BOOST_TEST(commit.largestBatch() == static_cast<size_t>(kLater));
}

// A run that throws fails every item of its batch with that error, and the
// next batch is not touched by it.
BOOST_AUTO_TEST_CASE(a_failed_run_fails_each_item_of_its_batch_and_no_other) {
  std::atomic<int> runs{0};
  server::GroupCommit<Item> commit([&](std::vector<Item*>&) {
    if (++runs == 1) throw std::runtime_error("index commit failed");
  });
  Item first, second;
  BOOST_CHECK_EXCEPTION(commit.commit(first), std::runtime_error,
                        [](const std::runtime_error& e) { return std::string(e.what()) == "index commit failed"; });
  BOOST_CHECK_NO_THROW(commit.commit(second));
}

// A failure of one item (its rename, its directory's sync) is its caller's
// alone: the others of the batch succeed.
BOOST_AUTO_TEST_CASE(an_item_failure_is_thrown_to_that_caller_only) {
  Gate gate;
  server::GroupCommit<Item> commit([&](std::vector<Item*>& batch) {
    std::unique_lock<std::mutex> lock(gate.mutex);
    size_t run = ++gate.started;
    gate.changed.notify_all();
    gate.changed.wait(lock, [&] { return gate.open >= run; });
    for (auto* item : batch)
      if (item->id % 2) item->error = std::make_exception_ptr(std::runtime_error("fsync failed"));
  });
  std::vector<Item> items(9);
  std::vector<int> outcome(items.size(), -1);  // 1 ok, 0 threw
  std::vector<std::thread> threads;
  auto call = [&](size_t i) {
    try {
      commit.commit(items[i]);
      outcome[i] = 1;
    } catch (const std::runtime_error&) {
      outcome[i] = 0;
    }
  };
  items[0].id = 0;
  threads.emplace_back(call, 0);
  BOOST_REQUIRE(gate.waitFor([&] { return gate.started == 1; }));
  for (size_t i = 1; i < items.size(); ++i) {
    items[i].id = static_cast<int>(i);
    threads.emplace_back(call, i);
  }
  BOOST_REQUIRE(queuedBehind(commit, items.size() - 1));
  gate.allow(100);
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < items.size(); ++i) BOOST_TEST(outcome[i] == (i % 2 ? 0 : 1), "item " << i);
}

// A caller that finds a run under way hands its item in and returns at
// once, however long that run takes: only the leader's thread waits in the
// commit. Each item's end comes after the run that took it, from the
// leader, which goes on until nothing waits.
BOOST_AUTO_TEST_CASE(a_submit_behind_a_hung_run_returns_at_once_and_ends_after_its_run) {
  Gate gate;
  server::GroupCommit<Item> commit(gatedRuns(gate));
  constexpr size_t kLater = 10;
  std::vector<Item> items(kLater + 1);
  std::atomic<size_t> endedEarly{0};
  std::atomic<size_t> endedCount{0};
  auto ended = [&](Item& item) {
    return [&] {
      std::lock_guard<std::mutex> lock(gate.mutex);
      if (gate.ended < item.run) ++endedEarly;
      ++endedCount;
      gate.changed.notify_all();
    };
  };
  std::thread leader([&] { commit.submit(items[0], ended(items[0])); });
  BOOST_REQUIRE(gate.waitFor([&] { return gate.started == 1; }));
  // The first run hangs; every later submit returns on its own thread.
  for (size_t i = 1; i <= kLater; ++i) {
    std::thread caller([&, i] { commit.submit(items[i], ended(items[i])); });
    caller.join();
  }
  BOOST_TEST(commit.queued() == kLater);
  BOOST_TEST(endedCount == 0u);
  gate.allow(2);
  leader.join();  // the leader ran the second batch too
  BOOST_TEST(endedCount == kLater + 1);
  BOOST_TEST(endedEarly == 0u);
  BOOST_TEST(commit.runs() == 2u);
  for (size_t i = 1; i <= kLater; ++i) BOOST_TEST(items[i].run == 2u);
}

// What an `ended` holds may be let go of (an upload whose client left is
// destroyed with it): the leader does so without the group's lock, so that
// what is released may take its time or use the group, and callers of
// other items are not held up meanwhile.
BOOST_AUTO_TEST_CASE(what_an_ended_holds_is_released_without_the_lock) {
  server::GroupCommit<Item> commit([](std::vector<Item*>&) {});
  std::vector<std::thread> askers;
  std::atomic<int> released{0}, answered{0};
  // Asks the group a question from another thread as it is destroyed, and
  // waits a while for the answer.
  struct AsksOnRelease {
    server::GroupCommit<Item>* commit;
    std::vector<std::thread>* askers;
    std::atomic<int>* released;
    std::atomic<int>* answered;
    ~AsksOnRelease() {
      auto asked = std::make_shared<std::promise<void>>();
      auto answer = asked->get_future();
      auto* group = commit;
      askers->emplace_back([group, asked] {
        group->queued();
        asked->set_value();
      });
      if (answer.wait_for(std::chrono::seconds(10)) == std::future_status::ready) ++*answered;
      ++*released;
    }
  };
  Item item;
  {
    std::shared_ptr<AsksOnRelease> held(new AsksOnRelease{&commit, &askers, &released, &answered});
    commit.submit(item, [held] {});
  }
  for (auto& t : askers) t.join();
  BOOST_TEST(released.load() == 1);
  BOOST_TEST(answered.load() == 1);
}

// An item its run puts off is taken by the next run, ahead of the items
// that arrived meanwhile, and its caller returns only once that run has
// ended; one put off with an error ends with that error where it was.
BOOST_AUTO_TEST_CASE(an_item_put_off_goes_first_into_the_next_run_and_waits_for_it) {
  Gate gate;
  std::vector<std::vector<int>> order;  // ids per run, under the gate's lock
  auto gated = gatedRuns(gate);
  server::GroupCommit<Item> commit([&](std::vector<Item*>& batch) {
    {
      std::lock_guard<std::mutex> lock(gate.mutex);
      order.emplace_back();
      for (auto* item : batch) {
        order.back().push_back(item->id);
        if (order.size() == 2 && item->id == 2) item->putOff = true;
        if (order.size() == 2 && item->id == 4) {
          item->putOff = true;
          item->error = std::make_exception_ptr(std::runtime_error("failed in its run"));
        }
      }
    }
    gated(batch);
  });
  std::vector<Item> items(5);
  for (int i = 0; i < 5; ++i) items[i].id = i;
  std::vector<size_t> endedRunsAtReturn(5, 0);
  std::vector<int> threw(5, 0);
  auto call = [&](int i) {
    try {
      commit.commit(items[i]);
    } catch (const std::runtime_error&) {
      threw[i] = 1;
    }
    std::lock_guard<std::mutex> lock(gate.mutex);
    endedRunsAtReturn[i] = gate.ended;
  };
  std::vector<std::thread> threads;
  threads.emplace_back(call, 0);
  BOOST_REQUIRE(gate.waitFor([&] { return gate.started == 1; }));
  for (int i : {1, 2, 4}) threads.emplace_back(call, i);
  BOOST_REQUIRE(queuedBehind(commit, 3));
  gate.allow(1);
  BOOST_REQUIRE(gate.waitFor([&] { return gate.started == 2; }));
  threads.emplace_back(call, 3);
  BOOST_REQUIRE(queuedBehind(commit, 1));
  gate.allow(3);
  for (auto& t : threads) t.join();
  BOOST_REQUIRE(order.size() == 3u);
  std::vector<int> second = order[1];  // the three threads queue in any order
  std::sort(second.begin(), second.end());
  BOOST_TEST(second == std::vector<int>({1, 2, 4}));
  BOOST_TEST(order[2] == std::vector<int>({2, 3}));
  BOOST_TEST(items[2].run == 3u);
  BOOST_TEST(endedRunsAtReturn[2] >= 3u);  // waited for the run that took it
  BOOST_TEST(endedRunsAtReturn[1] >= 2u);
  BOOST_TEST(threw[4] == 1);
  BOOST_TEST(items[4].run == 2u);  // not taken again
  BOOST_TEST(threw[2] == 0);
  BOOST_TEST(items[2].putOff == false);
  BOOST_TEST(commit.runsThatPutOff() == 1u);
  BOOST_TEST(commit.runs() == 3u);
}

BOOST_AUTO_TEST_SUITE_END()
