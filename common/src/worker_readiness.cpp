// How the master learns that a new worker serves (see Readiness in
// reload/master.h): the ready pipe, READY=1 on the workers' notify socket, a
// delay, or a connect or HTTP probe of the worker's address; and STOPPING=1,
// which fails a generation on probation.
#include "worker_readiness.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>

#include "reload/listen_address.h"
#include "reload/listeners.h"
#include "reload/log.h"
#include "reload/process.h"
#include "reload/sys_error.h"
#include "master_impl.h"

namespace reload {

void MasterImpl::onReadyPipe(uint64_t token) {
  auto it = readyPipes_.find(token);
  if (it == readyPipes_.end()) return;
  char byte = 0;
  ssize_t n = read(it->second.fd.get(), &byte, 1);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  pid_t pid = it->second.pid;
  readyPipes_.erase(it);
  if (n == 1 && byte == 'R') workerReady(pid, "ready pipe");
  // EOF without the byte: the worker died; its exit status says why.
}

void MasterImpl::workerReady(pid_t pid, const char* how) {
  if (awaitingReady_.erase(pid) == 0) return;  // ready already (READY=1 again)
  auto* w = registry_.find(pid);
  if (!w) return;
  if (w->state == WorkerState::kDraining) {
    signalChild(pid, drainSignalOf(w->generation));  // its generation failed while it started
    return;
  }
  MOLT_LOG(kDebug) << "worker pid " << pid << " is ready (" << how << ")";
  registry_.markReady(pid);
  if (state_.starting() && registry_.readyCount(state_.starting()->generation) >=
                               static_cast<size_t>(startingConfig_->master.workers))
    completeStarting();
}

void MasterImpl::forgetReadiness(pid_t pid) {
  awaitingReady_.erase(pid);
  readyTimers_.erase(pid);
  readyProbes_.erase(pid);
  for (auto it = mainPids_.begin(); it != mainPids_.end();)
    it = it->second == pid ? mainPids_.erase(it) : std::next(it);
}

void MasterImpl::watchReadiness(pid_t pid, int slot, const GenerationPolicy& policy) {
  const ReadinessCheck& check = policy.readiness;
  switch (check.mode) {
    case Readiness::kReadyPipe:
    case Readiness::kNotify:
      return;  // the worker says so
    case Readiness::kDelay: {
      auto& timer = readyTimers_
                        .try_emplace(pid, loop_, guarded("ready delay", [this, pid] {
                                       workerReady(pid, "ready delay");
                                     }))
                        .first->second;
      timer.arm(msAt(monotonicSeconds() + check.delaySeconds));
      return;
    }
    case Readiness::kConnectProbe:
    case Readiness::kHttpProbe: {
      auto& probe =
          readyProbes_
              .try_emplace(
                  pid, loop_,
                  [this, pid](uint32_t events) {
                    guard("ready probe", [this, pid, events] { onReadyProbeEvent(pid, events); });
                  },
                  guarded("ready probe retry", [this, pid] { startReadyProbe(pid); }))
              .first->second;
      probe.check = check;
      probe.slot = slot;
      // The worker has just been forked: its program needs a moment.
      probe.retry.arm(loop_.nowMs() + std::max<int64_t>(10, static_cast<int64_t>(check.probeIntervalSeconds * 1000)));
      return;
    }
  }
}

// One attempt of a worker's probe: a non-blocking connect on the loop; the
// reload's deadline (reload_timeout) bounds the attempts.
void MasterImpl::startReadyProbe(pid_t pid) {
  auto it = readyProbes_.find(pid);
  if (it == readyProbes_.end() || !awaitingReady_.count(pid)) return;
  ReadyProbe& probe = it->second;
  probe.fd.reset();
  probe.sent = false;
  probe.received.clear();
  const ListenAddress& target = probe.check.probeAddress;
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (target.kind == ListenAddress::Kind::kUnix) {
    auto& un = reinterpret_cast<sockaddr_un&>(addr);
    un.sun_family = AF_UNIX;
    std::strncpy(un.sun_path, target.path.c_str(), sizeof un.sun_path - 1);
    len = sizeof un;
  } else {
    if (target.resolvedLength == 0) {
      MOLT_LOG(kError) << "ready probe " << target.toString() << " was not resolved by validation";
      return;
    }
    len = resolveSockaddr(target, addr);
    if (probe.check.probePortPerSlot) {
      auto port = htons(static_cast<uint16_t>(target.port + probe.slot));
      if (addr.ss_family == AF_INET) reinterpret_cast<sockaddr_in&>(addr).sin_port = port;
      if (addr.ss_family == AF_INET6) reinterpret_cast<sockaddr_in6&>(addr).sin6_port = port;
    }
  }
  Fd fd(socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    MOLT_LOG(kWarning) << "ready probe socket: " << std::strerror(errno);
    retryReadyProbe(pid);
    return;
  }
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), len) != 0 && errno != EINPROGRESS) {
    retryReadyProbe(pid);
    return;
  }
  probe.fd.watch(std::move(fd), EPOLLOUT);
}

void MasterImpl::retryReadyProbe(pid_t pid) {
  auto it = readyProbes_.find(pid);
  if (it == readyProbes_.end() || !awaitingReady_.count(pid)) return;
  it->second.fd.reset();
  it->second.retry.arm(loop_.nowMs() + std::max<int64_t>(10, static_cast<int64_t>(
                                                                 it->second.check.probeIntervalSeconds * 1000)));
}

void MasterImpl::onReadyProbeEvent(pid_t pid, uint32_t events) {
  auto it = readyProbes_.find(pid);
  if (it == readyProbes_.end() || !it->second.fd) return;
  ReadyProbe& probe = it->second;
  if (!probe.sent) {
    int err = 0;
    socklen_t errLen = sizeof err;
    if (getsockopt(probe.fd.get(), SOL_SOCKET, SO_ERROR, &err, &errLen) != 0 || err != 0 ||
        (events & (EPOLLERR | EPOLLHUP))) {
      retryReadyProbe(pid);
      return;
    }
    if (probe.check.mode == Readiness::kConnectProbe) {
      probe.fd.reset();
      workerReady(pid, "connect probe");
      return;
    }
    std::string request = "GET " + probe.check.probePath + " HTTP/1.0\r\nHost: " +
                          probe.check.probeAddress.toString() + "\r\nConnection: close\r\n\r\n";
    // A request this small goes in one write on a fresh connection.
    if (send(probe.fd.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
      retryReadyProbe(pid);
      return;
    }
    probe.sent = true;
    loop_.modify(probe.fd.get(), EPOLLIN);
    return;
  }
  char buf[512];
  ssize_t n = recv(probe.fd.get(), buf, sizeof buf, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n > 0) probe.received.append(buf, static_cast<size_t>(n));
  auto eol = probe.received.find("\r\n");
  if (eol == std::string::npos && n > 0 && probe.received.size() < 4096) return;
  // "HTTP/1.x NNN ...": 2xx and 3xx mean the worker serves.
  std::string line = probe.received.substr(0, eol);
  bool ok = line.size() >= 12 && line.rfind("HTTP/1.", 0) == 0 && line[8] == ' ' &&
            (line[9] == '2' || line[9] == '3');
  probe.fd.reset();
  if (ok) workerReady(pid, "HTTP probe");
  else retryReadyProbe(pid);
}

std::string MasterImpl::ensureWorkerNotifySocket() {
  if (workerNotify_) return workerNotifyName_;
  Fd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) throwSysError("socket for the workers' notifications");
  int one = 1;
  if (setsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0)
    throwSysError("SO_PASSCRED on the workers' notify socket");
  // An abstract address: nothing on disk, gone with the last descriptor,
  // which the master keeps across its exec.
  for (unsigned attempt = 0;; ++attempt) {
    char name[96];
    std::snprintf(name, sizeof name, "%s-notify-%d-%llx", service_.name().c_str(), pid_,
                  static_cast<unsigned long long>(monotonicMicros()) + attempt);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    size_t nameLen = std::min(std::strlen(name), sizeof addr.sun_path - 2);
    std::memcpy(addr.sun_path + 1, name, nameLen);
    auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + nameLen);
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) == 0) {
      workerNotifyName_ = "@" + std::string(name, nameLen);
      break;
    }
    if (errno != EADDRINUSE || attempt >= 8) throwSysError("bind the workers' notify socket");
  }
  workerNotify_.watch(std::move(fd), EPOLLIN);
  MOLT_LOG(kDebug) << "workers notify the master on " << workerNotifyName_;
  return workerNotifyName_;
}

void MasterImpl::adoptWorkerNotifySocket(int fd) {
  Fd owned(fd);
  sockaddr_un addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 || addr.sun_family != AF_UNIX ||
      len <= offsetof(sockaddr_un, sun_path) + 1 || addr.sun_path[0] != '\0') {
    MOLT_LOG(kWarning) << "handoff: worker notify fd " << fd << " is not an abstract socket; ignored";
    return;
  }
  setCloseOnExec(fd, true);
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0 && !(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
    throwSysError("O_NONBLOCK on the workers' notify socket");
  workerNotifyName_ = "@" + std::string(addr.sun_path + 1, len - offsetof(sockaddr_un, sun_path) - 1);
  workerNotify_.watch(std::move(owned), EPOLLIN);
}

void MasterImpl::readWorkerNotify() {
  // A bounded batch per wake-up: a worker that floods the socket cannot
  // keep the loop from everything else (the socket is level-triggered).
  for (int i = 0; i < 64; ++i) {
    char buf[4096];
    iovec iov{buf, sizeof buf};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * 16)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(workerNotify_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) MOLT_LOG(kWarning) << "worker notify socket: " << std::strerror(errno);
      return;
    }
    pid_t sender = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET) continue;
      if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(ucred))) {
        ucred cred{};
        std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
        sender = cred.pid;
      } else if (c->cmsg_type == SCM_RIGHTS) {
        // Descriptors (FDSTORE=1) are not kept: closed at once.
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t k = 0; k < count; ++k) {
          int passed = -1;
          std::memcpy(&passed, CMSG_DATA(c) + k * sizeof(int), sizeof passed);
          if (passed >= 0) close(passed);
        }
      }
    }
    if ((msg.msg_flags & MSG_TRUNC) || sender <= 0) continue;
    onWorkerNotify(sender, std::string(buf, static_cast<size_t>(n)));
  }
}

// Attributes a notification to a worker: its own pid, a MAINPID it
// announced, or a child of a worker (a program that forks before it
// notifies). Anything else is ignored.
void MasterImpl::onWorkerNotify(pid_t sender, const std::string& message) {
  pid_t worker = 0;
  if (registry_.find(sender)) {
    worker = sender;
  } else if (auto it = mainPids_.find(sender); it != mainPids_.end()) {
    worker = it->second;
  } else if (pid_t parent = parentOf(sender); parent > 1 && registry_.find(parent)) {
    worker = parent;
  }
  if (worker == 0) {
    MOLT_LOG(kDebug) << "notification from pid " << sender << ", not a worker: ignored";
    return;
  }
  std::istringstream lines(message);
  for (std::string line; std::getline(lines, line);) {
    if (line == "READY=1") {
      workerReady(worker, "READY=1");
    } else if (line.rfind("MAINPID=", 0) == 0) {
      std::string digits = line.substr(8);
      if (!digits.empty() && digits.size() < 10 &&
          digits.find_first_not_of("0123456789") == std::string::npos) {
        auto mainPid = static_cast<pid_t>(std::stol(digits));
        if (mainPid > 1) mainPids_[mainPid] = worker;
      }
    } else if (line.rfind("STATUS=", 0) == 0) {
      MOLT_LOG(kDebug) << "worker pid " << worker << " status: " << line.substr(7);
    } else if (line == "STOPPING=1") {
      auto* w = registry_.find(worker);
      if (!w) continue;
      MOLT_LOG(kInfo) << "worker pid " << worker << " of generation " << w->generation
                      << " is stopping (STOPPING=1)";
      const auto& probation = state_.probation();
      if (probation && w->generation == probation->generation && w->state != WorkerState::kDraining) {
        failProbation("worker " + std::to_string(w->generation) + "." + std::to_string(w->slot) +
                      " (pid " + std::to_string(worker) + ") stopped being ready (STOPPING=1)");
        return;
      }
    }
  }
}

}  // namespace reload
