#include "reload/master_config.h"

#include <pwd.h>

#include <set>
#include <stdexcept>

namespace reload {
namespace {

std::vector<ListenAddress> parseBindList(IniConfig& ini, const std::string& section,
                                         const std::string& fallback) {
  std::vector<std::string> items = ini.getList(section, "bind");
  if (!ini.has(section, "bind")) items = {fallback};
  if (items.empty()) ini.fail(section, "bind", "needs at least one address");
  std::vector<ListenAddress> addresses;
  std::set<std::string> seen;
  for (const auto& item : items) {
    try {
      ListenAddress address = ListenAddress::parse(item);
      if (!seen.insert(address.toString()).second) {
        ini.fail(section, "bind", "'" + item + "' is listed twice");
        continue;
      }
      resolveListenAddress(address);
      addresses.push_back(address);
    } catch (const std::invalid_argument& e) {
      ini.fail(section, "bind", e.what());
    }
  }
  return addresses;
}

}  // namespace

MasterConfig parseMasterConfig(IniConfig& ini) {
  MasterConfig c;
  c.bind = parseBindList(ini, "server", "127.0.0.1:8080");
  c.workers = static_cast<int>(ini.getInt("server", "workers", c.workers, 1, 256));
  c.threads = static_cast<int>(ini.getInt("server", "threads", c.threads, 2, 16384));
  c.gracefulTimeout = ini.getSeconds("server", "graceful_timeout", c.gracefulTimeout, 0, 86400);
  c.clientTimeout = ini.getSeconds("server", "client_timeout", c.clientTimeout, 0.1, 3600);
  c.keepaliveTimeout =
      ini.getSeconds("server", "keepalive_timeout", c.keepaliveTimeout, 0.1, 3600);
  c.reloadTimeout = ini.getSeconds("server", "reload_timeout", c.reloadTimeout, 0.5, 3600);
  c.listenerHandoff = ini.getChoice("server", "listener_handoff", "inherit",
                                    {"inherit", "rebind"}) == "rebind"
                          ? ListenerHandoff::kRebind
                          : ListenerHandoff::kInherit;
  c.maxDrainingGenerations = static_cast<int>(
      ini.getInt("server", "max_draining_generations", c.maxDrainingGenerations, 1, 64));
  c.masterNice = static_cast<int>(ini.getInt("server", "master_nice", c.masterNice, -20, 19));
  c.pidFile = ini.getString("server", "pid_file", "");
  c.user = ini.getString("server", "user", "");
  if (!c.user.empty() && getpwnam(c.user.c_str()) == nullptr)
    ini.fail("server", "user", "no such user '" + c.user + "'");

  c.adminBind = parseBindList(ini, "admin", "127.0.0.1:8081");
  c.adminTokenFile = ini.getString("admin", "token_file", "");
  for (const auto& admin : c.adminBind)
    for (const auto& pub : c.bind)
      if (admin.toString() == pub.toString())
        ini.fail("admin", "bind", "'" + admin.toString() + "' is also a [server] bind address");

  try {
    c.log.level = log::parseSeverity(ini.getString("log", "level", "info"));
  } catch (const std::invalid_argument& e) {
    ini.fail("log", "level", e.what());
  }
  c.log.target = ini.getString("log", "file", "stderr");
  try {
    log::checkTarget(c.log.target);
  } catch (const std::exception& e) {
    ini.fail("log", "file", e.what());
  }
  return c;
}

}  // namespace reload
