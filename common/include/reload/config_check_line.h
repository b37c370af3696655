// The line a service's validation run (`moltd --check-config`) prints when
// the configuration is valid, and the test the running image applies to it
// before a seamless reload:
//
//   <service> <version> configuration ok: sha256:<digest of the file's bytes>
//
// An exit status of 0 proves nothing (any script exits 0); this line proves
// that the file about to be executed is the service (Service::name()) that
// parsed the very bytes the running image validated.
#pragma once

#include <string>

namespace reload {

std::string formatConfigCheckLine(const std::string& service, const std::string& version,
                                  const std::string& digest);

// Why `output` (the checker's stdout and stderr) does not prove a check of
// the configuration whose digest is `digest`; empty when it does. On success
// sets `version` to the version the line names.
std::string configCheckLineProblem(const std::string& service, const std::string& output,
                                   const std::string& digest, std::string& version);

}  // namespace reload
