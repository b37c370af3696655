// Object names: /v1/{bucket}/{key}.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace server {

constexpr size_t kMaxKeyBytes = 1024;
constexpr size_t kMaxBucketBytes = 63;

// "" when valid, otherwise why not.
std::string bucketProblem(std::string_view bucket);
std::string keyProblem(std::string_view key);

// Decodes %XX escapes; nothing if an escape is malformed.
std::optional<std::string> percentDecode(const std::string& text);
// The same into `out` (its storage reused); false if an escape is malformed.
bool percentDecodeInto(std::string_view text, std::string& out);
std::string percentEncode(const std::string& text);

struct ObjectPath {
  std::string bucket;
  std::string key;  // empty for a bucket-level request
};

// Splits a decoded request path. Nothing unless it starts with /v1/{bucket}.
std::optional<ObjectPath> parseObjectPath(const std::string& decodedPath);
// The same into `out` (its strings' storage reused); false where the other
// gives nothing.
bool parseObjectPathInto(std::string_view decodedPath, ObjectPath& out);

}  // namespace server
