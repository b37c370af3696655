// One epoll loop per process: descriptors with a handler each, a
// timer queue ordered by deadline and a millisecond clock read once per turn.
// Arming, moving and cancelling a timer allocate nothing (the queue is a
// heap of the timers themselves), so a connection may re-arm its deadline
// on every request.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

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
// cancelled, so the queue holds only live deadlines. Timers due at the same
// millisecond fire in the order they were armed.
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

 protected:
  EventLoop& loop() const { return loop_; }

 private:
  friend class EventLoop;
  EventLoop& loop_;
  bool armed_ = false;
  int64_t deadline_ = 0;
  uint64_t armedAs_ = 0;  // the loop's count of arms when this one was armed: ties
  size_t slot_ = 0;       // its place in the loop's heap, while armed
};

// Descriptors are dispatched by a token that add() hands out, never by
// their number or the handler's address: a handler that remove()s another
// descriptor (and maybe destroys its handler, or opens a new descriptor
// under the same number) while events of one epoll_wait are dispatched
// keeps the other's pending events from being delivered.
//
// A descriptor must be remove()d before it is closed if another process
// may share its open file (a forked child): epoll keeps watching the file
// itself, and a level-triggered entry left behind would wake the loop for
// ever. A descriptor closed without remove() is forgotten when its number
// is add()ed again.
class EventLoop {
 public:
  EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;
  // Level-triggered unless `events` holds EPOLLET. Throws std::system_error.
  void add(int fd, uint32_t events, EventHandler* handler);
  // Changes the events watched for. Throws std::system_error.
  void modify(int fd, uint32_t events);
  void remove(int fd);
  bool watching(int fd) const { return tokens_.count(fd) != 0; }
  // Waits at most `maxWaitMs` (negative: no limit but the next timer) and
  // dispatches what is ready, then the timers that are due.
  void runOnce(int maxWaitMs);
  int64_t nowMs() const { return nowMs_; }
  void updateClock();
  size_t pendingTimers() const { return timers_.size(); }
  size_t watchedDescriptors() const { return tokens_.size(); }

 private:
  friend class Timer;
  // The timer heap: earliest (deadline, armedAs) first; each timer knows
  // its slot. The vector keeps its capacity, so no arm allocates once it
  // has held as many timers.
  static bool earlier(const Timer* a, const Timer* b);
  void place(size_t slot, Timer* timer);
  void siftUp(size_t slot);
  void siftDown(size_t slot);
  void insertTimer(Timer* timer);
  void removeTimer(Timer* timer);
  reload::Fd epoll_;
  int64_t nowMs_ = 0;
  std::vector<Timer*> timers_;
  uint64_t arms_ = 0;
  uint64_t nextToken_ = 1;
  std::unordered_map<int, uint64_t> tokens_;              // fd -> its token
  std::unordered_map<uint64_t, EventHandler*> handlers_;  // token -> handler
};

// A timer that runs a function.
class FunctionTimer : public Timer {
 public:
  FunctionTimer(EventLoop& loop, std::function<void()> fire)
      : Timer(loop), fire_(std::move(fire)) {}
  void onTimer() override {
    auto fire = fire_;  // the call may destroy this timer
    fire();
  }
  // Arms the timer `ms` from the loop's clock.
  void armIn(int64_t ms) { arm(loop().nowMs() + ms); }

 private:
  std::function<void()> fire_;
};

// A handler that runs a function; the descriptor is owned elsewhere.
class FunctionHandler : public EventHandler {
 public:
  explicit FunctionHandler(std::function<void(uint32_t events)> handle)
      : handle_(std::move(handle)) {}
  void onEvents(uint32_t events) override { handle_(events); }

 private:
  std::function<void(uint32_t events)> handle_;
};

// Owns a descriptor and its place on a loop: it leaves the loop before it
// is closed. Not movable (the loop holds its address).
class WatchedFd : public EventHandler {
 public:
  using Callback = std::function<void(uint32_t events)>;
  WatchedFd(EventLoop& loop, Callback callback) : loop_(loop), callback_(std::move(callback)) {}
  WatchedFd(const WatchedFd&) = delete;
  WatchedFd& operator=(const WatchedFd&) = delete;
  ~WatchedFd() override { reset(); }
  // Takes `fd` and watches it for `events` (level-triggered unless
  // EPOLLET). Throws std::system_error; `fd` is closed then.
  void watch(Fd fd, uint32_t events);
  // Leaves the loop and closes the descriptor.
  void reset();
  int get() const { return fd_.get(); }
  explicit operator bool() const { return fd_.valid(); }
  void onEvents(uint32_t events) override {
    auto callback = callback_;  // the call may destroy this object
    callback(events);
  }

 private:
  EventLoop& loop_;
  Callback callback_;
  Fd fd_;
};

// Milliseconds on the monotonic clock.
int64_t monotonicMs();

}  // namespace reload
