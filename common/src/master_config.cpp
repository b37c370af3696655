#include "reload/master_config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include <set>
#include <stdexcept>

#include "reload/pid_file.h"

namespace reload {
namespace {

bool isLoopback(const ListenAddress& address) {
  if (address.kind == ListenAddress::Kind::kUnix) return true;
  const auto& storage = address.resolved;
  if (address.resolvedLength == 0) return false;
  if (storage.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(storage);
    return (ntohl(in.sin_addr.s_addr) >> 24) == 127;
  }
  if (storage.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(storage);
    return IN6_IS_ADDR_LOOPBACK(&in6.sin6_addr) ||
           (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr) && in6.sin6_addr.s6_addr[12] == 127);
  }
  return false;
}

std::vector<ListenAddress> parseBindList(IniConfig& ini, const std::string& section,
                                         const std::string& fallback,
                                         const AddressResolver& resolve) {
  std::vector<std::string> items = ini.getList(section, "bind");
  if (!ini.has(section, "bind")) items = {fallback};
  if (items.empty()) ini.fail(section, "bind", "needs at least one address");
  std::vector<ListenAddress> addresses;
  std::set<std::string> seen;
  for (const auto& item : items) {
    try {
      ListenAddress address = ListenAddress::parse(item);
      // The admin endpoint is HTTP, served by the master itself.
      if (section == "admin" && address.kind == ListenAddress::Kind::kUdp) {
        ini.fail(section, "bind", "'" + item + "': the admin endpoint needs a stream socket (TCP or Unix)");
        continue;
      }
      if (!seen.insert(address.toString()).second) {
        ini.fail(section, "bind", "'" + item + "' is listed twice");
        continue;
      }
      if (resolve) resolve(address);
      else resolveListenAddress(address);
      addresses.push_back(address);
    } catch (const std::invalid_argument& e) {
      ini.fail(section, "bind", e.what());
    }
  }
  return addresses;
}

}  // namespace

MasterConfig parseMasterConfig(IniConfig& ini, const AddressResolver& resolve) {
  MasterConfig c;
  c.bind = parseBindList(ini, "server", "127.0.0.1:8080", resolve);
  c.workers = static_cast<int>(ini.getInt("server", "workers", c.workers, 1, 256));
  if (ini.has("server", "threads")) {
    // Workers no longer run a thread per connection; old configs still load.
    ini.getString("server", "threads", "");
    MOLT_LOG(kWarning) << ini.path()
                       << ": [server] threads is deprecated and ignored: connections are served "
                          "from an event loop; max_connections bounds them per worker";
  }
  c.gracefulTimeout = ini.getSeconds("server", "graceful_timeout", c.gracefulTimeout, 0, 86400);
  c.reloadTimeout = ini.getSeconds("server", "reload_timeout", c.reloadTimeout, 0.5, 3600);
  c.listenerHandoff = ini.getChoice("server", "listener_handoff", "inherit",
                                    {"inherit", "rebind"}) == "rebind"
                          ? ListenerHandoff::kRebind
                          : ListenerHandoff::kInherit;
  c.maxDrainingGenerations = static_cast<int>(
      ini.getInt("server", "max_draining_generations", c.maxDrainingGenerations, 1, 64));
  c.reloadProbation =
      ini.getSeconds("server", "reload_probation", c.reloadProbation, 0, 3600);
  c.probationMax5xxRatio =
      ini.getRatio("server", "probation_max_5xx_ratio", c.probationMax5xxRatio);
  c.probationMinRequests = ini.getInt("server", "probation_min_requests",
                                      c.probationMinRequests, 1, 1000000000);
  c.masterNice = static_cast<int>(ini.getInt("server", "master_nice", c.masterNice, -20, 19));
  c.pidFile = ini.getString("server", "pid_file", "");
  c.user = ini.getString("server", "user", "");

  c.adminBind = parseBindList(ini, "admin", "127.0.0.1:8081", resolve);
  c.adminTokenFile = ini.getString("admin", "token_file", "");
  c.adminAllowRemoteWithoutToken =
      ini.getBool("admin", "allow_remote_without_token", false);
  if (c.adminTokenFile.empty() && !c.adminAllowRemoteWithoutToken)
    for (const auto& admin : c.adminBind)
      if (!isLoopback(admin))
        ini.fail("admin", "bind",
                 "'" + admin.toString() +
                     "' is reachable from other hosts and token_file is not set; set "
                     "token_file, or allow_remote_without_token = true to accept that anyone "
                     "who can connect may trigger reloads");
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
  return c;
}

std::string readAdminToken(const std::string& path) {
  std::string contents;
  try {
    contents = readBoundedRegularFile(path, 4096);
  } catch (const ConfigError& e) {
    throw std::runtime_error(e.what());
  }
  std::string token = contents.substr(0, contents.find('\n'));
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ' || token.back() == '\t'))
    token.pop_back();
  if (token.empty()) throw std::runtime_error(path + ": holds no token (the first line is empty)");
  return token;
}

void checkMasterEnvironment(const MasterConfig& c, IniConfig& ini) {
  if (!c.user.empty() && getpwnam(c.user.c_str()) == nullptr)
    ini.fail("server", "user", "no such user '" + c.user + "'");
  if (!c.pidFile.empty()) {
    // Proven by doing it: a file is created and removed in the directory
    // (and the directory, when missing, created and removed), so that a
    // start or a reload never fails to write the pid file.
    try {
      PidFile(c.pidFile).checkWritable();
    } catch (const std::invalid_argument&) {
      ini.fail("server", "pid_file", "'" + c.pidFile + "' is not an absolute path");
    } catch (const std::exception& e) {
      ini.fail("server", "pid_file", e.what());
    }
  }
  try {
    log::checkTarget(c.log.target);
  } catch (const std::exception& e) {
    ini.fail("log", "file", e.what());
  }
  if (!c.adminTokenFile.empty()) {
    try {
      readAdminToken(c.adminTokenFile);
    } catch (const std::exception& e) {
      ini.fail("admin", "token_file", e.what());
    }
  }
}

}  // namespace reload
