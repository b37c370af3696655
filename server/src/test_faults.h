// Deliberate faults for the probe tests, compiled only into the test binary
// moltd-faulty (never into moltd): the bad deploys a probation must catch.
// The fault is the first line of the file named by MOLT_TEST_FAULT_FILE,
// read when a worker or a re-executed master starts:
//   worker-crash SECONDS  a worker dies of SIGSEGV SECONDS after it starts
//   worker-500            a worker answers every request with 500
//   worker-hang SECONDS   a worker's loop stops turning SECONDS after it starts
//                         (its thread waits in a signal handler for ever)
//   master-exit SECONDS   a re-executed master exits (status 3) SECONDS in
//   master-hang SECONDS   a re-executed master stops (SIGSTOP) SECONDS in
// A master fault fires once: the file is removed when it is armed.
#pragma once

#include "moltd_service.h"

namespace server {

class FaultyService : public MoltdService {
 public:
  int serve(const reload::WorkerContext& context, const ObjectServerConfig& config) noexcept override;
};

// Arms a master fault, if one is set and this image was started by a
// seamless reload.
void armMasterFault();

}  // namespace server
