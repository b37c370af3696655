#include "disk_pool.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include "reload/sys_error.h"

namespace server {

DiskPool::DiskPool(reload::EventLoop& loop, int threads) : wake_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!wake_) reload::throwSysError("eventfd for the disk pool");
  loop.add(wake_.get(), EPOLLIN | EPOLLET, this);
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

DiskPool::~DiskPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (auto& t : threads_) t.join();
}

void DiskPool::submit(std::function<void()> work, std::function<void()> done) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks_.push_back(Task{std::move(work), std::move(done)});
  }
  ready_.notify_one();
}

size_t DiskPool::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return tasks_.size();
}

void DiskPool::run() {
  for (;;) {
    Task task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ready_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task.work();
    bool first;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      first = finished_.empty();
      finished_.push_back(std::move(task.done));
    }
    if (first) {
      uint64_t one = 1;
      // EAGAIN means the counter is already non-zero: the loop will look.
      if (write(wake_.get(), &one, sizeof one) < 0) {
      }
    }
  }
}

void DiskPool::onEvents(uint32_t /*events*/) {
  uint64_t count;
  while (read(wake_.get(), &count, sizeof count) > 0) {
  }
  std::vector<std::function<void()>> done;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done.swap(finished_);
  }
  for (auto& fn : done) fn();
}

}  // namespace server
