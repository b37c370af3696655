// Settings the reload machinery itself needs: [server], [admin] and [log].
// The service adds its own sections through the same IniConfig.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "reload/ini_config.h"
#include "reload/listen_address.h"
#include "reload/log.h"

namespace reload {

enum class ListenerHandoff { kInherit, kRebind };

struct MasterConfig {
  std::vector<ListenAddress> bind;
  int workers = 2;
  double gracefulTimeout = 60;
  double reloadTimeout = 30;
  ListenerHandoff listenerHandoff = ListenerHandoff::kInherit;
  int maxDrainingGenerations = 4;
  // After every reload the new generation is on probation this long while
  // the last good one stands by to take over; 0 turns probation off.
  double reloadProbation = 10;
  // A generation on probation fails when more than this share of its
  // answers are 5xx, counted once it has answered probationMinRequests.
  double probationMax5xxRatio = 0.5;
  int64_t probationMinRequests = 20;
  // Scheduling priority of the master, and so of its config checks and
  // synchronizers: reloads and supervision stay quick while workers saturate
  // the CPU. Workers run at the priority moltd was started with.
  int masterNice = -10;
  std::string pidFile;  // empty: none
  std::string user;     // empty: keep the current user
  std::vector<ListenAddress> adminBind;
  std::string adminTokenFile;  // empty: admin POSTs need no token
  std::string adminToken;      // read from adminTokenFile by validation
  // An admin listener off loopback without a token is refused unless set.
  bool adminAllowRemoteWithoutToken = false;
  log::Settings log;
};

// How bind hosts are turned into addresses; throws std::invalid_argument.
using AddressResolver = std::function<void(ListenAddress&)>;

// Reads [server], [admin] and [log]; problems are recorded in `ini`. Bind
// hosts are resolved with `resolve` (default: resolveListenAddress, a real
// lookup); nothing else touches the system.
MasterConfig parseMasterConfig(IniConfig& ini, const AddressResolver& resolve = {});

// Checks what the master will create or open: the pid file's directory,
// the log file, the admin token file, the user. Problems go to `ini`.
void checkMasterEnvironment(const MasterConfig& config, IniConfig& ini);

// Reads the admin token: the first line, without CR/LF. Throws
// std::runtime_error if the file is missing, unreadable or holds no token.
std::string readAdminToken(const std::string& path);

}  // namespace reload
