// Object names: /v1/{bucket}/{key}.
#pragma once

#include <optional>
#include <string>

namespace server {

constexpr size_t kMaxKeyBytes = 1024;
constexpr size_t kMaxBucketBytes = 63;

// "" when valid, otherwise why not.
std::string bucketProblem(const std::string& bucket);
std::string keyProblem(const std::string& key);

// Decodes %XX escapes; nothing if an escape is malformed.
std::optional<std::string> percentDecode(const std::string& text);
std::string percentEncode(const std::string& text);

struct ObjectPath {
  std::string bucket;
  std::string key;  // empty for a bucket-level request
};

// Splits a decoded request path. Nothing unless it starts with /v1/{bucket}.
std::optional<ObjectPath> parseObjectPath(const std::string& decodedPath);

}  // namespace server
