// moltd: the molt object server.
#include "moltd_service.h"
#ifdef MOLT_TEST_FAULTS
#include "test_faults.h"
#endif
#include "reload/master.h"

int main(int argc, char** argv) {
#ifdef MOLT_TEST_FAULTS
  server::FaultyService service;
#else
  server::MoltdService service;
#endif
  reload::CommandLine commandLine;
  commandLine.defaultConfig = "/etc/molt/moltd.conf";
  commandLine.checkHelp =
      "validate the configuration, print \"moltd VERSION configuration\n"
      "                      ok: sha256:DIGEST\" and exit 0 if it is valid";
  commandLine.signalsHelp =
      "Signals to the master: HUP reload in place, USR1 seamless reload (new binary,\n"
      "same PID), TERM graceful stop, INT/QUIT immediate stop, USR2 re-check read-only.\n";
#ifdef MOLT_TEST_FAULTS
  commandLine.beforeMaster = [] { server::armMasterFault(); };
#endif
  return reload::serviceMain(service, argc, argv, commandLine);
}
