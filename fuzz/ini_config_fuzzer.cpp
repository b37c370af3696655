// Configuration files as operators write them (and mistype them): the strict
// parser either refuses the file with a ConfigError that names it, or every
// typed getter reads every key without crashing, refusing bad values as
// recorded problems.
#include <cstdint>
#include <string>

#include "reload/ini_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    reload::IniConfig ini("fuzz.conf", text);
    if (ini.contents() != text) __builtin_trap();
    for (const std::string& entry : ini.unknownKeys()) {
      // "[section] key": read it back through every getter.
      auto close = entry.find("] ");
      if (entry.empty() || entry[0] != '[' || close == std::string::npos) continue;
      std::string section = entry.substr(1, close - 1);
      std::string key = entry.substr(close + 2);
      ini.getString(section, key, "");
      ini.getSeconds(section, key, 1, 0, 3600);
      ini.getInt(section, key, 1, -100, 100);
      ini.getBytes(section, key, 1);
      ini.getBool(section, key, false);
      ini.getList(section, key);
      ini.getChoice(section, key, "a", {"a", "b"});
    }
    if (!ini.unknownKeys().empty()) __builtin_trap();  // every key was read
    try {
      ini.finish();
    } catch (const reload::ConfigError& e) {
      if (std::string(e.what()).find("fuzz.conf") == std::string::npos) __builtin_trap();
    }
  } catch (const reload::ConfigError& e) {
    if (std::string(e.what()).find("fuzz.conf") == std::string::npos) __builtin_trap();
  }
  return 0;
}
