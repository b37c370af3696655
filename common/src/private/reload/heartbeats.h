// One word per worker that its event loop stamps (WorkerSignals does, every
// kHeartbeatIntervalMs, with the monotonic clock in ms), so that the master
// sees a worker that is alive but whose loop no longer turns: it fails the
// probation of its generation (probation.h, kHeartbeatTimeoutMs). The words
// are an anonymous shared mapping the master makes before it forks any
// worker; the workers inherit it. It does not cross a seamless exec: a new
// image judges only the workers it forked itself.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace reload {

class Heartbeats {
 public:
  static constexpr size_t kWords = 1024;
  // Throws std::system_error when the mapping cannot be made.
  Heartbeats();
  ~Heartbeats();
  Heartbeats(const Heartbeats&) = delete;
  Heartbeats& operator=(const Heartbeats&) = delete;

  // A free word, cleared to 0 (never stamped), or nothing when all are
  // taken: that worker is then not judged by its heartbeat.
  std::optional<size_t> take();
  void giveBack(size_t word);
  std::atomic<int64_t>* word(size_t index) { return &words_[index]; }
  int64_t load(size_t index) const { return words_[index].load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t>* words_ = nullptr;
  std::vector<bool> taken_ = std::vector<bool>(kWords, false);
};

}  // namespace reload
