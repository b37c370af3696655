#include "reload/ini_config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <sstream>

#include "reload/fd.h"
#include "reload/handoff.h"

namespace reload {
namespace {

bool isSpace(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string trim(const std::string& s) {
  size_t begin = 0, end = s.size();
  while (begin < end && isSpace(s[begin])) ++begin;
  while (end > begin && isSpace(s[end - 1])) --end;
  return s.substr(begin, end - begin);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

double parseSeconds(const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    throw std::invalid_argument("'" + text + "' is not a number of seconds");
  }
  if (used != text.size() || !std::isfinite(value))
    throw std::invalid_argument("'" + text + "' is not a number of seconds");
  return value;
}

uint64_t parseBytes(const std::string& text) {
  if (text.empty()) throw std::invalid_argument("empty size");
  std::string digits = text;
  uint64_t multiplier = 1;
  switch (std::toupper(static_cast<unsigned char>(text.back()))) {
    case 'K': multiplier = 1ULL << 10; break;
    case 'M': multiplier = 1ULL << 20; break;
    case 'G': multiplier = 1ULL << 30; break;
    case 'T': multiplier = 1ULL << 40; break;
    default: break;
  }
  if (multiplier != 1) digits.pop_back();
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos ||
      digits.size() > 24)
    throw std::invalid_argument("'" + text + "' is not a size (a number with K, M, G or T)");
  uint64_t number = 0;
  bool fits = true;
  try {
    number = std::stoull(digits);
  } catch (const std::out_of_range&) {
    fits = false;
  }
  if (!fits || number > UINT64_MAX / multiplier)
    throw std::invalid_argument("'" + text + "' is too large (more than 2^64 bytes)");
  return number * multiplier;
}

std::string readBoundedRegularFile(const std::string& path, size_t limit) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer.
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd) throw ConfigError(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) throw ConfigError(path + ": cannot stat: " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) throw ConfigError(path + ": is a directory, not a configuration file");
  if (!S_ISREG(st.st_mode)) throw ConfigError(path + ": is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > limit)
    throw ConfigError(path + ": is " + std::to_string(st.st_size) + " bytes; the limit is " +
                      std::to_string(limit));
  std::string contents;
  char buf[16384];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ConfigError(path + ": cannot read: " + std::strerror(errno));
    if (n == 0) break;
    contents.append(buf, static_cast<size_t>(n));
    if (contents.size() > limit)  // grew while being read
      throw ConfigError(path + ": is larger than " + std::to_string(limit) + " bytes");
  }
  return contents;
}

IniConfig::IniConfig(const std::string& path)
    : IniConfig(path, readBoundedRegularFile(path, kMaxConfigBytes)) {}

IniConfig::IniConfig(const std::string& path, const std::string& contents)
    : path_(path), contents_(contents) {
  digest_ = sha256Hex(contents_);
  parse();
}

void IniConfig::parse() {
  std::vector<std::string> problems;
  std::map<std::string, int> sections;  // lower-case name -> line
  std::string section;
  std::istringstream lines(contents_);
  int number = 0;
  auto problem = [&](const std::string& what) {
    problems.push_back(path_ + ":" + std::to_string(number) + ": " + what);
  };
  for (std::string line; std::getline(lines, line);) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::string text = trim(line);
    if (text.find('\0') != std::string::npos) {
      problem("contains a NUL byte");
      continue;
    }
    if (text.empty() || text[0] == '#' || text[0] == ';') {
      continue;
    }
    if (text[0] == '[') {
      if (text.back() != ']') {
        problem("section header '" + text + "' has no closing ']'");
      } else {
        std::string name = trim(text.substr(1, text.size() - 2));
        if (name.empty() || name.find_first_of("[]") != std::string::npos) {
          problem("bad section header '" + text + "'");
        } else if (auto [it, fresh] = sections.emplace(lower(name), number); !fresh) {
          problem("section [" + name + "] appears twice (first at line " +
                  std::to_string(it->second) + ")");
        }
        section = name;
        continue;
      }
      continue;
    }
    auto eq = text.find('=');
    if (eq == std::string::npos) {
      problem("'" + text + "' is not 'key = value' (no '=')");
      continue;
    }
    std::string key = trim(text.substr(0, eq));
    if (key.empty()) {
      problem("'" + text + "' has no key before '='");
    } else if (section.empty()) {
      problem("key '" + key + "' is outside any [section]");
    } else if (auto [it, fresh] = entries_.emplace(
                   lower(section + "." + key),
                   Entry{section, key, trim(text.substr(eq + 1)), number});
               !fresh) {
      problem("[" + section + "] " + key + " is set twice (first at line " +
              std::to_string(it->second.line) + ")");
    }
  }
  if (!problems.empty()) {
    std::string message;
    for (const auto& p : problems) message += (message.empty() ? "" : "\n") + p;
    throw ConfigError(message);
  }
}

bool IniConfig::has(const std::string& section, const std::string& key) const {
  return entries_.count(lower(section + "." + key)) != 0;
}

std::string IniConfig::raw(const std::string& section, const std::string& key) {
  auto name = lower(section + "." + key);
  known_.insert(name);
  auto entry = entries_.find(name);
  return entry == entries_.end() ? "" : entry->second.value;
}

std::string IniConfig::getString(const std::string& section, const std::string& key,
                                 const std::string& fallback) {
  std::string value = raw(section, key);
  return has(section, key) ? value : fallback;
}

double IniConfig::getSeconds(const std::string& section, const std::string& key,
                             double fallback, double min, double max) {
  std::string value = raw(section, key);
  if (!has(section, key)) return fallback;
  try {
    double seconds = parseSeconds(value);
    if (seconds < min || seconds > max) {
      std::ostringstream why;
      why << "must be between " << min << " and " << max << " seconds, got " << value;
      fail(section, key, why.str());
      return fallback;
    }
    return seconds;
  } catch (const std::invalid_argument& e) {
    fail(section, key, e.what());
    return fallback;
  }
}

double IniConfig::getRatio(const std::string& section, const std::string& key,
                           double fallback) {
  std::string value = raw(section, key);
  if (!has(section, key)) return fallback;
  bool plain = !value.empty() && value.size() <= 32 &&
               value.find_first_not_of("0123456789.") == std::string::npos &&
               std::count(value.begin(), value.end(), '.') <= 1 && value != ".";
  double ratio = plain ? std::strtod(value.c_str(), nullptr) : -1;
  if (!plain || ratio < 0 || ratio > 1) {
    fail(section, key, "must be a number between 0 and 1, got '" + value + "'");
    return fallback;
  }
  return ratio;
}

int64_t IniConfig::getInt(const std::string& section, const std::string& key, int64_t fallback,
                          int64_t min, int64_t max) {
  std::string value = raw(section, key);
  if (!has(section, key)) return fallback;
  std::string digits = value.size() > 1 && value[0] == '-' ? value.substr(1) : value;
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos ||
      digits.size() > 15) {
    fail(section, key, "'" + value + "' is not a whole number");
    return fallback;
  }
  int64_t number = std::stoll(value);
  if (number < min || number > max) {
    fail(section, key,
         "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
             value);
    return fallback;
  }
  return number;
}

uint64_t IniConfig::getBytes(const std::string& section, const std::string& key,
                             uint64_t fallback) {
  std::string value = raw(section, key);
  if (!has(section, key)) return fallback;
  try {
    return parseBytes(value);
  } catch (const std::invalid_argument& e) {
    fail(section, key, e.what());
    return fallback;
  }
}

bool IniConfig::getBool(const std::string& section, const std::string& key, bool fallback) {
  std::string value = lower(raw(section, key));
  if (!has(section, key)) return fallback;
  if (value == "true" || value == "yes" || value == "on" || value == "1") return true;
  if (value == "false" || value == "no" || value == "off" || value == "0") return false;
  fail(section, key, "'" + value + "' is not a boolean (true/false, yes/no, on/off)");
  return fallback;
}

std::vector<std::string> IniConfig::getList(const std::string& section, const std::string& key) {
  std::vector<std::string> items;
  std::string value = raw(section, key);
  std::istringstream stream(value);
  std::string item;
  while (std::getline(stream, item, ',')) {
    item = trim(item);
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

std::string IniConfig::getChoice(const std::string& section, const std::string& key,
                                 const std::string& fallback,
                                 const std::vector<std::string>& choices) {
  std::string value = lower(getString(section, key, fallback));
  for (const auto& choice : choices)
    if (value == choice) return value;
  std::string list;
  for (const auto& choice : choices) list += (list.empty() ? "" : ", ") + choice;
  fail(section, key, "'" + value + "' is not one of: " + list);
  return fallback;
}

void IniConfig::fail(const std::string& section, const std::string& key,
                     const std::string& reason) {
  auto entry = entries_.find(lower(section + "." + key));
  std::string where =
      entry == entries_.end() ? "" : " (line " + std::to_string(entry->second.line) + ")";
  errors_.push_back(path_ + ": [" + section + "] " + key + ": " + reason + where);
}

std::vector<std::string> IniConfig::unknownKeys() const {
  std::vector<std::string> unknown;
  for (const auto& [name, entry] : entries_) {
    if (!known_.count(name)) unknown.push_back("[" + entry.section + "] " + entry.key);
  }
  return unknown;
}

void IniConfig::finish() const {
  if (errors_.empty()) return;
  std::string message;
  for (const auto& e : errors_) message += (message.empty() ? "" : "\n") + e;
  throw ConfigError(message);
}

}  // namespace reload
