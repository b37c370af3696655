#include "reload/ini_config.h"

#include <Poco/DigestEngine.h>
#include <Poco/SHA2Engine.h>
#include <Poco/String.h>

#include <cmath>
#include <fstream>
#include <sstream>

namespace reload {
namespace {

std::string trim(const std::string& s) { return Poco::trim(s); }

std::string lower(std::string s) { return Poco::toLower(s); }

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
      digits.size() > 15)
    throw std::invalid_argument("'" + text + "' is not a size (a number with K, M, G or T)");
  return std::stoull(digits) * multiplier;
}

IniConfig::IniConfig(const std::string& path) : path_(path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot read: " + std::strerror(errno));
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string contents = buffer.str();
  Poco::SHA2Engine sha(Poco::SHA2Engine::SHA_256);
  sha.update(contents);
  digest_ = Poco::DigestEngine::digestToHex(sha.digest());
  // Poco reads only ';' comments; '#' is what Swift and systemd users write.
  std::string parsed;
  std::istringstream lines(contents);
  for (std::string line; std::getline(lines, line);) {
    auto first = line.find_first_not_of(" \t");
    if (first != std::string::npos && line[first] == '#') line[first] = ';';
    parsed += line + "\n";
  }
  std::istringstream stream(parsed);
  try {
    ini_ = new Poco::Util::IniFileConfiguration(stream);
  } catch (const Poco::Exception& e) {
    throw ConfigError(path + ": cannot parse: " + e.displayText());
  }
}

bool IniConfig::has(const std::string& section, const std::string& key) const {
  return ini_->hasProperty(section + "." + key);
}

std::string IniConfig::raw(const std::string& section, const std::string& key) {
  known_.insert(lower(section + "." + key));
  return trim(ini_->getRawString(section + "." + key, ""));
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
  errors_.push_back(path_ + ": [" + section + "] " + key + ": " + reason);
}

std::vector<std::string> IniConfig::unknownKeys() const {
  std::vector<std::string> unknown;
  Poco::Util::AbstractConfiguration::Keys sections;
  ini_->keys("", sections);
  for (const auto& section : sections) {
    Poco::Util::AbstractConfiguration::Keys keys;
    ini_->keys(section, keys);
    for (const auto& key : keys) {
      if (!known_.count(lower(section + "." + key)))
        unknown.push_back("[" + section + "] " + key);
    }
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
