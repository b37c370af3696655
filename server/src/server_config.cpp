#include "server_config.h"

#include <fcntl.h>
#include <sys/resource.h>

#include "reload/fd.h"

namespace server {
namespace {

void parseConnectionLimits(reload::IniConfig& ini, ObjectServerConfig& c) {
  c.maxConnections = static_cast<int>(ini.getInt("server", "max_connections", c.maxConnections, 16, 1 << 20));
  rlimit files{};
  // A worker raises its soft limit to this; the hard limit must allow it.
  auto needed = static_cast<rlim_t>(c.maxConnections) * 2 + 64;
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_max != RLIM_INFINITY && needed > files.rlim_max)
    ini.fail("server", "max_connections",
             std::to_string(c.maxConnections) + " connections need " + std::to_string(needed) +
                 " descriptors; the RLIMIT_NOFILE hard limit is " + std::to_string(files.rlim_max));
  c.clientTimeout = ini.getSeconds("server", "client_timeout", c.clientTimeout, 0.1, 3600);
  c.keepaliveTimeout = ini.getSeconds("server", "keepalive_timeout", c.keepaliveTimeout, 0.1, 3600);
  c.clientHeaderTimeout = ini.getSeconds("server", "client_header_timeout", c.clientTimeout, 0.1, 3600);
  c.clientBodyMinRate = ini.getBytes("server", "client_body_min_rate", c.clientBodyMinRate);
  c.maxHeaderSize = ini.getBytes("server", "max_header_size", c.maxHeaderSize);
  if (c.maxHeaderSize < 1024 || c.maxHeaderSize > 1024 * 1024)
    ini.fail("server", "max_header_size", "must be between 1K and 1M");
  c.diskThreads = static_cast<int>(ini.getInt("server", "disk_threads", c.diskThreads, 1, 64));
}

}  // namespace

std::string volumeGlobProblem(const std::string& glob) {
  if (glob.empty()) return "";
  if (glob[0] != '/') return "'" + glob + "' is not an absolute path";
  // The first component must be a fixed name: a pattern there takes the
  // top-level directories of the system (/*, /?a, /[a-z]*) as volumes.
  size_t end = glob.find('/', 1);
  std::string first = glob.substr(1, end == std::string::npos ? std::string::npos : end - 1);
  if (first.empty() || first.find_first_of("*?[\\") != std::string::npos || first == "." || first == "..")
    return "'" + glob + "' matches directories at the file system root; start it with a fixed directory";
  return "";
}

std::shared_ptr<const ObjectServerConfig> parseObjectServerConfig(reload::IniConfig& ini) {
  auto c = std::make_shared<ObjectServerConfig>();
  auto& s = c->storage;
  s.volumes = ini.getList("storage", "volumes");
  s.volumeGlob = ini.getString("storage", "volume_glob", "");
  if (s.volumes.empty() && s.volumeGlob.empty())
    ini.fail("storage", "volumes", "set volumes or volume_glob (at least one data directory)");
  if (auto problem = volumeGlobProblem(s.volumeGlob); !problem.empty())
    ini.fail("storage", "volume_glob", problem);
  for (const auto& v : s.volumes)
    if (v.empty() || v[0] != '/')
      ini.fail("storage", "volumes", "'" + v + "' is not an absolute path");
  s.volumeScanInterval = ini.getSeconds("storage", "volume_scan_interval", 10, 0, 86400);
  s.minFreeBytes = ini.getBytes("storage", "min_free_bytes", 0);
  s.maxObjectSize = ini.getBytes("storage", "max_object_size", 5ULL << 30);
  if (s.maxObjectSize == 0) ini.fail("storage", "max_object_size", "must be above 0");
  s.readOnlyFile = ini.getString("storage", "read_only_file", "");
  s.readOnlyCheckInterval = ini.getSeconds("storage", "read_only_check_interval", 5, 0, 86400);
  parseConnectionLimits(ini, *c);
  c->healthcheckDisableFile = ini.getString("server", "healthcheck_disable_file", "");
  c->accessLog = ini.getString("log", "access_log", "off");
  return c;
}

}  // namespace server
