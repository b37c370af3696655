// What a worker's threads need to know about draining. A draining worker
// answers every request with Connection: close, so keep-alive clients move to
// the new generation after their next response and never see an error.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace server {

class DrainState {
 public:
  bool draining() const { return draining_.load(std::memory_order_relaxed); }
  void startDraining() { draining_.store(true); }

  // Counted from accept() until the connection object is destroyed, so
  // connections waiting in the dispatcher's queue count too.
  void connectionOpened() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++open_;
  }
  void connectionClosed() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--open_ == 0) idle_.notify_all();
  }
  int openConnections() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return open_;
  }
  // Waits until no connection is open or `timeout` passes; returns whether idle.
  bool waitIdle(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return idle_.wait_for(lock, timeout, [this] { return open_ == 0; });
  }

 private:
  std::atomic<bool> draining_{false};
  mutable std::mutex mutex_;
  std::condition_variable idle_;
  int open_ = 0;
};

}  // namespace server
