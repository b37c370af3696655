#include "reload/shared_counters.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <string>
#include <unistd.h>

#include "reload/process.h"
#include "reload/sys_error.h"

namespace reload {

SharedCounters::SharedCounters(int inheritedFd) {
  constexpr size_t kBytes = kSlots * sizeof(std::atomic<uint64_t>);
  fd_ = inheritedFd;
  if (fd_ < 0) {
    fd_ = memfd_create((serviceName() + "-counters").c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd_ < 0) throwSysError("memfd_create for counters");
    // Sealed at its size, so that no holder of the descriptor can shrink it
    // under the mappings (every worker would then die of SIGBUS).
    if (ftruncate(fd_, kBytes) != 0 || fcntl(fd_, F_ADD_SEALS, kRequiredSeals) != 0) {
      int err = errno;
      close(fd_);
      throwSysError("size and seal the counters memfd", err);
    }
  } else {
    // Only a memfd sealed at exactly this size is adopted: any other file
    // could be truncated under the mapping by whoever else holds it.
    int seals = fcntl(fd_, F_GET_SEALS);
    if (seals < 0)
      throwSysError("counters fd " + std::to_string(fd_) + " is not a sealable memory file");
    if ((seals & kRequiredSeals) != kRequiredSeals)
      throw std::system_error(EPERM, std::generic_category(),
                              "counters fd " + std::to_string(fd_) +
                                  " is not sealed against shrinking, growing and resealing");
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
