// alloc_counter: an LD_PRELOAD module that counts heap allocations
// (malloc, calloc, realloc, the aligned forms, and so operator new) in a
// process and in every process it forks or execs, in one 64-bit counter
// kept in a shared file mapping (MOLT_ALLOC_COUNTER_FILE), so that a
// benchmark reads the count of a running server from outside. Allocations
// per request are the counter's growth over a run of requests divided by
// their number (bench/allocs_per_request).
#include <fcntl.h>
#include <stddef.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>

extern "C" {
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t count, size_t size);
void* __libc_realloc(void* pointer, size_t size);
void* __libc_memalign(size_t alignment, size_t size);
void __libc_free(void* pointer);
}

namespace {

std::atomic<uint64_t>* counter = nullptr;
std::atomic<uint64_t> beforeMapped{0};  // counted before the mapping exists

void count() {
  if (auto* shared = __atomic_load_n(&counter, __ATOMIC_ACQUIRE)) shared->fetch_add(1, std::memory_order_relaxed);
  else beforeMapped.fetch_add(1, std::memory_order_relaxed);
}

// Maps the counter file (created if missing, never truncated: an exec'd
// image adds to the count its parent started). Without the variable, or
// when the file cannot be mapped, nothing is shared and the module only
// passes calls through.
__attribute__((constructor)) void mapCounter() {
  const char* path = getenv("MOLT_ALLOC_COUNTER_FILE");
  if (path == nullptr) return;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  if (ftruncate(fd, 4096) != 0) {
    close(fd);
    return;
  }
  void* map = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return;
  __atomic_store_n(&counter, static_cast<std::atomic<uint64_t>*>(map), __ATOMIC_RELEASE);
}

}  // namespace

extern "C" {

void* malloc(size_t size) {
  count();
  return __libc_malloc(size);
}

void* calloc(size_t members, size_t size) {
  count();
  return __libc_calloc(members, size);
}

void* realloc(void* pointer, size_t size) {
  count();
  return __libc_realloc(pointer, size);
}

void* memalign(size_t alignment, size_t size) {
  count();
  return __libc_memalign(alignment, size);
}

void* aligned_alloc(size_t alignment, size_t size) {
  count();
  return __libc_memalign(alignment, size);
}

int posix_memalign(void** result, size_t alignment, size_t size) {
  count();
  void* pointer = __libc_memalign(alignment, size);
  if (pointer == nullptr) return ENOMEM;
  *result = pointer;
  return 0;
}

void free(void* pointer) { __libc_free(pointer); }

}  // extern "C"
