// Both sides of the exec that replaces the master's image under the same
// PID: what the old image lays out for the new one (descriptors and
// environment, see handoff.h for the contract) and what the new one takes
// from its environment at start. The encoding itself is handoff.h's.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "reload/fd.h"
#include "reload/handoff.h"
#include "reload/process.h"

namespace reload {

// The old image's side. Construction prepares what cannot disturb the
// running image (copies of the descriptors the new image gets, the sealed
// memfd); apply() lays it out for execv; undo() puts everything back when
// the exec failed, and the old image goes on serving.
class ExecLayout {
 public:
  // `env`'s descriptor fields are replaced by copies of `notifyFd`,
  // `stateFd` and `countersFd` placed above the range the listeners will
  // take (3 .. 3 + listeners.size() - 1), so that laying the listeners out
  // cannot displace them. `names` are LISTEN_FDNAMES, one per listener.
  // `notifyFd` and `stateFd` may be -1 (a rollback's image); env.binaryFd
  // and env.workerNotifyFd, when set, and env.readyPipes are copied the
  // same way.
  // Throws std::system_error; then nothing has changed.
  ExecLayout(HandoffEnv env, int notifyFd, int stateFd, int countersFd,
             std::vector<int> listeners, std::vector<std::string> names);
  ExecLayout(const ExecLayout&) = delete;
  ExecLayout& operator=(const ExecLayout&) = delete;
  ~ExecLayout() { undo(); }

  // Puts the listeners at 3 and up, sets LISTEN_FDS, LISTEN_PID (`pid`),
  // LISTEN_FDNAMES, MOLT_HANDOFF and MOLT_HANDOFF_FD, and marks every other
  // descriptor close-on-exec. Throws std::system_error; undo() then.
  void apply(pid_t pid);
  // Restores descriptors and environment as they were before apply() and
  // closes the copies. Idempotent.
  void undo() noexcept;

  // A close-on-exec copy of `fd` above the places the listeners will take,
  // made before apply(): apply() parks whatever sits at 3 and up, so the
  // descriptor an exec runs (a binary opened early, often at 3) must be
  // reached through this copy. Throws std::system_error.
  Fd copyClearOfListeners(int fd, const char* what) const;

  // The descriptors the new image inherits (valid once applied).
  std::vector<int> passedFds() const;
  const HandoffEnv& env() const { return env_; }

 private:
  HandoffEnv env_;
  std::vector<int> listeners_;
  std::vector<std::string> names_;
  Fd notify_, state_, counters_, memfd_, binary_, workerNotify_;  // the copies the new image gets
  std::vector<Fd> readyPipes_;
  std::optional<FdLayout> layout_;
  bool applied_ = false;
};

// The new image's side: what its environment says about the image before.
// Log records the image before the exec dropped and no summary reported:
// set just before the exec, after the layout, and read only with a handoff
// that is used.
constexpr char kLogDropsVariable[] = "MOLT_LOG_UNREPORTED_DROPS";

// Sets kLogDropsVariable for the image an exec starts, to what
// log::dropWaiting() returned (0 too, so that no earlier value stays).
void handLogDropsOn(uint64_t records);

struct InheritedHandoff {
  bool afterExec = false;             // MOLT_HANDOFF was set, usable or not
  std::optional<HandoffEnv> handoff;  // decoded, in range, descriptors checked
  std::string untrusted;              // why a handoff that was there is not used
  uint64_t logDrops = 0;              // kLogDropsVariable, with a used handoff
};

// Reads the handoff from the environment, checks it and removes its
// variables (LISTEN_* stay for systemd::takeListenFds). Never throws.
InheritedHandoff takeInheritedHandoff();

// "" when the notify and state descriptors are the pipe ends they claim to
// be; otherwise what is wrong.
std::string checkHandoffFds(const HandoffEnv& env);

}  // namespace reload
