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

static_assert(std::atomic<uint64_t>::is_always_lock_free,
              "shared counters rely on lock-free atomics across processes");

}  // namespace reload
