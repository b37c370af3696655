#include "worker.h"

#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <Poco/Net/HTTPServerConnection.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Net/StreamSocketImpl.h>
#include <Poco/Net/TCPServerConnectionFactory.h>
#include <Poco/Net/TCPServerDispatcher.h>
#include <Poco/ThreadPool.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "http_handlers.h"
#include "reload/log.h"
#include "reload/process.h"
#include "reload/signals.h"
#include "reload/sys_error.h"

namespace server {
namespace {

// An HTTPServerConnection that tells the drain bookkeeping when it is gone.
class CountedConnection : public Poco::Net::HTTPServerConnection {
 public:
  CountedConnection(const Poco::Net::StreamSocket& socket, Poco::Net::HTTPServerParams::Ptr params,
                    Poco::Net::HTTPRequestHandlerFactory::Ptr factory, DrainState& drain)
      : HTTPServerConnection(socket, params, factory), drain_(drain) {}
  ~CountedConnection() override { drain_.connectionClosed(); }

 private:
  DrainState& drain_;
};

class CountedConnectionFactory : public Poco::Net::TCPServerConnectionFactory {
 public:
  CountedConnectionFactory(Poco::Net::HTTPServerParams::Ptr params,
                           Poco::Net::HTTPRequestHandlerFactory::Ptr factory, DrainState& drain)
      : params_(params), factory_(factory), drain_(drain) {}
  Poco::Net::TCPServerConnection* createConnection(const Poco::Net::StreamSocket& socket) override {
    return new CountedConnection(socket, params_, factory_, drain_);
  }

 private:
  Poco::Net::HTTPServerParams::Ptr params_;
  Poco::Net::HTTPRequestHandlerFactory::Ptr factory_;
  DrainState& drain_;
};

// Accepts on the shared non-blocking listeners and hands connections to
// Poco's dispatcher. Poco's own TCPServer is not used: its stop() discards
// connections it has accepted but not served, and it can hang in accept().
class Acceptor {
 public:
  Acceptor(std::vector<int> listeners, Poco::Net::TCPServerDispatcher& dispatcher,
           DrainState& drain, int maxQueued)
      : listeners_(std::move(listeners)), dispatcher_(dispatcher), drain_(drain),
        maxQueued_(maxQueued) {
    wake_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_) reload::throwSysError("eventfd for the acceptor");
  }
  void start() { thread_ = std::thread([this] { run(); }); }
  // Stops accepting; returns once the acceptor thread is gone.
  void stop() {
    uint64_t one = 1;
    if (write(wake_.get(), &one, sizeof one) < 0) { /* the thread is already gone */ }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    std::vector<int> active = listeners_;
    for (;;) {
      bool full = dispatcher_.queuedConnections() >= maxQueued_;
      std::vector<pollfd> fds;
      fds.push_back(pollfd{wake_.get(), POLLIN, 0});
      if (!full && !pausedForFds_)
        for (int fd : active) fds.push_back(pollfd{fd, POLLIN, 0});
      // While the queue is full, connections wait in the kernel's backlog,
      // where another worker may take them.
      int rc = poll(fds.data(), fds.size(), full || pausedForFds_ ? 10 : -1);
      pausedForFds_ = false;
      if (rc < 0 && errno != EINTR) {
        MOLT_LOG(kError) << "acceptor poll: " << std::strerror(errno);
        return;
      }
      if (rc <= 0) continue;
      if (fds[0].revents) return;
      for (size_t i = 1; i < fds.size(); ++i) {
        if (!fds[i].revents) continue;
        if (!acceptFrom(fds[i].fd)) {
          active.erase(std::remove(active.begin(), active.end(), fds[i].fd), active.end());
          MOLT_LOG(kWarning) << "listener fd " << fds[i].fd << " stopped listening; no longer polled";
        }
      }
    }
  }

  // Returns false when the listener is dead (shut down by another holder).
  bool acceptFrom(int listener) {
    for (int i = 0; i < 32; ++i) {
      if (dispatcher_.queuedConnections() >= maxQueued_) return true;
      int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        switch (errno) {
          case EAGAIN: return true;
          case EINTR:
          case ECONNABORTED:
          case EPROTO: continue;
          case EMFILE:
          case ENFILE:
          case ENOBUFS:
          case ENOMEM:
            MOLT_LOG(kError) << "accept: " << std::strerror(errno) << "; pausing accepts";
            pausedForFds_ = true;
            return true;
          default:
            return false;  // EINVAL after shutdown(), EBADF
        }
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // fails harmlessly on Unix sockets
      drain_.connectionOpened();
      try {
        dispatcher_.enqueue(Poco::Net::StreamSocket(new Poco::Net::StreamSocketImpl(fd)));
      } catch (const Poco::Exception& e) {
        drain_.connectionClosed();
        MOLT_LOG(kError) << "cannot queue a connection: " << e.displayText();
      }
    }
    return true;
  }

  std::vector<int> listeners_;
  Poco::Net::TCPServerDispatcher& dispatcher_;
  DrainState& drain_;
  int maxQueued_;
  reload::Fd wake_;
  std::thread thread_;
  bool pausedForFds_ = false;
};

void dropPrivileges(const std::string& user) {
  if (user.empty() || geteuid() != 0) return;
  passwd* pw = getpwnam(user.c_str());
  if (!pw) throw std::runtime_error("no such user '" + user + "'");
  if (initgroups(pw->pw_name, pw->pw_gid) != 0) reload::throwSysError("initgroups " + user);
  if (setgid(pw->pw_gid) != 0) reload::throwSysError("setgid for " + user);
  if (setuid(pw->pw_uid) != 0) reload::throwSysError("setuid to " + user);
}

// Leaves without destructors: Poco's threads and the acceptor may still be
// running, and joining them could wait for a slow client.
[[noreturn]] void leave(int code) {
  reload::log::flush();
  _exit(code);
}

bool fileExists(const std::string& path) {
  struct stat st {};
  return !path.empty() && stat(path.c_str(), &st) == 0;
}

}  // namespace

int runObjectWorker(const reload::WorkerContext& ctx, const ObjectServerConfig& config,
                    const std::string& version) noexcept {
  try {
    const auto& master = ctx.config->master;
    reload::setProcessName("moltd-w" + std::to_string(ctx.generation) + "." +
                           std::to_string(ctx.slot));
    // If the master dies, drain and go rather than serve unsupervised.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != ctx.masterPid) leave(0);

    WorkerShared shared(config, ctx.generation);
    shared.clientTimeout = master.clientTimeout;
    shared.counters = ctx.counters;
    dropPrivileges(master.user);
    shared.readOnly = fileExists(config.storage.readOnlyFile);

    Poco::Net::HTTPServerParams::Ptr params = new Poco::Net::HTTPServerParams;
    params->setMaxThreads(master.threads);
    params->setMaxQueued(master.threads * 4);
    params->setKeepAlive(true);
    params->setKeepAliveTimeout(Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(master.keepaliveTimeout * 1e6)));
    params->setTimeout(Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(master.clientTimeout * 1e6)));
    params->setMaxKeepAliveRequests(0);
    params->setServerName("moltd");
    params->setSoftwareVersion("moltd/" + version);
    params->setThreadIdleTime(Poco::Timespan(60, 0));

    Poco::ThreadPool pool(2, master.threads + 2, 60);
    Poco::Net::HTTPRequestHandlerFactory::Ptr handlers = new ObjectHandlerFactory(shared);
    // The dispatcher is reference counted and its threads hold references;
    // the worker leaves with _exit, so it is never released.
    auto* dispatcher = new Poco::Net::TCPServerDispatcher(
        new CountedConnectionFactory(params, handlers, shared.drain), pool, params);
    Acceptor acceptor(ctx.listenerFds, *dispatcher, shared.drain, params->getMaxQueued());
    acceptor.start();

    if (!reload::signalWorkerReady(ctx)) leave(1);  // the master is gone
    MOLT_LOG(kInfo) << "worker slot " << ctx.slot << " serving on " << ctx.listenerFds.size()
                    << " listeners";

    sigset_t handled = reload::handledSignals();
    double nextVolumeScan = reload::monotonicSeconds() + config.storage.volumeScanInterval;
    double nextReadOnlyCheck = reload::monotonicSeconds() + config.storage.readOnlyCheckInterval;
    auto checkReadOnly = [&] {
      shared.readOnly = fileExists(config.storage.readOnlyFile);
    };
    for (;;) {
      timespec wait{0, 250 * 1000 * 1000};
      int sig = sigtimedwait(&handled, nullptr, &wait);
      double now = reload::monotonicSeconds();
      if (sig == SIGTERM) break;
      if (sig == SIGINT || sig == SIGQUIT) leave(0);
      // The master logs volume changes once; workers only act on them.
      if (sig == SIGUSR2) {
        checkReadOnly();
        shared.store.rescan();
      }
      if (config.storage.volumeScanInterval > 0 && now >= nextVolumeScan) {
        nextVolumeScan = now + config.storage.volumeScanInterval;
        shared.store.rescan();
      }
      if (config.storage.readOnlyCheckInterval > 0 && now >= nextReadOnlyCheck) {
        nextReadOnlyCheck = now + config.storage.readOnlyCheckInterval;
        checkReadOnly();
      }
      if (getppid() != ctx.masterPid) break;
    }

    // Drain: stop accepting, close our copies of the listeners (never
    // shutdown(): the new generation accepts on the same sockets), answer
    // everything still open with Connection: close.
    double drainStarted = reload::monotonicSeconds();
    acceptor.stop();
    for (int fd : ctx.listenerFds) close(fd);
    shared.drain.startDraining();
    int atStart = shared.drain.openConnections();
    MOLT_LOG(kInfo) << "draining: stopped accepting; " << atStart << " connections open";
    double deadline = drainStarted + master.gracefulTimeout;
    bool idle = false;
    for (;;) {
      idle = shared.drain.waitIdle(std::chrono::milliseconds(100));
      if (idle || reload::monotonicSeconds() >= deadline) break;
      timespec none{0, 0};
      int sig = sigtimedwait(&handled, nullptr, &none);
      if (sig == SIGINT || sig == SIGQUIT) break;
    }
    if (idle) {
      MOLT_LOG(kInfo) << "drained " << atStart << " connections in "
                      << (reload::monotonicSeconds() - drainStarted) << "s; exiting";
    } else {
      MOLT_LOG(kWarning) << "graceful_timeout " << master.gracefulTimeout << "s passed: cutting "
                         << shared.drain.openConnections() << " of " << atStart
                         << " connections still open";
    }
    leave(0);
  } catch (const std::exception& e) {
    MOLT_LOG(kCritical) << "worker failed: " << e.what();
    leave(1);
  }
}

}  // namespace server
