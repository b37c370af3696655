// Typed, validated access to an INI file.
//
// The syntax is strict: a section header must close with ']', every other
// line that is not blank or a comment ('#' or ';') must be "key = value", and
// a key or a section given twice is an error. Syntax errors are reported as
// "file:line: reason" by the constructor, all at once.
//
// Every getter records the key as known and records a problem instead of
// throwing, so one run reports every bad key at once. finish() throws a
// ConfigError listing them, each as "file: [section] key: reason (line N)".
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace reload {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class IniConfig {
 public:
  // Reads and parses the file: a regular file of at most kMaxConfigBytes.
  // Throws ConfigError if it cannot be read or its syntax is wrong.
  explicit IniConfig(const std::string& path);
  // Parses `contents` as if read from `path`.
  IniConfig(const std::string& path, const std::string& contents);

  static constexpr size_t kMaxConfigBytes = 1 << 20;

  // The file's bytes as parsed.
  const std::string& contents() const { return contents_; }

  const std::string& path() const { return path_; }
  // SHA-256 of the file's bytes, hex.
  const std::string& digest() const { return digest_; }

  bool has(const std::string& section, const std::string& key) const;
  std::string getString(const std::string& section, const std::string& key,
                        const std::string& fallback);
  // Seconds, fractions allowed.
  double getSeconds(const std::string& section, const std::string& key, double fallback,
                    double min, double max);
  int64_t getInt(const std::string& section, const std::string& key, int64_t fallback,
                 int64_t min, int64_t max);
  // A plain decimal number between 0 and 1 (a share), no suffix.
  double getRatio(const std::string& section, const std::string& key, double fallback);
  // Bytes with an optional K, M, G or T suffix (powers of 1024).
  uint64_t getBytes(const std::string& section, const std::string& key, uint64_t fallback);
  bool getBool(const std::string& section, const std::string& key, bool fallback);
  // A comma-separated list; empty items are dropped.
  std::vector<std::string> getList(const std::string& section, const std::string& key);
  // One of `choices`.
  std::string getChoice(const std::string& section, const std::string& key,
                        const std::string& fallback, const std::vector<std::string>& choices);

  void fail(const std::string& section, const std::string& key, const std::string& reason);

  // Every "section.key" a getter has asked for so far, sorted.
  std::vector<std::string> knownKeys() const { return {known_.begin(), known_.end()}; }
  // Keys and sections present in the file that no getter asked for.
  std::vector<std::string> unknownKeys() const;
  const std::vector<std::string>& errors() const { return errors_; }
  // Throws ConfigError with every recorded problem, one per line.
  void finish() const;

 private:
  std::string raw(const std::string& section, const std::string& key);
  void parse();

  std::string path_;
  std::string contents_;
  struct Entry {
    std::string section;  // as written
    std::string key;      // as written
    std::string value;    // trimmed
    int line = 0;
  };
  std::map<std::string, Entry> entries_;  // lower-case "section.key" -> entry
  std::string digest_;
  std::set<std::string> known_;
  std::vector<std::string> errors_;
};

// Parses "30", "0.5"; throws std::invalid_argument.
double parseSeconds(const std::string& text);
// Reads a whole regular file of at most `limit` bytes without blocking on a
// FIFO or a device. Throws ConfigError naming the path and the reason.
std::string readBoundedRegularFile(const std::string& path, size_t limit);
// Parses "512", "64K", "10M", "2G", "1T"; throws std::invalid_argument, also
// when the value does not fit in 64 bits.
uint64_t parseBytes(const std::string& text);

}  // namespace reload
