#include "reload/shared_counters.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "reload/sys_error.h"

namespace reload {

SharedCounters::SharedCounters(int inheritedFd) {
  constexpr size_t kBytes = kSlots * sizeof(std::atomic<uint64_t>);
  fd_ = inheritedFd;
  if (fd_ < 0) {
    fd_ = memfd_create("moltd-counters", MFD_CLOEXEC);
    if (fd_ < 0) throwSysError("memfd_create for counters");
    if (ftruncate(fd_, kBytes) != 0) {
      int err = errno;
      close(fd_);
      throwSysError("ftruncate counters", err);
    }
  } else if (fcntl(fd_, F_SETFD, FD_CLOEXEC) != 0) {
    throwSysError("FD_CLOEXEC on the counters fd");
  }
  void* map = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (map == MAP_FAILED) {
    int err = errno;
    close(fd_);
    throwSysError("mmap counters", err);
  }
  slots_ = static_cast<std::atomic<uint64_t>*>(map);
}

SharedCounters::~SharedCounters() {
  munmap(slots_, kSlots * sizeof(std::atomic<uint64_t>));
  close(fd_);
}

}  // namespace reload
