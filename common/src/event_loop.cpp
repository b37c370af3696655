#include "reload/event_loop.h"

#include <time.h>

#include <algorithm>
#include <cerrno>

#include "reload/sys_error.h"

namespace reload {

int64_t monotonicMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

Timer::~Timer() { cancel(); }

void Timer::arm(int64_t deadlineMs) {
  if (armed_) {
    if (deadline_ == deadlineMs) return;
    loop_.removeTimer(this);
  }
  deadline_ = deadlineMs;
  armedAs_ = ++loop_.arms_;
  loop_.insertTimer(this);
  armed_ = true;
}

void Timer::cancel() {
  if (!armed_) return;
  loop_.removeTimer(this);
  armed_ = false;
}

bool EventLoop::earlier(const Timer* a, const Timer* b) {
  return a->deadline_ != b->deadline_ ? a->deadline_ < b->deadline_ : a->armedAs_ < b->armedAs_;
}

void EventLoop::place(size_t slot, Timer* timer) {
  timers_[slot] = timer;
  timer->slot_ = slot;
}

void EventLoop::siftUp(size_t slot) {
  Timer* timer = timers_[slot];
  while (slot > 0) {
    size_t parent = (slot - 1) / 2;
    if (!earlier(timer, timers_[parent])) break;
    place(slot, timers_[parent]);
    slot = parent;
  }
  place(slot, timer);
}

void EventLoop::siftDown(size_t slot) {
  Timer* timer = timers_[slot];
  const size_t count = timers_.size();
  for (;;) {
    size_t child = 2 * slot + 1;
    if (child >= count) break;
    if (child + 1 < count && earlier(timers_[child + 1], timers_[child])) ++child;
    if (!earlier(timers_[child], timer)) break;
    place(slot, timers_[child]);
    slot = child;
  }
  place(slot, timer);
}

void EventLoop::insertTimer(Timer* timer) {
  timers_.push_back(timer);
  siftUp(timers_.size() - 1);
}

void EventLoop::removeTimer(Timer* timer) {
  size_t slot = timer->slot_;
  Timer* last = timers_.back();
  timers_.pop_back();
  if (last == timer) return;
  place(slot, last);
  // The one moved in may belong above or below the slot.
  if (slot > 0 && earlier(last, timers_[(slot - 1) / 2])) siftUp(slot);
  else siftDown(slot);
}

EventLoop::EventLoop() : epoll_(epoll_create1(EPOLL_CLOEXEC)) {
  if (!epoll_) throwSysError("epoll_create1");
  nowMs_ = monotonicMs();
}

void EventLoop::add(int fd, uint32_t events, EventHandler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = nextToken_;
  // Fails (EEXIST) while the descriptor is still watched: that entry and
  // its handler stay as they are.
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
    throwSysError("epoll_ctl add fd " + std::to_string(fd));
  // A number still known here was closed without remove(): that entry
  // left the epoll set with its file and is forgotten now.
  if (auto stale = tokens_.find(fd); stale != tokens_.end()) {
    handlers_.erase(stale->second);
    tokens_.erase(stale);
  }
  tokens_.emplace(fd, nextToken_);
  handlers_.emplace(nextToken_, handler);
  ++nextToken_;
}

void EventLoop::modify(int fd, uint32_t events) {
  auto it = tokens_.find(fd);
  if (it == tokens_.end()) throwSysError("epoll_ctl modify fd " + std::to_string(fd), ENOENT);
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = it->second;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0)
    throwSysError("epoll_ctl modify fd " + std::to_string(fd));
}

void EventLoop::remove(int fd) {
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  auto it = tokens_.find(fd);
  if (it == tokens_.end()) return;
  handlers_.erase(it->second);
  tokens_.erase(it);
}

void EventLoop::updateClock() { nowMs_ = monotonicMs(); }

void EventLoop::runOnce(int maxWaitMs) {
  int wait = maxWaitMs;
  if (!timers_.empty()) {
    int64_t untilNext = timers_.front()->deadline_ - nowMs_;
    if (untilNext < 0) untilNext = 0;
    if (wait < 0 || untilNext < wait) wait = static_cast<int>(std::min<int64_t>(untilNext, 1 << 30));
  }
  epoll_event events[256];
  int n = epoll_wait(epoll_.get(), events, 256, wait);
  if (n < 0 && errno != EINTR) throwSysError("epoll_wait");
  updateClock();
  for (int i = 0; i < n; ++i) {
    // Looked up for each event: an earlier handler of this batch may have
    // removed this one.
    auto it = handlers_.find(events[i].data.u64);
    if (it != handlers_.end()) it->second->onEvents(events[i].events);
  }
  // A timer that fires may arm itself or others again; those wait for the
  // next turn unless already due.
  while (!timers_.empty() && timers_.front()->deadline_ <= nowMs_) {
    Timer* timer = timers_.front();
    removeTimer(timer);
    timer->armed_ = false;
    timer->onTimer();
  }
}

void WatchedFd::watch(Fd fd, uint32_t events) {
  reset();
  loop_.add(fd.get(), events, this);
  fd_ = std::move(fd);
}

void WatchedFd::reset() {
  if (!fd_) return;
  loop_.remove(fd_.get());
  fd_.reset();
}

}  // namespace reload
