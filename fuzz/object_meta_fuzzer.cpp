// The metadata stored in each object's trailer, read back from disk: a
// damaged trailer is refused with std::invalid_argument (the reader then
// treats the object as unreadable), never anything else; what decodes
// survives an encode/decode round trip unchanged.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "object_store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  server::ObjectMeta meta;
  try {
    meta = server::decodeMeta(text);
  } catch (const std::invalid_argument&) {
    return 0;
  }
  server::ObjectMeta again = server::decodeMeta(server::encodeMeta(meta));
  if (again.key != meta.key || again.size != meta.size || again.etag != meta.etag ||
      again.contentType != meta.contentType || again.userMeta != meta.userMeta)
    __builtin_trap();
  return 0;
}
