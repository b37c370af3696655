// A short-lived helper process whose answer the master waits for (a
// configuration check, a validation, a disk probe): started through
// spawnChild, its output read from a non-blocking pipe up to a limit, its
// deadline enforced with SIGKILL, its exit status reported with the output.
//
// The master never blocks on it: readOutput() takes only what is there, and
// a child stuck past its deadline (a hung mount may ignore even SIGKILL)
// can be given up on without waiting for its exit.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

#include "reload/event_loop.h"
#include "reload/fd.h"

namespace reload {

class ChildTask {
 public:
  struct Outcome {
    int status = 0;         // as waitpid gives it; 0 when given up on
    bool timedOut = false;  // killed (or given up on) at its deadline
    std::string output;     // at most the limit
    bool truncated = false;  // the child wrote more than the limit
  };

  // `onTimeout` runs on the loop once the child was killed at its
  // deadline; its exit is still reported to finish() unless giveUp() is
  // called.
  explicit ChildTask(EventLoop& loop, std::function<void()> onTimeout = {});
  ChildTask(const ChildTask&) = delete;
  ChildTask& operator=(const ChildTask&) = delete;

  // Forks a child named `name` (`purpose` names it in errors) that runs `body` with the write end of the
  // output pipe (its only descriptor besides stdio that the task provides;
  // body closes whatever else it must). Keeps at most `outputLimit` bytes
  // of what it writes; the rest is read and dropped so that the child never
  // blocks on a full pipe. Throws std::system_error (pipe, fork); then the
  // task is not running.
  void start(const std::string& name, const std::string& purpose, size_t outputLimit,
             int64_t deadlineMs, const std::function<int(int outputFd)>& body);

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // The pipe's read end, watched on the loop; -1 once the child closed it.
  int outputFd() const { return output_.get(); }
  bool timedOut() const { return timedOut_; }

  // The child was reaped with `status`: takes the rest of its output and
  // ends the task.
  Outcome finish(int status);
  // Ends the task without waiting for the child (after its deadline); its
  // exit is reaped as any unknown child's.
  Outcome giveUp();
  // Kills a running child (shutdown); it is still reaped through finish().
  void kill();
  // Kills a running child and brings its deadline forward to `graceMs` from
  // now: a stop waits that long at most for it to be reaped, then it is
  // handled as at its own deadline (onTimeout), so a helper that a hung
  // mount keeps from dying never holds up the stop.
  void stop(int64_t graceMs);

 private:
  void readOutput();
  void onDeadline();
  Outcome end(int status);

  EventLoop& loop_;
  std::function<void()> onTimeout_;
  WatchedFd output_;
  FunctionTimer deadline_;
  pid_t pid_ = 0;
  std::string text_;
  size_t limit_ = 0;
  bool truncated_ = false;
  bool timedOut_ = false;
};

}  // namespace reload
