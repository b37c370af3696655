// Group commit: callers that want the same expensive step (an index
// transaction, a directory fsync) at about the same moment share one run
// of it.
//
// A caller hands in its item and blocks. If no run is under way it leads:
// it takes every item waiting at that moment (its own included) and runs
// the batch; items that arrive meanwhile wait for the next run, which one
// of their callers leads once this one ended. No caller returns before the
// run that took its item has ended, so whatever the run makes durable is
// durable when commit() returns; a caller whose item failed gets its own
// error thrown, and a run that throws fails every item of its batch with
// that exception. Thread-safe; header-only so that the rule is unit-tested
// with runs of the test's making.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

namespace server {

// What every item carries: set by the run, read by its caller.
struct GroupCommitItem {
  std::exception_ptr error;  // this item failed: thrown to its caller
};

template <typename Item>
class GroupCommit {
 public:
  // `run` gets one batch, in arrival order. It sets an item's `error` for a
  // failure of that item alone, or throws to fail the whole batch.
  explicit GroupCommit(std::function<void(std::vector<Item*>&)> run) : run_(std::move(run)) {}

  // Returns once the run that took `item` has ended; throws the item's error.
  void commit(Item& item) {
    Waiter me{&item};
    std::unique_lock<std::mutex> lock(mutex_);
    waiting_.push_back(&me);
    while (!me.done) {
      if (running_) {
        changed_.wait(lock);
        continue;
      }
      lead(lock);
    }
    if (item.error) std::rethrow_exception(item.error);
  }

  // Batches run so far and the items they took (figures for tests and logs).
  size_t runs() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return runs_;
  }
  // Items waiting for the next run.
  size_t queued() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return waiting_.size();
  }
  size_t largestBatch() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return largest_;
  }

 private:
  struct Waiter {
    Item* item;
    bool done = false;
  };

  void lead(std::unique_lock<std::mutex>& lock) {
    running_ = true;
    std::vector<Waiter*> batch;
    batch.swap(waiting_);
    ++runs_;
    if (batch.size() > largest_) largest_ = batch.size();
    lock.unlock();
    try {
      std::vector<Item*> items;
      items.reserve(batch.size());
      for (auto* w : batch) items.push_back(w->item);
      run_(items);
    } catch (...) {
      // Also when the list itself could not be built: running_ must end.
      auto failure = std::current_exception();
      for (auto* w : batch) w->item->error = failure;
    }
    lock.lock();
    for (auto* w : batch) w->done = true;
    running_ = false;
    // Wakes this batch's callers and the next batch's, one of which leads.
    changed_.notify_all();
  }

  std::function<void(std::vector<Item*>&)> run_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Waiter*> waiting_;
  bool running_ = false;
  size_t runs_ = 0;
  size_t largest_ = 0;
};

}  // namespace server
