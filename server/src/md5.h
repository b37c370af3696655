// MD5, for ETags and for the index's digest of long keys: nettle's, linked
// statically (see the top CMakeLists.txt for why not Poco's).
#pragma once

#include <nettle/md5.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace server {

class Md5 {
 public:
  using Digest = std::array<uint8_t, MD5_DIGEST_SIZE>;

  Md5() { md5_init(&context_); }
  void update(const void* data, size_t size) {
    md5_update(&context_, size, static_cast<const uint8_t*>(data));
  }
  void update(std::string_view text) { update(text.data(), text.size()); }
  // Ends this digest and starts a new one, as nettle does.
  Digest digest() {
    Digest out;
    md5_digest(&context_, out.size(), out.data());
    return out;
  }
  std::string hexDigest() {
    static const char kHex[] = "0123456789abcdef";
    std::string hex;
    for (uint8_t byte : digest()) {
      hex += kHex[byte >> 4];
      hex += kHex[byte & 0xf];
    }
    return hex;
  }

 private:
  md5_ctx context_;
};

inline std::string md5Hex(std::string_view text) {
  Md5 md5;
  md5.update(text);
  return md5.hexDigest();
}

}  // namespace server
