#include "worker.h"

#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include "disk_pool.h"
#include "reload/event_loop.h"
#include "http_connection.h"
#include "http_handlers.h"
#include "reload/log.h"
#include "reload/process.h"
#include "reload/signals.h"
#include "reload/worker_signals.h"
#include "reload/sys_error.h"

namespace server {
namespace {

void dropPrivileges(const std::string& user) {
  if (user.empty() || geteuid() != 0) return;
  passwd* pw = getpwnam(user.c_str());
  if (!pw) throw std::runtime_error("no such user '" + user + "'");
  if (initgroups(pw->pw_name, pw->pw_gid) != 0) reload::throwSysError("initgroups " + user);
  if (setgid(pw->pw_gid) != 0) reload::throwSysError("setgid for " + user);
  if (setuid(pw->pw_uid) != 0) reload::throwSysError("setuid to " + user);
}

// Leaves without destructors: the disk pool's threads may be inside a
// syscall, and nothing left would be flushed by unwinding.
// A copy of the access log a worker writes through (it shares the queue),
// so that leaving, from anywhere, writes what is still queued.
AccessLog workerAccessLog("off");
// How long leaving waits for queued access-log lines: a sink that takes
// nothing for this long would hold the exit for ever.
constexpr int64_t kAccessLogFlushMs = 5000;

[[noreturn]] void leave(int code) {
  if (workerAccessLog.enabled()) {
    if (size_t left = workerAccessLog.flush(kAccessLogFlushMs))
      MOLT_LOG(kError) << "access log took nothing for " << kAccessLogFlushMs / 1000
                       << " s while leaving: " << left << " bytes of lines lost";
  }
  // The records of its last moments: waited for, at most kLogExitDrainMs.
  reload::log::drain(reload::log::kLogExitDrainMs);
  _exit(code);
}

bool fileExists(const std::string& path) {
  struct stat st {};
  return !path.empty() && stat(path.c_str(), &st) == 0;
}

// Room for every connection plus the worker's own descriptors and the
// objects open at once.
void raiseDescriptorLimit(int maxConnections) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) reload::throwSysError("getrlimit RLIMIT_NOFILE");
  rlim_t wanted = static_cast<rlim_t>(maxConnections) * 2 + 64;
  if (limit.rlim_cur >= wanted) return;
  limit.rlim_cur = std::min(wanted, limit.rlim_max);
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) reload::throwSysError("setrlimit RLIMIT_NOFILE");
}

class Worker : public ConnectionOwner {
 public:
  // Accepts per wake-up: enough that connections do not wait in the queue
  // (a socket closed for good resets what waits there), bounded by the
  // balance between workers below.
  static constexpr int kAcceptsPerWakeup = 16;
  // Not EPOLLEXCLUSIVE: its wake-ups go to the same waiter first, so the
  // worker that is idle (the one that should take a connection) may never
  // see one. Every worker wakes and the first to get there accepts; with a
  // handful of workers the wasted wake-ups cost little.
  static constexpr uint32_t kListenerEvents = EPOLLIN;
  static constexpr int kMaxQueuedAtDrain = 1024;
  static constexpr int kMaxSkippedWakeups = 64;

  Worker(const reload::WorkerContext& ctx, const ObjectServerConfig& config, WorkerShared& shared,
         reload::EventLoop& loop)
      : ctx_(ctx), config_(config), shared_(shared), loop_(loop),
        maxConnections_(config.maxConnections),
        maxRefusing_(std::max(16, config.maxConnections / 8)) {}

  void listen() {
    for (int fd : ctx_.listenerFds) {
      // HTTP's client speaks first: the kernel wakes a worker for a TCP
      // connection once its first bytes came (or a second later), so the
      // accept is followed by a read that finds the request, not EAGAIN.
      // Socket-wide and idempotent, so every worker sets it; refused on
      // Unix sockets, which need none.
      int deferSeconds = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &deferSeconds, sizeof deferSeconds);
      listeners_.push_back(std::make_unique<Listener>(*this, fd));
      loop_.add(fd, kListenerEvents, listeners_.back().get());
    }
  }

  // Takes what is already queued on the listeners (the socket may be
  // closed for good once the draining generations let go of it, and its
  // queue with it), then closes this process's copies.
  void stopAccepting() {
    acceptsPaused_ = false;
    standby_ = false;
    for (auto& l : listeners_) {
      if (l->fd < 0) continue;
      acceptUpTo(*l, kMaxQueuedAtDrain);
      if (l->fd < 0) continue;
      const int fd = l->fd;
      if (int err = reload::closeListenerCopy(loop_, l->fd))
        MOLT_LOG(kWarning) << "close listener copy fd " << fd << ": " << std::strerror(err);
    }
  }

  // Standing by during a reload's probation: no accepts, but the listener
  // copies stay open, so that taking over again is one signal.
  void standBy() {
    standby_ = true;
    for (auto& l : listeners_)
      if (l->fd >= 0 && !acceptsPaused_) loop_.remove(l->fd);
  }
  void resumeFromStandby() {
    if (!standby_) return;
    standby_ = false;
    if (acceptsPaused_) return;  // resumeAcceptsIfDue adds them back
    for (auto& l : listeners_)
      if (l->fd >= 0) loop_.add(l->fd, kListenerEvents, l.get());
  }
  bool standingBy() const { return standby_; }

  void drainStarted() {
    for (auto& [raw, conn] : connections_) conn->drainStarted();
  }

  // Connections whose socket is still open.
  int open() const { return shared_.drain.openConnections(); }
  // Connections, open or waiting for the disk to finish their work.
  size_t alive() const { return connections_.size(); }

  void cutAll() {
    std::vector<Connection*> all;
    for (auto& [raw, conn] : connections_) all.push_back(raw);
    for (auto* c : all) c->cut();
  }

  void connectionClosed(Connection* c) override { dead_.push_back(c); }

  // SIGTERM was read and the drain starts after this turn of the loop:
  // connections that come meanwhile are treated as the drain would.
  void drainAsked() { drainAsked_ = true; }
  // Reads the signals that are pending now, out of the loop's turn.
  std::function<void()> readSignalsNow;

  void collectDead() {
    for (auto* c : dead_) {
      if (!c->refused()) shared_.drain.connectionClosed();
      else --refusing_;
      connections_.erase(c);
    }
    if (!dead_.empty() && !shared_.drain.draining()) publishLoad();
    dead_.clear();
  }

  // How long the loop may sleep before accepts must resume.
  int acceptWaitMs(int longest) const {
    if (!acceptsPaused_) return longest;
    return static_cast<int>(std::clamp<int64_t>(acceptsPausedUntil_ - loop_.nowMs(), 0, longest));
  }

  void resumeAcceptsIfDue() {
    if (!acceptsPaused_ || loop_.nowMs() < acceptsPausedUntil_) return;
    acceptsPaused_ = false;
    if (standby_) return;
    for (auto& l : listeners_)
      if (l->fd >= 0) loop_.add(l->fd, kListenerEvents, l.get());
  }

 private:
  struct Listener : reload::EventHandler {
    Listener(Worker& w, int listenFd) : worker(w), fd(listenFd) {}
    void onEvents(uint32_t) override { worker.acceptFrom(*this); }
    Worker& worker;
    int fd;
  };

  // A worker that took a burst whole would serve it alone while the others
  // idle: it accepts while no other current worker holds clearly fewer
  // connections. The listener is level-triggered, so what is left wakes a
  // worker again.
 public:
  // Publishes this worker's open connections for the others.
  void publishLoad() {
    if (!ctx_.counters) return;
    auto second = static_cast<uint64_t>(loop_.nowMs() / 1000) & 0xffffffffu;
    (*ctx_.counters)[kWorkerLoad + static_cast<size_t>(ctx_.slot) % kWorkerLoadSlots].store(
        second << 32 | static_cast<uint64_t>(open()), std::memory_order_relaxed);
  }

  // Whether another current worker holds clearly fewer connections, so this
  // one should leave new connections to it. Entries not refreshed for 2 s
  // (a worker that died) are ignored.
  bool othersHaveRoom() {
    if (!ctx_.counters) return false;
    int workers = std::min(ctx_.config->master.workers, static_cast<int>(kWorkerLoadSlots));
    auto now = static_cast<uint64_t>(loop_.nowMs() / 1000);
    int mine = open();
    int least = mine;
    for (int slot = 0; slot < workers; ++slot) {
      if (slot == ctx_.slot) continue;
      uint64_t value = ctx_.counters->load(kWorkerLoad + static_cast<size_t>(slot));
      if (value == 0 || now - (value >> 32) > 2) continue;
      least = std::min(least, static_cast<int>(value & 0xffffffffu));
    }
    return mine > least + std::max(8, least / 4);
  }

 private:
  void acceptFrom(Listener& listener) {
    // Every worker wakes for a new connection. One that holds clearly more
    // than another lets a few wake-ups pass (the listener is level-triggered,
    // so it wakes again at once: microseconds, in which the other worker
    // takes the connection), then takes one itself, so that no connection
    // waits long in the queue for a worker that steps aside.
    if (othersHaveRoom()) {
      if (++skipped_ < kMaxSkippedWakeups) return;
      skipped_ = 0;
      acceptUpTo(listener, 1);
      return;
    }
    skipped_ = 0;
    acceptUpTo(listener, kAcceptsPerWakeup, true);
  }

  // With `balance`, stops once another worker holds clearly fewer.
  void acceptUpTo(Listener& listener, int most, bool balance = false) {
    for (int i = 0; i < most && listener.fd >= 0 && !acceptsPaused_ && !standby_; ++i) {
      if (balance && i > 0 && othersHaveRoom()) return;
      // A draining worker at its cap cannot serve another connection, and a
      // 503 would only turn a client away that the next generation, which
      // accepts on the same sockets, can serve: it leaves it queued.
      if (open() >= maxConnections_ && !drainAsked_ && readSignalsNow) {
        // A SIGTERM may wait behind the listener's event in this turn:
        // read it before a connection is turned away that the next
        // generation could serve.
        readSignalsNow();
      }
      if ((shared_.drain.draining() || drainAsked_) && open() >= maxConnections_) return;
      int fd = accept4(listener.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        switch (errno) {
          case EAGAIN: return;
          case EINTR:
          case ECONNABORTED:
          case EPROTO: continue;
          case EMFILE:
          case ENFILE:
          case ENOBUFS:
          case ENOMEM:
            MOLT_LOG(kError) << "accept: " << std::strerror(errno) << "; pausing accepts for 100 ms";
            pauseAccepts(100);
            return;
          default: {
            // Linux passes errors of the network and of filters through
            // accept (ENETDOWN, EHOSTUNREACH, EPERM, ...): they pass, so
            // retry with a backoff. Only a socket that no longer listens
            // (shut down by another holder: EINVAL, or EBADF) is gone.
            int err = errno;
            int listening = 0;
            socklen_t len = sizeof listening;
            if (getsockopt(listener.fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 &&
                listening) {
              MOLT_LOG(kWarning) << "accept on listener fd " << listener.fd << ": "
                                 << std::strerror(err) << "; retrying in " << acceptBackoffMs_
                                 << " ms";
              pauseAccepts(acceptBackoffMs_);
              acceptBackoffMs_ = std::min<int64_t>(acceptBackoffMs_ * 2, 1000);
              return;
            }
            MOLT_LOG(kWarning) << "listener fd " << listener.fd << " stopped listening ("
                               << std::strerror(err) << "); no longer polled";
            loop_.remove(listener.fd);
            listener.fd = -1;
            return;
          }
        }
      }
      acceptBackoffMs_ = kFirstAcceptBackoffMs;
      bool atCap = open() >= maxConnections_;
      if (atCap) {
        int64_t now = loop_.nowMs();
        if (now - lastCapLog_ >= 1000) {
          lastCapLog_ = now;
          MOLT_LOG(kWarning) << "max_connections " << maxConnections_
                             << " reached: answering new connections with 503";
        }
        if (refusing_ >= maxRefusing_) {
          ::close(fd);
          continue;
        }
        ++refusing_;
      } else {
        shared_.drain.connectionOpened();
      }
      publishLoad();
      auto conn = std::make_unique<Connection>(shared_, *this, fd, atCap);
      Connection* raw = conn.get();
      connections_.emplace(raw, std::move(conn));
      try {
        raw->start();
      } catch (const std::exception& e) {
        MOLT_LOG(kError) << "cannot serve a connection: " << e.what();
        raw->cut();
      }
    }
  }

  void pauseAccepts(int64_t ms) {
    bool wasWatching = !acceptsPaused_ && !standby_;
    acceptsPaused_ = true;
    acceptsPausedUntil_ = loop_.nowMs() + ms;
    if (!wasWatching) return;
    for (auto& l : listeners_)
      if (l->fd >= 0) loop_.remove(l->fd);
  }

  const reload::WorkerContext& ctx_;
  const ObjectServerConfig& config_;
  WorkerShared& shared_;
  reload::EventLoop& loop_;
  int maxConnections_;
  int maxRefusing_;
  int refusing_ = 0;
  int skipped_ = 0;
  int64_t lastCapLog_ = -1000;
  bool acceptsPaused_ = false;
  bool standby_ = false;
  int64_t acceptsPausedUntil_ = 0;
  static constexpr int64_t kFirstAcceptBackoffMs = 10;
  int64_t acceptBackoffMs_ = kFirstAcceptBackoffMs;
  bool drainAsked_ = false;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unordered_map<Connection*, std::unique_ptr<Connection>> connections_;
  std::vector<Connection*> dead_;
};

}  // namespace

int runObjectWorker(const reload::WorkerContext& ctx, const ObjectServerConfig& config,
                    const std::string& version) noexcept {
  try {
    const auto& master = ctx.config->master;
    reload::setProcessName("moltd-w" + std::to_string(ctx.generation) + "." +
                           std::to_string(ctx.slot));
    AccessLog accessLog(config.accessLog);
    dropPrivileges(master.user);
    // If the master dies, drain and go rather than serve unsupervised.
    if (!reload::watchMaster(ctx)) leave(0);
    raiseDescriptorLimit(config.maxConnections);

    reload::log::countDropsIn(ctx.counters);
    reload::EventLoop loop;
    WorkerShared shared(config, ctx.generation, std::move(accessLog), loop);
    workerAccessLog = shared.accessLog;
    shared.clientTimeoutMs = static_cast<int64_t>(config.clientTimeout * 1000);
    shared.keepaliveTimeoutMs = static_cast<int64_t>(config.keepaliveTimeout * 1000);
    shared.headerTimeoutMs = static_cast<int64_t>(config.clientHeaderTimeout * 1000);
    shared.minBodyRate = config.clientBodyMinRate;
    shared.versions.setTrustAfter(master.gracefulTimeout);
    shared.headerLimits.maxHeaderBytes = static_cast<uint32_t>(config.maxHeaderSize);
    shared.counters = ctx.counters;
    shared.serverHeader = "Server: moltd/" + version + "\r\n";
    // Before the first accept: no request waits on this one.
    shared.readOnly = fileExists(config.storage.readOnlyFile);

    reload::WorkerSignals signals(loop, ctx);
    // The pool's threads inherit the worker's mask: every handled signal is
    // blocked (the master forks workers with it) and read from the signalfd.
    // One thread before the first accept; the others start once the
    // worker is ready (each starting the next, so the acceptor never waits
    // for them) and inherit its priority then.
    DiskPool pool(loop, config.diskThreads, 1);
    shared.pool = &pool;
    Worker worker(ctx, config, shared, loop);
    signals.onDrainAsked = [&worker] { worker.drainAsked(); };
    worker.readSignalsNow = [&signals] { signals.onEvents(EPOLLIN); };
    worker.listen();
    worker.publishLoad();

    if (!reload::signalWorkerReady(ctx)) leave(1);  // the master is gone
    pool.startRest();
    MOLT_LOG(kInfo) << "worker slot " << ctx.slot << " serving on " << ctx.listenerFds.size()
                    << " listeners";

    // The read-only flag is one stat(), but on a disk that may be slow: the
    // pool does it (the loop serves meanwhile), and its answer is applied
    // on the loop as soon as it is back. A check asked for meanwhile runs
    // after the current one. Volume scans touch every volume: the pool
    // does them the same way.
    bool readOnlyCheckRunning = false, readOnlyCheckAgain = false;
    std::function<void()> checkReadOnly = [&] {
      if (readOnlyCheckRunning) {
        readOnlyCheckAgain = true;
        return;
      }
      readOnlyCheckRunning = true;
      auto found = std::make_shared<bool>(false);
      auto next = [&] {
        readOnlyCheckRunning = false;
        if (std::exchange(readOnlyCheckAgain, false)) checkReadOnly();
      };
      try {
        pool.submit([found, &path = config.storage.readOnlyFile] { *found = fileExists(path); },
                    [&, found, next] {
                      if (*found != static_cast<bool>(shared.readOnly))
                        MOLT_LOG(kInfo) << (*found ? "read-only: refusing writes"
                                                   : "read-write: accepting writes");
                      shared.readOnly = *found;
                      next();
                    },
                    [next](int, const std::string& text) {
                      MOLT_LOG(kWarning) << "cannot check the read-only flag: " << text;
                      next();
                    });
      } catch (const std::exception& e) {
        readOnlyCheckRunning = false;
        MOLT_LOG(kWarning) << "cannot check the read-only flag: " << e.what();
      }
    };
    bool scanRunning = false, scanAgain = false;
    std::function<void()> rescan = [&] {
      if (scanRunning) {
        scanAgain = true;
        return;
      }
      scanRunning = true;
      pool.submit([&shared] { shared.store.rescan(); },
                  [&] {
                    scanRunning = false;
                    if (std::exchange(scanAgain, false)) rescan();
                  });
    };
    int64_t nextVolumeScan = loop.nowMs() + static_cast<int64_t>(config.storage.volumeScanInterval * 1000);
    int64_t nextReadOnlyCheck =
        loop.nowMs() + static_cast<int64_t>(config.storage.readOnlyCheckInterval * 1000);
    bool draining = false;
    int64_t lastPublished = 0;
    int64_t drainStarted = 0;
    int atDrainStart = 0;
    const int64_t gracefulMs = static_cast<int64_t>(master.gracefulTimeout * 1000);
    for (;;) {
      // Records waiting for the log are tried again when it says.
      const int logWait = reload::log::retryWaitMs();
      const int acceptWait = worker.acceptWaitMs(250);
      loop.runOnce(logWait < 0 ? acceptWait : std::min(acceptWait, logWait));
      shared.flushCounts();
      shared.checkCacheIfDue();
      worker.collectDead();
      worker.resumeAcceptsIfDue();
      int64_t now = loop.nowMs();
      bool drainNow = false;
      for (reload::WorkerOrder order : signals.take()) {
        if (order == reload::WorkerOrder::kDrain) drainNow = true;
        // Probation: the master puts the worker on standby and lets it take
        // over again.
        if (order == reload::WorkerOrder::kStandBy && !draining && !worker.standingBy()) {
          shared.drain.startDraining();
          worker.standBy();
          worker.drainStarted();
          MOLT_LOG(kInfo) << "standing by: stopped accepting; " << worker.open()
                          << " connections open";
        }
        if (order == reload::WorkerOrder::kTakeOver && !draining && worker.standingBy()) {
          shared.drain.resume();
          worker.resumeFromStandby();
          worker.publishLoad();
          MOLT_LOG(kInfo) << "taking over again: accepting";
        }
        if (order == reload::WorkerOrder::kQuit) leave(0);
        // The master logs volume changes once; workers only act on them.
        if (order == reload::WorkerOrder::kRecheck) {
          checkReadOnly();
          rescan();
        }
      }
      if (config.storage.volumeScanInterval > 0 && now >= nextVolumeScan) {
        nextVolumeScan = now + static_cast<int64_t>(config.storage.volumeScanInterval * 1000);
        rescan();
      }
      if (config.storage.readOnlyCheckInterval > 0 && now >= nextReadOnlyCheck) {
        nextReadOnlyCheck = now + static_cast<int64_t>(config.storage.readOnlyCheckInterval * 1000);
        checkReadOnly();
      }
      if (!draining && !worker.standingBy() && now / 1000 != lastPublished / 1000) {
        lastPublished = now;
        worker.publishLoad();
      }
      if (drainNow && !draining) {
        // Drain: stop accepting, close our copies of the listeners, answer
        // everything still open with Connection: close.
        draining = true;
        drainStarted = now;
        shared.drain.startDraining();
        worker.stopAccepting();
        worker.drainStarted();
        atDrainStart = worker.open();
        MOLT_LOG(kInfo) << "draining: stopped accepting; " << atDrainStart << " connections open";
      }
      if (!draining) continue;
      if (worker.alive() == 0) {
        shared.flushCounts();
        MOLT_LOG(kInfo) << "drained " << atDrainStart << " connections in "
                        << static_cast<double>(loop.nowMs() - drainStarted) / 1000 << "s; exiting";
        leave(0);
      }
      if (now - drainStarted >= gracefulMs) {
        shared.flushCounts();
        MOLT_LOG(kWarning) << "graceful_timeout " << master.gracefulTimeout << "s passed: cutting "
                           << worker.open() << " of " << atDrainStart
                           << " connections still open";
        leave(0);
      }
    }
  } catch (const std::exception& e) {
    MOLT_LOG(kCritical) << "worker failed: " << e.what();
    leave(1);
  }
}

}  // namespace server
