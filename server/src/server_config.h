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
  // [server] keys of the event-loop worker.
  int maxConnections = 4096;           // per worker
  double clientTimeout = 60;           // a stalled client is cut after it
  double keepaliveTimeout = 5;         // an idle keep-alive connection is closed after it
  double clientHeaderTimeout = 60;     // for a whole request header
  uint64_t clientBodyMinRate = 500;    // bytes/s over each client_timeout window
  uint64_t maxHeaderSize = 32 * 1024;  // 431 past it
  int diskThreads = 16;  // a PUT waits for its group commit on one; see ObjectStore::place
};

std::shared_ptr<const ObjectServerConfig> parseObjectServerConfig(reload::IniConfig& ini);

// "" when `glob` may be [storage] volume_glob, otherwise why not.
std::string volumeGlobProblem(const std::string& glob);

}  // namespace server
