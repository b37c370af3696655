// molt-run: seamless upgrades for any program that takes its sockets by
// systemd's convention (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES).
#include "reload/master.h"
#include "run_service.h"

int main(int argc, char** argv) {
  run::RunService service;
  reload::CommandLine commandLine;
  commandLine.defaultConfig = "/etc/molt/molt-run.conf";
  commandLine.checkHelp =
      "validate the configuration (the [program] command must be an\n"
      "                      executable file), print the check line and exit 0 if valid";
  commandLine.signalsHelp =
      "Signals: HUP starts a new generation of the program from the re-read\n"
      "configuration, USR1 re-executes molt-run in place (same PID, same sockets) and\n"
      "keeps the running program (its processes are adopted, not restarted), TERM\n"
      "stops the program gracefully, INT/QUIT stop it at once.\n";
  return reload::serviceMain(service, argc, argv, commandLine);
}
