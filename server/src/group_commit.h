// Group commit: callers that want the same expensive step (an index
// transaction, a directory fsync) at about the same moment share one run
// of it.
//
// A caller hands in its item with what to do once the item is durable. If
// no run is under way it leads: it takes every item waiting at that moment
// (its own included) and runs the batch, then the batches of the items that
// arrived meanwhile, until none is waiting. A caller that finds a run under
// way returns at once: its item waits for the next run, and its `ended` is
// called by the leader's thread, which then lets go of it (and of what it
// holds) without the group's lock. So one thread per group is ever inside the
// commit, however long a run hangs (a disk that stops answering): the others
// go on to other work. `ended` runs once the run that took the item has
// ended, so whatever the run makes durable is durable then; an item that
// failed carries its error, and a run that throws fails every item of its
// batch with that exception. A run may also put an item off to the next
// run (it is not ready for this one's expensive step, and this run makes it
// ready): the item goes ahead of the later arrivals, and its `ended` waits.
// Thread-safe; header-only so that the rule is unit-tested with runs of the
// test's making.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <iterator>
#include <mutex>
#include <utility>
#include <vector>

namespace server {

// What every item carries: set by the run, read by its caller.
struct GroupCommitItem {
  std::exception_ptr error;  // this item failed: thrown to its caller
  // Set by the run: the item is taken by the next run instead (cleared
  // then). A run that puts every item off must make them ready for the
  // next, or the group never ends.
  bool putOff = false;
};

template <typename Item>
class GroupCommit {
 public:
  // `run` gets one batch, in arrival order. It sets an item's `error` for a
  // failure of that item alone, or throws to fail the whole batch.
  explicit GroupCommit(std::function<void(std::vector<Item*>&)> run) : run_(std::move(run)) {}

  // Hands `item` in; `ended` runs (on the leader's thread, maybe this one)
  // once the run that took it has ended, and must not throw. Returns once
  // the item is queued, or, for the leader, once no item is left waiting.
  void submit(Item& item, std::function<void()> ended) {
    std::unique_lock<std::mutex> lock(mutex_);
    waiting_.push_back(Waiter{&item, std::move(ended)});
    if (running_) return;
    running_ = true;
    while (!waiting_.empty()) lead(lock);
    running_ = false;
  }

  // Blocks until the run that took `item` has ended; throws the item's error.
  void commit(Item& item) {
    std::mutex mutex;
    std::condition_variable changed;
    bool done = false;
    submit(item, [&] {
      // Notified under the lock: the waiter may return, and these go, as
      // soon as it sees `done`.
      std::lock_guard<std::mutex> lock(mutex);
      done = true;
      changed.notify_one();
    });
    std::unique_lock<std::mutex> lock(mutex);
    changed.wait(lock, [&] { return done; });
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
  // Runs that put items off to the next.
  size_t runsThatPutOff() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return putOff_;
  }

 private:
  struct Waiter {
    Item* item;
    std::function<void()> ended;
  };

  // Runs one batch of what waits now; called and returns with the lock held.
  void lead(std::unique_lock<std::mutex>& lock) {
    std::vector<Waiter> batch;
    batch.swap(waiting_);
    ++runs_;
    if (batch.size() > largest_) largest_ = batch.size();
    lock.unlock();
    try {
      std::vector<Item*> items;
      items.reserve(batch.size());
      for (auto& w : batch) items.push_back(w.item);
      run_(items);
    } catch (...) {
      // Also when the list itself could not be built: every item must end.
      auto failure = std::current_exception();
      for (auto& w : batch) w.item->error = failure;
    }
    // Each `ended` is let go of once it has run, before the lock is taken
    // again: what it held (an upload whose client is gone, say) may be
    // released with it, and may take its time or submit again.
    // An `ended` must not throw: one that does ends the process rather
    // than leave this group running for ever with the rest of the batch.
    std::vector<Waiter> putOff;
    for (auto& w : batch) {
      if (w.item->putOff && !w.item->error) {
        w.item->putOff = false;
        putOff.push_back(std::move(w));
        continue;
      }
      [&w]() noexcept { std::exchange(w.ended, nullptr)(); }();
    }
    batch.clear();
    lock.lock();
    if (!putOff.empty()) {
      ++putOff_;
      waiting_.insert(waiting_.begin(), std::make_move_iterator(putOff.begin()),
                      std::make_move_iterator(putOff.end()));
    }
  }

  std::function<void(std::vector<Item*>&)> run_;
  mutable std::mutex mutex_;
  std::vector<Waiter> waiting_;
  bool running_ = false;
  size_t runs_ = 0;
  size_t largest_ = 0;
  size_t putOff_ = 0;
};

}  // namespace server
