// A worker of molt-run: starts the program with the generation's listeners,
// passes the program's READY=1 (and STATUS=, STOPPING=1) on to the master's
// notification socket, passes the master's stop on as the configured
// signal, and ends as the program ended. The master watches the other
// readiness modes itself.
#pragma once

#include "program_config.h"
#include "reload/master.h"

namespace run {

// The body of a worker process (Service::runWorker). Returns its exit code.
int runKeeper(const reload::WorkerContext& context, const ProgramConfig& config) noexcept;

}  // namespace run
