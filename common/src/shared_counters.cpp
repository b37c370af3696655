#include "reload/shared_counters.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <string>
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
  } else {
    // A region smaller than the mapping would SIGBUS every worker that
    // touches it: only a memfd of exactly the right size is adopted.
    struct stat st {};
    if (fstat(fd_, &st) != 0) throwSysError("fstat the counters fd");
    if (!S_ISREG(st.st_mode) || static_cast<size_t>(st.st_size) != kBytes)
      throw std::system_error(EINVAL, std::generic_category(),
                              "counters fd " + std::to_string(fd_) + " is not a " +
                                  std::to_string(kBytes) + "-byte memory file");
    if (fcntl(fd_, F_SETFD, FD_CLOEXEC) != 0) throwSysError("FD_CLOEXEC on the counters fd");
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
