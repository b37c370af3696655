#include "reload/heartbeats.h"

#include <sys/mman.h>

#include "reload/sys_error.h"

namespace reload {

static_assert(std::atomic<int64_t>::is_always_lock_free,
              "heartbeats rely on lock-free atomics across processes");

Heartbeats::Heartbeats() {
  void* map = mmap(nullptr, kWords * sizeof(std::atomic<int64_t>), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) throwSysError("mmap the workers' heartbeat words");
  words_ = static_cast<std::atomic<int64_t>*>(map);
}

Heartbeats::~Heartbeats() { munmap(words_, kWords * sizeof(std::atomic<int64_t>)); }

std::optional<size_t> Heartbeats::take() {
  for (size_t i = 0; i < kWords; ++i) {
    if (taken_[i]) continue;
    taken_[i] = true;
    words_[i].store(0, std::memory_order_relaxed);
    return i;
  }
  return std::nullopt;
}

void Heartbeats::giveBack(size_t word) {
  if (word < kWords) taken_[word] = false;
}

}  // namespace reload
