// What the synchronizer and the new image send each other over pipes: a
// malformed message is refused with std::invalid_argument or reported as a
// failure, an incomplete one waits for more bytes, and a decoded one survives
// a round trip.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "reload/handoff.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    if (auto report = reload::decodeSyncReport(bytes)) {
      auto again = reload::decodeSyncReport(reload::encodeSyncReport(*report));
      if (!again || again->syncPid != report->syncPid || again->signalled != report->signalled ||
          again->alreadyGone != report->alreadyGone)
        __builtin_trap();
    }
  } catch (const std::invalid_argument&) {
  }
  if (auto msg = reload::decodeNotify(bytes)) {
    auto again = reload::decodeNotify(reload::encodeNotify(*msg));
    if (!again || again->kind != msg->kind) __builtin_trap();
  }
  return 0;
}
