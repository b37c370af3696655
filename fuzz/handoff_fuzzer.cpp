// The state one image hands the next across the exec: text that is not a
// valid handoff is refused with std::invalid_argument, and anything accepted
// is within the bounds validateHandoff enforces (pids above 1, fds from 3,
// bounded counts) and survives a round trip.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "reload/handoff.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  reload::HandoffEnv env;
  try {
    env = reload::decodeHandoffText(text);
  } catch (const std::invalid_argument&) {
    return 0;
  }
  try {
    reload::validateHandoff(env);
  } catch (const std::invalid_argument&) {
    __builtin_trap();  // decoding accepted what validation refuses
  }
  for (const auto& child : env.children)
    if (child.pid <= 1) __builtin_trap();
  reload::HandoffEnv again = reload::decodeHandoffText(reload::encodeHandoffText(env));
  if (again.children.size() != env.children.size() || again.syncPid != env.syncPid ||
      again.notifyFd != env.notifyFd || again.stateFd != env.stateFd ||
      again.lastGeneration != env.lastGeneration || again.pending != env.pending ||
      again.previousConfig != env.previousConfig)
    __builtin_trap();
  return 0;
}
