// Errors from system calls carry errno and what was being attempted.
#pragma once

#include <cerrno>
#include <string>
#include <system_error>

namespace reload {

inline std::system_error sysError(const std::string& context, int err = errno) {
  return std::system_error(err, std::generic_category(), context);
}

[[noreturn]] inline void throwSysError(const std::string& context, int err = errno) {
  throw sysError(context, err);
}

// Retries a system call that failed with EINTR.
template <typename F>
auto retryEintr(F&& call) -> decltype(call()) {
  decltype(call()) result;
  do {
    result = call();
  } while (result == -1 && errno == EINTR);
  return result;
}

}  // namespace reload
