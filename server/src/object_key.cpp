#include "object_key.h"

#include <cctype>

namespace server {

std::string bucketProblem(const std::string& bucket) {
  if (bucket.empty()) return "bucket name is empty";
  if (bucket.size() > kMaxBucketBytes)
    return "bucket name is longer than " + std::to_string(kMaxBucketBytes) + " bytes";
  if (bucket == "." || bucket == "..") return "bucket name may not be '.' or '..'";
  for (unsigned char c : bucket)
    if (!std::isalnum(c) && c != '-' && c != '_' && c != '.')
      return "bucket names use letters, digits, '-', '_' and '.' only";
  return "";
}

std::string keyProblem(const std::string& key) {
  if (key.empty()) return "object key is empty";
  if (key.size() > kMaxKeyBytes)
    return "object key is longer than " + std::to_string(kMaxKeyBytes) + " bytes";
  if (key.find('\0') != std::string::npos) return "object key contains a NUL byte";
  size_t start = 0;
  for (;;) {
    size_t slash = key.find('/', start);
    std::string segment = key.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (segment == "." || segment == "..") return "object key may not contain '.' or '..' segments";
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  for (unsigned char c : key)
    if (c < 0x20 || c == 0x7f) return "object key contains a control character";
  return "";
}

std::optional<std::string> percentDecode(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size() || !std::isxdigit(static_cast<unsigned char>(text[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(text[i + 2])))
      return std::nullopt;
    out += static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
    i += 2;
  }
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

std::optional<ObjectPath> parseObjectPath(const std::string& path) {
  if (path.rfind("/v1/", 0) != 0) return std::nullopt;
  std::string rest = path.substr(4);
  ObjectPath out;
  auto slash = rest.find('/');
  out.bucket = rest.substr(0, slash);
  if (slash != std::string::npos) out.key = rest.substr(slash + 1);  // "/v1/b/" is the bucket
  return out;
}

}  // namespace server
