#include "server_config.h"

#include <fcntl.h>

#include "reload/fd.h"

namespace server {

std::shared_ptr<const ObjectServerConfig> parseObjectServerConfig(reload::IniConfig& ini) {
  auto c = std::make_shared<ObjectServerConfig>();
  auto& s = c->storage;
  s.volumes = ini.getList("storage", "volumes");
  s.volumeGlob = ini.getString("storage", "volume_glob", "");
  if (s.volumes.empty() && s.volumeGlob.empty())
    ini.fail("storage", "volumes", "set volumes or volume_glob (at least one data directory)");
  for (const auto& v : s.volumes)
    if (v.empty() || v[0] != '/')
      ini.fail("storage", "volumes", "'" + v + "' is not an absolute path");
  s.volumeScanInterval = ini.getSeconds("storage", "volume_scan_interval", 10, 0, 86400);
  s.minFreeBytes = ini.getBytes("storage", "min_free_bytes", 0);
  s.maxObjectSize = ini.getBytes("storage", "max_object_size", 5ULL << 30);
  if (s.maxObjectSize == 0) ini.fail("storage", "max_object_size", "must be above 0");
  s.readOnlyFile = ini.getString("storage", "read_only_file", "");
  s.readOnlyCheckInterval = ini.getSeconds("storage", "read_only_check_interval", 5, 0, 86400);
  c->healthcheckDisableFile = ini.getString("server", "healthcheck_disable_file", "");
  c->accessLog = ini.getString("log", "access_log", "off");
  return c;
}

}  // namespace server
