// The contract between an image and the image it execs, and between the
// synchronizer and the new image. Pure encoding and decoding; no I/O.
//
// Across the exec:
//   LISTEN_FDS / LISTEN_PID / LISTEN_FDNAMES  systemd's convention, fds from 3
//   MOLT_HANDOFF=1                          version of everything below
//   MOLT_NOTIFY_FD   write end: the new image writes "READY <pid> <gen>\n" or
//                    "FAIL <reason>\n" to the synchronizer
//   MOLT_STATE_FD    read end: the synchronizer's SyncReport arrives here
//   MOLT_COUNTERS_FD the shared counters' memfd
//   MOLT_SYNC_PID, MOLT_GENERATION (last generation used),
//   MOLT_SERVING_GENERATION, MOLT_STARTED (epoch seconds of the first start),
//   MOLT_WORKER_NICE (the priority moltd was first started with),
//   MOLT_RELOAD_STARTED_US (CLOCK_MONOTONIC), MOLT_PENDING (a reload queued
//   while the old image was busy), MOLT_COUNTERS, MOLT_CHILDREN (every worker
//   the old image knew, so the new one can supervise them even if the
//   synchronizer dies).
//
// That was version 1, which an image still accepts from an older one.
// Version 2 (what this image sends) puts everything in a sealed memfd named
// "moltd-handoff": MOLT_HANDOFF=2 and MOLT_HANDOFF_FD=<fd>; the memfd holds
// "MOLT-HANDOFF 2" then "key=value" lines (see encodeHandoffText). Keys an
// image does not know are ignored, so a newer image may add optional ones;
// a change that an older image must not misread gets a new major version.
// Every decoded number is checked (fds >= 3, pids > 1, counts bounded).
//
// The SyncReport is "MOLT" '1', a 4-byte big-endian body length, then
// "key=value\n" lines.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "reload/worker_registry.h"

namespace reload {

constexpr int kHandoffVersion = 1;        // environment variables
constexpr int kHandoffMemfdVersion = 2;   // a sealed memfd
constexpr size_t kMaxHandoffChildren = 65536;
constexpr size_t kMaxHandoffBytes = 64 << 20;

struct HandoffChild {
  pid_t pid = 0;
  uint64_t generation = 0;
  int slot = 0;
  bool draining = false;
  int64_t killAtUs = 0;  // CLOCK_MONOTONIC; draining only, 0 = never
  // Optional key child_state (an older image knows only draining or not):
  // the worker's state and when it started and began to drain
  // (CLOCK_MONOTONIC, which an exec does not reset; 0 = unknown).
  std::optional<WorkerState> state;
  int64_t startedUs = 0;
  int64_t drainStartedUs = 0;
};

struct HandoffCounters {
  uint64_t reloadsOk = 0;
  uint64_t reloadsFailed = 0;
  uint64_t workerRestarts = 0;
  uint64_t drainKills = 0;
  uint64_t rollbacks = 0;  // key "rollbacks" (optional)
};

// The last reload's outcome, carried so that a rolled back image reports it.
struct HandoffReload {
  std::string kind, result, reason;
  double durationMs = 0;
  int64_t finishedEpoch = 0;
  uint64_t generation = 0;
};

struct HandoffEnv {
  int notifyFd = -1;
  int stateFd = -1;
  int countersFd = -1;
  pid_t syncPid = -1;
  uint64_t lastGeneration = 0;
  uint64_t servingGeneration = 0;
  int64_t startedEpoch = 0;
  int64_t reloadStartedUs = 0;
  std::string pending;  // "", "hup" or "usr1"
  int workerNice = 0;   // the priority moltd was first started with
  HandoffCounters counters;
  std::vector<HandoffChild> children;
  // The old image's validated configuration (encodeValidated), so that a new
  // image that cannot load the configuration can still hand back. Optional.
  std::string previousConfig;
  // Optional keys of version 2 that an older image ignores:
  //   binary_fd       the old image's own binary, open: the last good one,
  //                   run again by a rollback (execveat) even if its file
  //                   was replaced or deleted
  //   probation=1     the old image's synchronizer waits through probation
  //   config          the validated configuration this image is to run
  //                   (encodeValidated), so it never re-reads the file
  //   rollback=1      this image is the last good one taking over again:
  //                   the serving generation's workers are running, and no
  //                   generation is to be started; notify, state and sync
  //                   pid may then be absent (-1, -1, 0): with the notify
  //                   fd, the synchronizer of the failed reload guards
  //                   this image's start and is told to go once it runs
  //   rescue=1        with rollback=1: the synchronizer runs this image in
  //                   its own process, the master before having died
  //   last_reload     the last reload's outcome (see HandoffReload)
  //   worker_notify_fd the datagram socket workers send READY=1 to
  //                   (Readiness::kNotify), so that workers started by
  //                   the image before are still heard after the exec
  //   adopt=1         this image takes the running workers over as they are
  //                   (Service::seamlessReload() is kAdoptWorkers): it
  //                   starts no generation; the serving one stays current
  //                   and the synchronizer drains nothing
  //   child_state     per child: its WorkerState and start times
  //   ready_pipe      pid:fd, the read end of the ready pipe of a worker
  //                   still starting (Readiness::kReadyPipe), so that its
  //                   ready byte reaches the image that adopts it
  //   drain_signal    generation:signal, each generation's drain signal
  //   main_pid        announced:worker, the MAINPID= a worker announced
  //   quick_failures  slot:count, the quick exits in a row of a slot's
  //                   worker, so that a slot that keeps failing keeps its
  //                   respawn delay across the exec
  int binaryFd = -1;
  int workerNotifyFd = -1;
  bool adopt = false;
  std::vector<std::pair<pid_t, int>> readyPipes;
  std::vector<std::pair<uint64_t, int>> drainSignals;
  std::vector<std::pair<pid_t, pid_t>> mainPids;
  std::vector<std::pair<int, int>> quickFailures;
  bool probation = false;
  std::string config;
  bool rollback = false;
  bool rescue = false;
  std::optional<HandoffReload> lastReload;
};

// Throws std::invalid_argument naming the first field out of range.
void validateHandoff(const HandoffEnv& env);

std::string encodeHandoffText(const HandoffEnv& env);

// Lower-case hex, for bytes carried in a text encoding.
std::string hexOf(const std::string& bytes);
// The SHA-256 of `bytes`, in lower-case hex.
std::string sha256Hex(const std::string& bytes);
// Throws std::invalid_argument for an odd length or a bad digit.
std::string bytesOfHex(const std::string& hex);
// Throws std::invalid_argument when the text is not a version 2 handoff or a
// field is malformed or out of range.
HandoffEnv decodeHandoffText(const std::string& text);

// A sealed memfd holding `text`. Throws std::system_error.
int writeHandoffMemfd(const std::string& text);
// Reads the handoff memfd at `fd` after checking that it is one: a sealed
// memfd named moltd-handoff. Closes it. Throws std::invalid_argument.
std::string readHandoffMemfd(int fd);

// Decodes whichever handoff the environment carries (version 1 or 2).
// Returns nothing when there is none; throws std::invalid_argument when it
// cannot be decoded or trusted.
std::optional<HandoffEnv> readHandoff(const std::function<const char*(const char*)>& getenvFn);

using EnvPairs = std::vector<std::pair<std::string, std::string>>;

EnvPairs encodeHandoffEnv(const HandoffEnv& env);
// Returns nothing when MOLT_HANDOFF is absent. Throws std::invalid_argument
// when it is present but malformed or of another version.
std::optional<HandoffEnv> decodeHandoffEnv(
    const std::function<const char*(const char*)>& getenvFn);
// Names the variables decodeHandoffEnv reads, so they can be removed after
// use (readHandoff also reads MOLT_HANDOFF_FD).
std::vector<std::string> handoffEnvNames();

struct SyncReport {
  pid_t syncPid = 0;
  int64_t drainSignalledUs = 0;        // CLOCK_MONOTONIC when old workers were told
  std::vector<pid_t> signalled;        // old workers told to drain
  std::vector<pid_t> alreadyGone;      // old workers that were not there any more
};

std::string encodeSyncReport(const SyncReport& report);
// Returns nothing while `bytes` is still incomplete. Throws
// std::invalid_argument for a bad magic, version or body.
std::optional<SyncReport> decodeSyncReport(const std::string& bytes);

// The notify line the new image sends the synchronizer.
struct NotifyMessage {
  // kReady with `probation`: the new generation serves on probation and
  // the synchronizer waits for kPass (drain the old workers' sockets it
  // holds and go) or kFail (the new image rolls back; leave everything).
  // kStop: the master stops (SIGTERM, SIGINT): nothing to hand back or
  // drain, both generations stop with it.
  enum class Kind { kReady, kFail, kPass, kStop } kind = Kind::kFail;
  pid_t pid = 0;
  uint64_t generation = 0;
  std::string reason;
  bool probation = false;
};
std::string encodeNotify(const NotifyMessage& msg);
// Returns nothing until a full line is present; a malformed line is a kFail
// with a reason saying so.
std::optional<NotifyMessage> decodeNotify(const std::string& bytes);

}  // namespace reload
