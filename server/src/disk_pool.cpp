#include "disk_pool.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <system_error>
#include <vector>

#include "object_store.h"
#include "reload/log.h"
#include "reload/sys_error.h"

namespace server {

DiskPool::DiskPool(reload::EventLoop& loop, int threads, int startNow)
    : wake_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!wake_) reload::throwSysError("eventfd for the disk pool");
  loop.add(wake_.get(), EPOLLIN | EPOLLET, this);
  wanted_ = static_cast<size_t>(std::max(threads, 0));
  const size_t now = startNow < 0 ? wanted_ : std::min(wanted_, static_cast<size_t>(startNow));
  std::lock_guard<std::mutex> lock(mutex_);
  for (size_t i = 0; i < now; ++i) threads_.emplace_back([this] { run(); });
}

DiskPool::~DiskPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;  // no thread starts another from now on
  }
  ready_.notify_all();
  for (size_t i = 0;; ++i) {
    std::thread t;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (i >= threads_.size()) break;
      t = std::move(threads_[i]);
    }
    t.join();
  }
}

void DiskPool::startRest() {
  std::lock_guard<std::mutex> lock(mutex_);
  chained_ = true;
  startOneLocked();
}

void DiskPool::startOneLocked() {
  if (stopping_ || !chained_ || threads_.size() >= wanted_) return;
  try {
    threads_.emplace_back([this] {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        startOneLocked();
      }
      run();
    });
  } catch (const std::system_error& e) {
    MOLT_LOG(kWarning) << "disk pool: cannot start thread " << threads_.size() + 1 << " of "
                       << wanted_ << ": " << e.what() << "; working with " << threads_.size();
  }
}

size_t DiskPool::threadCount() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return threads_.size();
}

void DiskPool::submit(std::function<void()> work, std::function<void()> done, Failed failed) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks_.push_back(Task{std::move(work), {}, std::move(done), std::move(failed)});
  }
  ready_.notify_one();
}

size_t DiskPool::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return tasks_.size();
}

void DiskPool::submitDeferred(std::function<void(Finish)> work, std::function<void()> done,
                              Failed failed) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks_.push_back(Task{{}, std::move(work), std::move(done), std::move(failed)});
  }
  ready_.notify_one();
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
    if (task.deferredWork) {
      // Shared by the finish handed out and a throw here: whichever comes
      // first ends the task, once.
      struct End {
        std::function<void()> done;
        Failed failed;
        std::atomic<bool> taken{false};
      };
      auto end = std::make_shared<End>();
      end->done = std::move(task.done);
      end->failed = std::move(task.failed);
      auto finish = [this, end](std::exception_ptr failure) {
        if (end->taken.exchange(true)) return;
        finished(std::move(end->done), std::move(end->failed), failure);
      };
      try {
        task.deferredWork(finish);
      } catch (...) {
        finish(std::current_exception());
      }
      continue;
    }
    std::exception_ptr failure;
    try {
      task.work();
    } catch (...) {
      failure = std::current_exception();
    }
    finished(std::move(task.done), std::move(task.failed), failure);
  }
}

void DiskPool::finished(std::function<void()> done, Failed failed, std::exception_ptr failure) {
  std::function<void()> next = std::move(done);
  if (failure) {
    int status = 500;
    std::string text;
    try {
      std::rethrow_exception(failure);
    } catch (const StoreError& e) {
      status = e.status();
      text = e.what();
    } catch (const std::exception& e) {
      text = e.what();
    } catch (...) {
      text = "an exception of unknown type";
    }
    MOLT_LOG(kError) << "a disk task failed (answered " << status << "): " << text;
    if (status == 500) text = "internal error; the server log has the details";
    if (failed) next = [failed = std::move(failed), status, text] { failed(status, text); };
  }
  if (!next) return;  // nothing for the loop to do
  bool first;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    first = finished_.empty();
    finished_.push_back(std::move(next));
  }
  if (first) {
    uint64_t one = 1;
    // EAGAIN means the counter is already non-zero: the loop will look.
    if (write(wake_.get(), &one, sizeof one) < 0) {
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

namespace {

// cachestat(2) has no wrapper in glibc 2.36 nor a definition in its headers.
constexpr long kCachestatSyscall = 451;
struct CachestatRange {
  uint64_t off;
  uint64_t len;
};
struct Cachestat {
  uint64_t nrCache;
  uint64_t nrDirty;
  uint64_t nrWriteback;
  uint64_t nrEvicted;
  uint64_t nrRecentlyEvicted;
};
// Set once a call said ENOSYS (an older kernel) or EPERM (a filter forbids
// it). Only the loop asks.
bool cachestatMissing = false;

uint64_t pagesSpanned(off_t offset, uint64_t length, uint64_t page) {
  uint64_t first = static_cast<uint64_t>(offset) / page;
  uint64_t last = (static_cast<uint64_t>(offset) + length + page - 1) / page;
  return last - first;
}

bool mincoreHolds(int fd, off_t offset, uint64_t length, uint64_t page) {
  off_t start = offset - static_cast<off_t>(static_cast<uint64_t>(offset) % page);
  size_t span = static_cast<size_t>(static_cast<uint64_t>(offset - start) + length);
  void* map = mmap(nullptr, span, PROT_READ, MAP_SHARED, fd, start);
  if (map == MAP_FAILED) return true;
  std::vector<unsigned char> resident(pagesSpanned(offset, length, page));
  bool all = mincore(map, span, resident.data()) != 0;  // cannot tell: send
  if (!all) {
    all = true;
    for (unsigned char r : resident)
      if (!(r & 1)) all = false;
  }
  if (munmap(map, span) != 0)
    MOLT_LOG(kWarning) << "munmap of a residency check: " << std::strerror(errno);
  return all;
}

}  // namespace

bool pageCacheHolds(int fd, off_t offset, uint64_t length) {
  if (length == 0) return true;
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (!cachestatMissing) {
    CachestatRange range{static_cast<uint64_t>(offset), length};
    Cachestat stat{};
    if (syscall(kCachestatSyscall, fd, &range, &stat, 0) == 0)
      return stat.nrCache >= pagesSpanned(offset, length, page);
    if (errno != ENOSYS && errno != EPERM) return true;
    cachestatMissing = true;
  }
  return mincoreHolds(fd, offset, length, page);
}

void readIntoPageCache(int fd, off_t offset, uint64_t length) {
  constexpr size_t kPiece = 256 * 1024;
  thread_local std::unique_ptr<char[]> sink(new char[kPiece]);
  // The whole range is asked for at once, so that the disk sees it as one
  // queue of reads; the reads below wait for it piece by piece. Advice only:
  // refused, the reads below still fetch it, one piece at a time.
  if (posix_fadvise(fd, offset, static_cast<off_t>(length), POSIX_FADV_WILLNEED) != 0) {
  }
  while (length > 0) {
    ssize_t n = pread(fd, sink.get(), std::min<uint64_t>(length, kPiece), offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    offset += n;
    length -= static_cast<uint64_t>(n);
  }
}

}  // namespace server
