#include "reload/event_loop.h"

#include <time.h>

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
  ev.data.ptr = handler;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
    throwSysError("epoll_ctl add fd " + std::to_string(fd));
}

void EventLoop::remove(int fd) { epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr); }

void EventLoop::updateClock() { nowMs_ = monotonicMs(); }

void EventLoop::runOnce(int maxWaitMs) {
  int wait = maxWaitMs;
  if (!timers_.empty()) {
    int64_t untilNext = timers_.begin()->first - nowMs_;
    if (untilNext < wait) wait = untilNext < 0 ? 0 : static_cast<int>(untilNext);
  }
  epoll_event events[256];
  int n = epoll_wait(epoll_.get(), events, 256, wait);
  if (n < 0 && errno != EINTR) throwSysError("epoll_wait");
  updateClock();
  for (int i = 0; i < n; ++i)
    static_cast<EventHandler*>(events[i].data.ptr)->onEvents(events[i].events);
  // A timer that fires may arm itself or others again; those wait for the
  // next turn unless already due.
  while (!timers_.empty() && timers_.begin()->first <= nowMs_) {
    Timer* timer = timers_.begin()->second;
    timers_.erase(timers_.begin());
    timer->armed_ = false;
    timer->onTimer();
  }
}

}  // namespace reload
