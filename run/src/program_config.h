// molt-run's own configuration: the [program] section, what to run and how
// to tell that it is ready.
#pragma once

#include <sys/socket.h>

#include <string>
#include <utility>
#include <vector>

#include "reload/ini_config.h"
#include "reload/master.h"

namespace run {

// How a worker shows it is ready for the previous generation to stop.
struct Readiness {
  enum class Kind { kNotify, kDelay, kTcp, kHttp };
  Kind kind = Kind::kNotify;
  double delaySeconds = 0;  // kDelay
  std::string host;         // kTcp, kHttp: a numeric address
  int port = 0;
  std::string path = "/";  // kHttp
  sockaddr_storage address{};
  socklen_t addressLength = 0;

  // "notify", "delay:2.5", "tcp:127.0.0.1:9000", "http:[::1]:9000/healthz".
  // Throws std::invalid_argument with the reason.
  static Readiness parse(const std::string& text);
  std::string toString() const;
};

struct ProgramConfig : reload::ServiceConfig {
  std::vector<std::string> argv;  // argv[0] is the command as written
  // Variables the program gets besides LISTEN_* and NOTIFY_SOCKET:
  // the inherited ones first, then `environment` (which wins).
  std::vector<std::string> inheritEnvironment;
  std::vector<std::pair<std::string, std::string>> environment;
  std::string workingDirectory = "/";
  Readiness ready;
  int stopSignal = 15;  // SIGTERM
};

// Splits a value into words the way molt-run(8) documents: blanks separate
// words; '...' keeps everything literally; "..." keeps everything but \" and
// \\, which stand for " and \; outside quotes a backslash takes the next
// character literally. Nothing is expanded ($, *, ~ and ; are plain
// characters). Throws std::invalid_argument on an unclosed quote or a
// trailing backslash.
std::vector<std::string> splitWords(const std::string& text);

// SIGTERM, TERM, sigterm -> 15. Signals that cannot stop a program (STOP,
// CONT, CHLD, the terminal stops, URG) are refused. Throws std::invalid_argument.
int parseStopSignal(const std::string& text);
std::string signalName(int signal);

// Reads [program]; problems are recorded in `ini`. No disk access.
std::shared_ptr<const ProgramConfig> parseProgramConfig(reload::IniConfig& ini);

// Variables molt-run sets itself; a configuration may not set or inherit them.
bool isReservedVariable(const std::string& name);

// The PATH the program searches: its environment's, else systemd's default.
std::string programSearchPath(const ProgramConfig& config, const char* inheritedPath);

// What exec will run for argv[0]: a name without '/' searched in `searchPath`,
// a relative path taken from `workingDirectory`. Returns "" and sets `why`
// when nothing executable is there.
std::string resolveProgram(const std::string& command, const std::string& searchPath,
                           const std::string& workingDirectory, std::string& why);

}  // namespace run
