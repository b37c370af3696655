// One epoll loop per process: descriptors with a handler each, a
// timer queue ordered by deadline and a millisecond clock read once per turn.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <map>

#include "reload/fd.h"

namespace reload {

class EventHandler {
 public:
  virtual ~EventHandler() = default;
  virtual void onEvents(uint32_t events) = 0;
};

class EventLoop;

// A deadline a handler waits on. At most one pending deadline per timer;
// setting it again moves it. Entries leave the queue when they fire or are
// cancelled, so the queue holds only live deadlines.
class Timer {
 public:
  explicit Timer(EventLoop& loop) : loop_(loop) {}
  virtual ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  void arm(int64_t deadlineMs);
  void cancel();
  bool armed() const { return armed_; }
  int64_t deadline() const { return deadline_; }
  virtual void onTimer() = 0;

 private:
  friend class EventLoop;
  EventLoop& loop_;
  bool armed_ = false;
  int64_t deadline_ = 0;
  std::multimap<int64_t, Timer*>::iterator entry_;
};

class EventLoop {
 public:
  EventLoop();
  // Edge-triggered unless `levelTriggered`. Throws std::system_error.
  void add(int fd, uint32_t events, EventHandler* handler);
  void remove(int fd);
  // Waits at most `maxWaitMs` (or until the next timer) and dispatches what
  // is ready, then the timers that are due.
  void runOnce(int maxWaitMs);
  int64_t nowMs() const { return nowMs_; }
  void updateClock();
  size_t pendingTimers() const { return timers_.size(); }

 private:
  friend class Timer;
  reload::Fd epoll_;
  int64_t nowMs_ = 0;
  std::multimap<int64_t, Timer*> timers_;
};

// Milliseconds on the monotonic clock.
int64_t monotonicMs();

}  // namespace reload
