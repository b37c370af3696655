// Minimal JSON writing for status pages: objects and arrays built in order.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

namespace reload {

std::string jsonQuote(const std::string& text);

class JsonObject {
 public:
  JsonObject& add(const std::string& key, const std::string& value) { return raw(key, jsonQuote(value)); }
  JsonObject& add(const std::string& key, const char* value) { return raw(key, jsonQuote(value)); }
  JsonObject& add(const std::string& key, bool value) { return raw(key, value ? "true" : "false"); }
  JsonObject& add(const std::string& key, double value);
  template <typename T, typename = std::enable_if_t<std::is_integral_v<T>>>
  JsonObject& add(const std::string& key, T value) { return raw(key, std::to_string(value)); }
  JsonObject& add(const std::string& key, const JsonObject& value) { return raw(key, value.str()); }
  // `json` must already be valid JSON (an array, a nested object, null).
  JsonObject& raw(const std::string& key, const std::string& json);
  std::string str() const { return "{" + body_ + "}"; }

 private:
  std::string body_;
};

class JsonArray {
 public:
  JsonArray& push(const JsonObject& value) { return raw(value.str()); }
  JsonArray& push(const std::string& value) { return raw(jsonQuote(value)); }
  JsonArray& raw(const std::string& json);
  std::string str() const { return "[" + body_ + "]"; }

 private:
  std::string body_;
};

}  // namespace reload
