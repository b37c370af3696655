// A few threads that take the disk work that may block (fsync, rename,
// writes of uploads, deletes, listings, cold opens) off the event loop.
// Completions come back to the loop through an eventfd, in the loop's
// thread. Create it after the worker's signal mask is in place: the threads
// inherit it and never take a signal.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "reload/event_loop.h"
#include "reload/fd.h"

namespace server {

class DiskPool : public reload::EventHandler {
 public:
  // Starts `startNow` of its `threads` at once (all of them when negative
  // or larger); startRest() starts the others. Throws std::system_error
  // when one of those started at once cannot be.
  DiskPool(reload::EventLoop& loop, int threads, int startNow = -1);
  ~DiskPool() override;
  // Starts the threads not started yet, off the calling thread: it starts
  // one, and each new thread starts the next before it takes work. So a
  // worker pays for one thread before its first accept, not for all of
  // them. A thread that cannot be started is logged; the pool works with
  // those it has.
  void startRest();
  size_t threadCount() const;
  // What a failed task's request is answered with.
  using Failed = std::function<void(int status, const std::string& text)>;
  // `work` runs on a pool thread; `done` then runs on the loop (if given). A `work`
  // that throws is logged and ends there: `failed` runs instead of `done`
  // (with the StoreError's status and text, or 500), or `done` when no
  // `failed` is given. Nothing else is touched: the pool and the loop go on.
  void submit(std::function<void()> work, std::function<void()> done, Failed failed = {});
  // A task that ends later, maybe on another thread: `work` runs on a pool
  // thread and hands its end on by calling `finish` once, from any thread,
  // with nothing (then `done` runs on the loop) or the failure (then
  // `failed`, as for a throw). A `work` that throws must not have called
  // `finish`: the throw is its end. The thread is free as soon as `work`
  // returns, so what waits on a slow disk holds no pool thread.
  using Finish = std::function<void(std::exception_ptr failure)>;
  void submitDeferred(std::function<void(Finish finish)> work, std::function<void()> done,
                      Failed failed = {});
  size_t queued() const;
  void onEvents(uint32_t events) override;

 private:
  struct Task {
    std::function<void()> work;
    std::function<void(Finish)> deferredWork;
    std::function<void()> done;
    Failed failed;
  };
  void run();
  // Starts one more thread if the pool wants more. Holds mutex_.
  void startOneLocked();
  // Hands what follows a task's end (done, or failed with the failure's
  // answer) to the loop. Any thread.
  void finished(std::function<void()> done, Failed failed, std::exception_ptr failure);

  reload::Fd wake_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Task> tasks_;
  std::vector<std::function<void()>> finished_;
  bool stopping_ = false;
  size_t wanted_ = 0;     // threads started, or to start after startRest()
  bool chained_ = false;  // startRest() was called
  std::vector<std::thread> threads_;  // guarded by mutex_ (a thread starts the next)
};

// Whether every page of [offset, offset + length) of a file is in the page
// cache, so that sendfile() of that range will not wait for the disk. Asks
// cachestat() (Linux 6.5) or, before it, mincore() on a mapping of the range;
// answers true when neither can tell, so a caller falls back to sending.
bool pageCacheHolds(int fd, off_t offset, uint64_t length);

// Reads [offset, offset + length) of a file and throws the bytes away: what
// is left is the range in the page cache. For pool threads: it waits on the
// disk. Errors are left for the sender to meet.
void readIntoPageCache(int fd, off_t offset, uint64_t length);

}  // namespace server
