#include "object_key.h"

#include <cctype>
#include <cstdint>

namespace server {

std::string bucketProblem(std::string_view bucket) {
  if (bucket.empty()) return "bucket name is empty";
  if (bucket.size() > kMaxBucketBytes)
    return "bucket name is longer than " + std::to_string(kMaxBucketBytes) + " bytes";
  if (bucket == "." || bucket == "..") return "bucket name may not be '.' or '..'";
  for (unsigned char c : bucket)
    if (!std::isalnum(c) && c != '-' && c != '_' && c != '.')
      return "bucket names use letters, digits, '-', '_' and '.' only";
  return "";
}

namespace {

// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past
// U+10FFFF. Listings are JSON, which must be valid Unicode.
bool validUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    size_t extra;
    uint32_t min, code;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1, min = 0x80, code = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2, min = 0x800, code = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3, min = 0x10000, code = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= text.size()) return false;  // cut short
    for (size_t k = 1; k <= extra; ++k) {
      auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6) | (next & 0x3f);
    }
    if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return false;
    i += extra + 1;
  }
  return true;
}

}  // namespace

std::string keyProblem(std::string_view key) {
  if (key.empty()) return "object key is empty";
  if (key.size() > kMaxKeyBytes)
    return "object key is longer than " + std::to_string(kMaxKeyBytes) + " bytes";
  if (key.find('\0') != std::string_view::npos) return "object key contains a NUL byte";
  size_t start = 0;
  for (;;) {
    size_t slash = key.find('/', start);
    std::string_view segment =
        key.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (segment == "." || segment == "..") return "object key may not contain '.' or '..' segments";
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  for (unsigned char c : key)
    if (c < 0x20 || c == 0x7f) return "object key contains a control character";
  if (!validUtf8(key)) return "object key is not valid UTF-8";
  return "";
}

namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

}  // namespace

bool percentDecodeInto(std::string_view text, std::string& out) {
  out.clear();
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size() || !std::isxdigit(static_cast<unsigned char>(text[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(text[i + 2])))
      return false;
    out += static_cast<char>(hexValue(text[i + 1]) * 16 + hexValue(text[i + 2]));
    i += 2;
  }
  return true;
}

std::optional<std::string> percentDecode(const std::string& text) {
  if (text.find('%') == std::string::npos) return text;
  std::string out;
  out.reserve(text.size());
  if (!percentDecodeInto(text, out)) return std::nullopt;
  return out;
}

std::string percentEncode(const std::string& text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

bool parseObjectPathInto(std::string_view path, ObjectPath& out) {
  if (path.substr(0, 4) != "/v1/") return false;
  std::string_view rest = path.substr(4);
  auto slash = rest.find('/');
  std::string_view bucket = rest.substr(0, slash);
  out.bucket.assign(bucket.data(), bucket.size());
  out.key.clear();
  if (slash != std::string_view::npos) out.key.append(rest.substr(slash + 1));  // "/v1/b/" is the bucket
  return true;
}

std::optional<ObjectPath> parseObjectPath(const std::string& path) {
  ObjectPath out;
  if (!parseObjectPathInto(path, out)) return std::nullopt;
  return out;
}

}  // namespace server
