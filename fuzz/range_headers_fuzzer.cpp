// Range and conditional headers as a client sends them: whatever the bytes,
// a satisfiable range lies inside the object and the parsers never crash.
#include <cstdint>
#include <cstring>
#include <string>

#include "http_handlers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < sizeof(uint64_t)) return 0;
  uint64_t objectSize = 0;
  std::memcpy(&objectSize, data, sizeof objectSize);
  std::string header(reinterpret_cast<const char*>(data) + sizeof objectSize,
                     size - sizeof objectSize);
  server::ByteRange range;
  if (server::parseRange(header, objectSize, range) == server::RangeResult::kSatisfiable) {
    if (range.first > range.last || range.last >= objectSize) __builtin_trap();
  }
  const std::string etag = "d41d8cd98f00b204e9800998ecf8427e";
  bool listed = server::etagListMatches(header, etag);
  if (header == "*" && !listed) __builtin_trap();
  return 0;
}
