#include "reload/master.h"

#include <cstring>

#include "reload/handoff.h"
#include "reload/ini_config.h"
#include "reload/listeners.h"
#include "reload/master_config.h"

namespace reload {

namespace {

std::shared_ptr<LoadedConfig> parseLoaded(IniConfig& ini, Service& service,
                                          const AddressResolver& resolve) {
  auto config = std::make_shared<LoadedConfig>();
  config->path = ini.path();
  config->digest = ini.digest();
  config->contents = ini.contents();
  config->master = parseMasterConfig(ini, resolve);
  const ListenerKinds kinds = service.listenerKinds();
  for (const auto& address : config->master.bind)
    if (!kinds.accepts(address.kind))
      ini.fail("server", "bind",
               "'" + address.toString() + "': " + service.name() + " does not serve " +
                   (address.kind == ListenAddress::Kind::kUdp ? std::string("UDP")
                    : address.kind == ListenAddress::Kind::kUnix ? std::string("Unix stream")
                                                                 : std::string("TCP")) +
                   " listeners");
  config->service = service.parseConfig(ini, config->master);
  return config;
}

void addWarnings(LoadedConfig& config, const IniConfig& ini) {
  for (const auto& key : ini.unknownKeys())
    config.warnings.push_back(ini.path() + ": " + key + ": unknown key, ignored");
}

}  // namespace

std::shared_ptr<const LoadedConfig> loadConfig(const std::string& path, Service& service) {
  IniConfig ini(path);
  auto config = parseLoaded(ini, service, {});
  checkMasterEnvironment(config->master, ini);
  service.checkEnvironment(*config, ini);
  ini.finish();
  if (!config->master.adminTokenFile.empty())
    config->master.adminToken = readAdminToken(config->master.adminTokenFile);
  addWarnings(*config, ini);
  if (config->master.listenerHandoff == ListenerHandoff::kRebind)
    if (std::string loss = rebindQueueLoss(); !loss.empty()) config->warnings.push_back(loss);
  return config;
}

ValidatedConfig describeValidated(const LoadedConfig& config) {
  ValidatedConfig v;
  v.contents = config.contents;
  v.adminToken = config.master.adminToken;
  for (const auto* list : {&config.master.bind, &config.master.adminBind})
    for (const auto& a : *list)
      if (a.isInet() && a.resolvedLength > 0)
        v.resolved.emplace_back(a.toString(),
                                std::string(reinterpret_cast<const char*>(&a.resolved),
                                            a.resolvedLength));
  return v;
}

std::string encodeValidated(const ValidatedConfig& v) {
  std::string out = "token " + hexOf(v.adminToken) + "\n";
  out += "resolved " + std::to_string(v.resolved.size()) + "\n";
  for (const auto& [name, bytes] : v.resolved) out += name + " " + hexOf(bytes) + "\n";
  out += "contents " + std::to_string(v.contents.size()) + "\n" + v.contents;
  return out;
}

ValidatedConfig decodeValidated(const std::string& bytes) {
  ValidatedConfig v;
  size_t pos = 0;
  auto line = [&]() {
    auto nl = bytes.find('\n', pos);
    if (nl == std::string::npos) throw std::invalid_argument("truncated validation result");
    std::string text = bytes.substr(pos, nl - pos);
    pos = nl + 1;
    return text;
  };
  auto count = [](const std::string& text, const char* word, size_t limit) {
    std::string prefix = std::string(word) + " ";
    if (text.rfind(prefix, 0) != 0) throw std::invalid_argument("expected " + prefix);
    std::string digits = text.substr(prefix.size());
    if (digits.empty() || digits.size() > 8 || digits.find_first_not_of("0123456789") != std::string::npos)
      throw std::invalid_argument("bad count in validation result");
    size_t n = std::stoul(digits);
    if (n > limit) throw std::invalid_argument("count out of range in validation result");
    return n;
  };
  std::string token = line();
  if (token.rfind("token ", 0) != 0) throw std::invalid_argument("expected token");
  v.adminToken = bytesOfHex(token.substr(6));
  size_t n = count(line(), "resolved", 1024);
  for (size_t i = 0; i < n; ++i) {
    std::string text = line();
    auto space = text.rfind(' ');
    if (space == std::string::npos) throw std::invalid_argument("bad resolved line");
    std::string raw = bytesOfHex(text.substr(space + 1));
    if (raw.empty() || raw.size() > sizeof(sockaddr_storage))
      throw std::invalid_argument("bad resolved address");
    v.resolved.emplace_back(text.substr(0, space), raw);
  }
  size_t len = count(line(), "contents", IniConfig::kMaxConfigBytes);
  if (bytes.size() != pos + len) throw std::invalid_argument("validation result of the wrong size");
  v.contents = bytes.substr(pos);
  return v;
}

std::shared_ptr<const LoadedConfig> loadValidatedConfig(const std::string& path,
                                                        const ValidatedConfig& validated,
                                                        Service& service) {
  IniConfig ini(path, validated.contents);
  auto fromValidation = [&](ListenAddress& address) {
    if (!address.isInet()) return;
    std::string name = address.toString();
    for (const auto& [known, bytes] : validated.resolved) {
      if (known != name) continue;
      std::memcpy(&address.resolved, bytes.data(), bytes.size());
      address.resolvedLength = static_cast<socklen_t>(bytes.size());
      return;
    }
    throw std::invalid_argument("'" + name + "' was not resolved by validation");
  };
  auto config = parseLoaded(ini, service, fromValidation);
  ini.finish();
  config->master.adminToken = validated.adminToken;
  addWarnings(*config, ini);
  return config;
}

}  // namespace reload
