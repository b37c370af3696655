// moltd's own configuration: [storage] plus the [server] and [log] keys that
// only workers use.
#pragma once

#include <string>

#include "object_store.h"
#include "reload/master.h"

namespace server {

struct ObjectServerConfig : reload::ServiceConfig {
  StorageSettings storage;
  std::string healthcheckDisableFile;
  std::string accessLog = "off";  // a path or "off"
  size_t listingLimit = 10000;
};

std::shared_ptr<const ObjectServerConfig> parseObjectServerConfig(reload::IniConfig& ini);

}  // namespace server
