// A worker process: serves HTTP on the inherited listeners until told to
// drain (SIGTERM) or to stop at once (SIGINT, SIGQUIT).
#pragma once

#include "reload/master.h"
#include "server_config.h"

namespace server {

int runObjectWorker(const reload::WorkerContext& context, const ObjectServerConfig& config,
                    const std::string& version) noexcept;

}  // namespace server
