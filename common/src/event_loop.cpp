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
    loop_.timers_.erase(entry_);
  }
  deadline_ = deadlineMs;
  entry_ = loop_.timers_.emplace(deadlineMs, this);
  armed_ = true;
}

void Timer::cancel() {
  if (!armed_) return;
  loop_.timers_.erase(entry_);
  armed_ = false;
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
    int64_t untilNext = timers_.begin()->first - nowMs_;
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
  while (!timers_.empty() && timers_.begin()->first <= nowMs_) {
    Timer* timer = timers_.begin()->second;
    timers_.erase(timers_.begin());
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
