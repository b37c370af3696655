#include "reload/child_task.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "reload/log.h"
#include "reload/process.h"
#include "reload/sys_error.h"

namespace reload {

ChildTask::ChildTask(EventLoop& loop, std::function<void()> onTimeout)
    : loop_(loop),
      onTimeout_(std::move(onTimeout)),
      output_(loop, [this](uint32_t) { readOutput(); }),
      deadline_(loop, [this] { onDeadline(); }) {}

void ChildTask::start(const std::string& name, const std::string& purpose, size_t outputLimit,
                      int64_t deadlineMs, const std::function<int(int outputFd)>& body) {
  int pipeFds[2];
  if (pipe2(pipeFds, O_CLOEXEC) != 0) throwSysError("pipe for " + purpose);
  Fd readEnd(pipeFds[0]);
  Fd writeEnd(pipeFds[1]);
  if (fcntl(readEnd.get(), F_SETFL, O_NONBLOCK) != 0) throwSysError("O_NONBLOCK for " + purpose);
  const int readFd = readEnd.get();
  // Level-triggered: what is not read in one turn is read in the next.
  output_.watch(std::move(readEnd), EPOLLIN);
  log::flush();
  try {
    pid_ = spawnChild(name, [&]() -> int {
      log::removeSinks();
      close(readFd);  // not through output_: the child must not touch the loop
      return body(writeEnd.get());
    });
  } catch (...) {
    output_.reset();
    throw;
  }
  text_.clear();
  limit_ = outputLimit;
  truncated_ = false;
  timedOut_ = false;
  deadline_.arm(deadlineMs);
}

void ChildTask::readOutput() {
  char buf[16384];
  while (output_) {
    ssize_t n = read(output_.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      output_.reset();
      return;
    }
    size_t room = limit_ - text_.size();
    size_t got = static_cast<size_t>(n);
    if (got > room) truncated_ = true;
    text_.append(buf, std::min(got, room));
  }
}

void ChildTask::onDeadline() {
  if (!running()) return;
  timedOut_ = true;
  kill();
  if (!onTimeout_) return;
  auto onTimeout = onTimeout_;  // the call may end this task
  onTimeout();
}

void ChildTask::kill() {
  // The pid is not reaped yet, so it cannot name another process.
  if (running()) ::kill(pid_, SIGKILL);
}

void ChildTask::stop(int64_t graceMs) {
  if (!running()) return;
  kill();
  int64_t at = loop_.nowMs() + graceMs;
  if (!deadline_.armed() || deadline_.deadline() > at) deadline_.arm(at);
}

ChildTask::Outcome ChildTask::finish(int status) {
  readOutput();
  return end(status);
}

ChildTask::Outcome ChildTask::giveUp() { return end(0); }

ChildTask::Outcome ChildTask::end(int status) {
  Outcome outcome;
  outcome.status = status;
  outcome.timedOut = timedOut_;
  outcome.output = std::move(text_);
  outcome.truncated = truncated_;
  pid_ = 0;
  output_.reset();
  deadline_.cancel();
  text_.clear();
  timedOut_ = false;
  return outcome;
}

}  // namespace reload
