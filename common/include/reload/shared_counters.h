// Counters every process of a server adds to and the master reads: a small
// memfd mapped shared. Workers inherit the mapping through fork; the fd
// crosses a seamless reload like the listeners do, so counters keep counting
// across every reload (Prometheus counters must not reset).
#pragma once

#include <fcntl.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace reload {

class SharedCounters {
 public:
  static constexpr size_t kSlots = 64;
  // The seals a counters memfd carries: its size can never change.
  static constexpr int kRequiredSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

  // Maps `inheritedFd` if it is a memfd sealed at exactly the right size,
  // or creates a fresh zeroed, sealed region when it is -1. Throws
  // std::system_error (then `inheritedFd` is left open, not adopted).
  explicit SharedCounters(int inheritedFd = -1);
  ~SharedCounters();
  SharedCounters(const SharedCounters&) = delete;
  SharedCounters& operator=(const SharedCounters&) = delete;

  // The memfd (close-on-exec; cleared only across the master's own exec).
  int fd() const { return fd_; }
  std::atomic<uint64_t>& operator[](size_t slot) { return slots_[slot % kSlots]; }
  uint64_t load(size_t slot) const { return slots_[slot % kSlots].load(std::memory_order_relaxed); }
  void add(size_t slot, uint64_t n) { slots_[slot % kSlots].fetch_add(n, std::memory_order_relaxed); }

 private:
  int fd_ = -1;
  std::atomic<uint64_t>* slots_ = nullptr;
};

// Answers of each generation, which its probation judges: a ring of
// kGenerationRing entries of two slots (every answer, then 5xx answers)
// from slot kGenerationAnswers. The master clears a generation's entry
// before it starts it; a service adds to the entry of its worker's
// generation. The service's own slots must stay out of this range and off
// kStandbyGeneration and kLogRecordsDropped (below).
constexpr size_t kGenerationAnswers = 16;
constexpr size_t kGenerationRing = 8;
inline size_t generationAnswersSlot(uint64_t generation) {
  return kGenerationAnswers + static_cast<size_t>(generation % kGenerationRing) * 2;
}
inline size_t generationServerErrorsSlot(uint64_t generation) {
  return generationAnswersSlot(generation) + 1;
}

// The generation whose workers stand by while another is on probation, 0
// for none: the master stores it (release) before it sends SIGUSR1 (stand
// by) or SIGHUP (take over again) to those workers, and a worker woken by
// either loads it (acquire) and stands by iff it names its own generation
// (worker_signals.h). Only the master writes it; a service's own slots must
// leave it alone, as they do the generations' ring.
constexpr size_t kStandbyGeneration = 0;
static_assert(kStandbyGeneration < kGenerationAnswers ||
                  kStandbyGeneration >= kGenerationAnswers + 2 * kGenerationRing,
              "the standby word lies outside the generations' ring");

// Log records dropped because the log took nothing while its buffer was
// full, by every process of the server (log.h). Every process adds to it
// and the word crosses a seamless reload with the counters, so the count
// never resets; a service's own slots must leave it alone.
constexpr size_t kLogRecordsDropped = 7;
static_assert(kLogRecordsDropped != kStandbyGeneration, "the drop count has a word of its own");
static_assert(kLogRecordsDropped < kGenerationAnswers ||
                  kLogRecordsDropped >= kGenerationAnswers + 2 * kGenerationRing,
              "the drop count lies outside the generations' ring");
static_assert(kGenerationAnswers + 2 * kGenerationRing <= SharedCounters::kSlots,
              "the generations' ring fits in the counters");

static_assert(std::atomic<uint64_t>::is_always_lock_free,
              "shared counters rely on lock-free atomics across processes");

}  // namespace reload
