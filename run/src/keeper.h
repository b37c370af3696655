// A worker of molt-run: starts the program with the generation's listeners,
// tells the master once the program is ready, passes the master's stop on
// as the configured signal, and ends as the program ended.
#pragma once

#include "program_config.h"
#include "reload/master.h"

namespace run {

// A tcp: or http: probe, once: true when the address accepts (and, for
// http:, answers a GET with a 2xx or 3xx status) within about a second.
bool probeReady(const Readiness& ready);

// The body of a worker process (Service::runWorker). Returns its exit code.
int runKeeper(const reload::WorkerContext& context, const ProgramConfig& config) noexcept;

}  // namespace run
