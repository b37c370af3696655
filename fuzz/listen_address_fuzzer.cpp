// `bind` entries as an operator types them: refused with a reason
// (std::invalid_argument) or accepted in a form that parses back to itself.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "reload/listen_address.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  reload::ListenAddress address;
  try {
    address = reload::ListenAddress::parse(text);
  } catch (const std::invalid_argument&) {
    return 0;
  }
  std::string shown = address.toString();
  if (reload::ListenAddress::parse(shown).toString() != shown) __builtin_trap();
  if (address.kind == reload::ListenAddress::Kind::kTcp && (address.port < 0 || address.port > 65535))
    __builtin_trap();
  return 0;
}
