#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sys/epoll.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <boost/test/unit_test.hpp>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "reload/event_loop.h"
#include "reload/master.h"
#include "reload/shared_counters.h"
#include "reload/signals.h"
#include "reload/worker_signals.h"
#include "loopback_listener.h"

using reload::WorkerOrder;

namespace {

// Blocks the handled signals for one test and restores the mask after.
struct BlockedSignals {
  BlockedSignals() {
    pthread_sigmask(SIG_SETMASK, nullptr, &saved);
    reload::blockHandledSignals();
  }
  ~BlockedSignals() { pthread_sigmask(SIG_SETMASK, &saved, nullptr); }
  sigset_t saved;
};

std::vector<WorkerOrder> ordersAfter(reload::EventLoop& loop, reload::WorkerSignals& signals,
                                     const std::vector<int>& sent) {
  for (int sig : sent) BOOST_REQUIRE_EQUAL(kill(getpid(), sig), 0);
  loop.runOnce(0);
  return signals.take();
}

// A worker in a child process, this process its master, as after the
// master's fork: the handled signals blocked from the start, the shared
// counters mapped. Each turn() runs one turn of its loop and one take().
class ChildWorker {
 public:
  static constexpr uint64_t kGeneration = 7;

  explicit ChildWorker(reload::SharedCounters& counters) {
    int toChild[2], fromChild[2];
    BOOST_REQUIRE_EQUAL(pipe(toChild), 0);
    BOOST_REQUIRE_EQUAL(pipe(fromChild), 0);
    pid_ = fork();
    BOOST_REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      close(toChild[1]);
      close(fromChild[0]);
      _exit(run(counters, toChild[0], fromChild[1]));
    }
    close(toChild[0]);
    close(fromChild[1]);
    commands_ = toChild[1];
    answers_ = fromChild[0];
  }
  ~ChildWorker() {
    close(commands_);  // the child exits on end of file
    close(answers_);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  pid_t pid() const { return pid_; }

  // The orders one take() gave after everything sent so far, as letters.
  std::string turn() {
    BOOST_REQUIRE_EQUAL(write(commands_, "t", 1), 1);
    std::string orders;
    for (char c; read(answers_, &c, 1) == 1 && c != '.';) orders += c;
    return orders;
  }

 private:
  static int run(reload::SharedCounters& counters, int commands, int answers) {
    try {
      reload::EventLoop loop;
      reload::WorkerContext context;
      context.generation = kGeneration;
      context.masterPid = getppid();
      context.counters = &counters;
      reload::WorkerSignals signals(loop, context);
      for (char c; read(commands, &c, 1) == 1;) {
        loop.runOnce(0);
        std::string orders;
        for (WorkerOrder order : signals.take())
          orders += "DSTQR"[static_cast<int>(order)];
        orders += '.';
        if (write(answers, orders.data(), orders.size()) != static_cast<ssize_t>(orders.size())) return 2;
      }
      return 0;
    } catch (...) {
      return 3;
    }
  }

  pid_t pid_ = -1;
  int commands_ = -1, answers_ = -1;
};

// What the master does (generation_supervisor.cpp): the word first, then
// the signal.
void masterStandsBy(reload::SharedCounters& counters, pid_t worker, uint64_t generation) {
  counters[reload::kStandbyGeneration].store(generation, std::memory_order_release);
  BOOST_REQUIRE_EQUAL(kill(worker, SIGUSR1), 0);
}
void masterTakesOver(reload::SharedCounters& counters, pid_t worker) {
  counters[reload::kStandbyGeneration].store(0, std::memory_order_release);
  BOOST_REQUIRE_EQUAL(kill(worker, SIGHUP), 0);
}

// Applies a turn's orders to whether the worker stands by, as a worker does.
bool standsByAfter(bool standingBy, const std::string& orders) {
  for (char order : orders) {
    if (order == 'S') standingBy = true;
    if (order == 'T') standingBy = false;
  }
  return standingBy;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(WorkerSignalsTest)

BOOST_AUTO_TEST_CASE(only_the_master_moves_a_worker_between_standby_and_serving) {
  BlockedSignals blocked;
  reload::EventLoop loop;
  // This process's parent is the master: the signals it sends itself come
  // from someone else.
  reload::SharedCounters counters;
  reload::WorkerContext context;
  context.generation = 3;
  context.masterPid = getppid();
  context.counters = &counters;
  // The word names this generation: only a wake-up from the master is missing.
  counters[reload::kStandbyGeneration].store(3);
  reload::WorkerSignals signals(loop, context);
  BOOST_CHECK(signals.take().empty());
  auto orders = ordersAfter(loop, signals, {SIGUSR1, SIGHUP});
  BOOST_CHECK(orders.empty());
  orders = ordersAfter(loop, signals, {SIGUSR2});
  BOOST_CHECK(orders == std::vector<WorkerOrder>{WorkerOrder::kRecheck});
  bool asked = false;
  signals.onDrainAsked = [&] { asked = true; };
  orders = ordersAfter(loop, signals, {SIGTERM});
  BOOST_CHECK(asked);
  BOOST_CHECK(orders == std::vector<WorkerOrder>{WorkerOrder::kDrain});
  orders = ordersAfter(loop, signals, {SIGQUIT});
  BOOST_CHECK(orders == std::vector<WorkerOrder>{WorkerOrder::kQuit});
  orders = ordersAfter(loop, signals, {SIGINT});
  BOOST_CHECK(orders == std::vector<WorkerOrder>{WorkerOrder::kQuit});
}

BOOST_AUTO_TEST_CASE(a_worker_whose_master_died_drains_once_and_never_stands_by_or_serves_again) {
  BlockedSignals blocked;
  reload::EventLoop loop;
  reload::SharedCounters counters;
  reload::WorkerContext context;
  context.generation = 3;
  // This process as its own master: its signals are the master's, and its
  // parent is not this "master", as for a worker whose master died.
  context.masterPid = getpid();
  context.counters = &counters;
  reload::WorkerSignals signals(loop, context);
  counters[reload::kStandbyGeneration].store(3);
  auto orders = ordersAfter(loop, signals, {SIGUSR1});
  BOOST_CHECK(orders == std::vector<WorkerOrder>{WorkerOrder::kDrain});
  counters[reload::kStandbyGeneration].store(0);
  orders = ordersAfter(loop, signals, {SIGHUP});
  BOOST_CHECK(orders.empty());
  BOOST_CHECK(signals.take().empty());
}

BOOST_AUTO_TEST_CASE(the_loop_stamps_the_heartbeat_while_it_turns_and_only_then) {
  BlockedSignals blocked;
  reload::EventLoop loop;
  reload::SharedCounters counters;
  std::atomic<int64_t> heartbeat{0};
  reload::WorkerContext context;
  context.generation = 3;
  context.masterPid = getppid();
  context.counters = &counters;
  context.heartbeat = &heartbeat;
  const int64_t before = reload::monotonicMs();
  reload::WorkerSignals signals(loop, context);
  const int64_t first = heartbeat.load();
  BOOST_TEST(first >= before);  // stamped as it is made
  // Not turned: no new stamp, however long it waits.
  usleep((reload::WorkerSignals::kHeartbeatIntervalMs + 50) * 1000);
  BOOST_TEST(heartbeat.load() == first);
  // Turned: the heartbeat's timer (the only one) wakes the loop and stamps.
  const int64_t deadline = reload::monotonicMs() + 5000;
  while (heartbeat.load() == first && reload::monotonicMs() < deadline) loop.runOnce(-1);
  BOOST_TEST(heartbeat.load() > first);
  BOOST_TEST(heartbeat.load() - first >= reload::WorkerSignals::kHeartbeatIntervalMs);
}

// A drained worker's copy goes; the socket, which the next generation
// accepts on, stays whole: a connection queued before the close and one
// made after are both accepted on another copy (shutdown() would have reset
// the first and refused the second).
BOOST_AUTO_TEST_CASE(closing_a_listener_copy_leaves_the_socket_to_the_others) {
  reload::EventLoop loop;
  int port = 0;
  reload::Fd listener = listenOnLoopback(&port);
  int copy = dup(listener.get());
  BOOST_REQUIRE(copy >= 0);
  reload::FunctionHandler ignore([](uint32_t) {});
  loop.add(copy, EPOLLIN, &ignore);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  auto connectOne = [&] {
    reload::Fd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    BOOST_REQUIRE(client);
    BOOST_REQUIRE(connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    return client;
  };
  reload::Fd queued = connectOne();
  BOOST_TEST(reload::closeListenerCopy(loop, copy) == 0);
  BOOST_TEST(copy == -1);
  BOOST_TEST(loop.watchedDescriptors() == 0u);
  BOOST_TEST(reload::closeListenerCopy(loop, copy) == 0);  // nothing left to close
  reload::Fd later = connectOne();
  for (int i = 0; i < 2; ++i) {
    reload::Fd accepted(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    BOOST_TEST(accepted.valid(), "accept " << i << ": " << std::strerror(errno));
  }
}

BOOST_AUTO_TEST_CASE(a_worker_without_shared_counters_is_refused) {
  BlockedSignals blocked;
  reload::EventLoop loop;
  reload::WorkerContext context;
  context.masterPid = getppid();
  BOOST_CHECK_THROW((void)reload::WorkerSignals(loop, context), std::invalid_argument);
}

// The rule: after any run of the master's stand-by and take-over orders
// that a worker has not read yet, one take() leaves it in the state of the
// last of them, whatever it was in before, and orders at most one change.
// signalfd reads pending SIGHUP (1) before SIGUSR1 (10), whichever came
// last, so the signals alone could not say it.
BOOST_AUTO_TEST_CASE(unread_stand_by_and_take_over_orders_end_in_the_last_one_in_any_order) {
  BlockedSignals blocked;
  reload::SharedCounters counters;
  ChildWorker worker(counters);
  const uint64_t generation = ChildWorker::kGeneration;
  bool standingBy = false;
  BOOST_REQUIRE_EQUAL(worker.turn(), "");
  for (int length = 1; length <= 3; ++length) {
    for (int pattern = 0; pattern < (1 << length); ++pattern) {
      for (bool before : {false, true}) {
        // Into the state the run starts from.
        if (before) masterStandsBy(counters, worker.pid(), generation);
        else masterTakesOver(counters, worker.pid());
        standingBy = standsByAfter(standingBy, worker.turn());
        BOOST_REQUIRE_EQUAL(standingBy, before);
        std::string run;
        for (int i = 0; i < length; ++i) {
          bool standBy = (pattern >> i) & 1;
          run += standBy ? "stand-by " : "take-over ";
          if (standBy) masterStandsBy(counters, worker.pid(), generation);
          else masterTakesOver(counters, worker.pid());
        }
        bool last = (pattern >> (length - 1)) & 1;
        std::string orders = worker.turn();
        BOOST_TEST_CONTEXT("from " << (before ? "standing by" : "serving") << ": " << run << "-> "
                                   << orders) {
          BOOST_CHECK_LE(orders.size(), 1u);
          standingBy = standsByAfter(standingBy, orders);
          BOOST_CHECK_EQUAL(standingBy, last);
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(a_stand_by_then_a_take_over_both_unread_end_serving) {
  BlockedSignals blocked;
  reload::SharedCounters counters;
  ChildWorker worker(counters);
  // The last good generation (7) stands by for generation 8's probation,
  // which fails at once: SIGUSR1 then SIGHUP, neither read yet.
  masterStandsBy(counters, worker.pid(), ChildWorker::kGeneration);
  masterTakesOver(counters, worker.pid());
  BOOST_CHECK(!standsByAfter(false, worker.turn()));
  // And the reverse: it was rolled back to, then stands by again for the
  // next probation (generation 9) before it read the take-over.
  masterStandsBy(counters, worker.pid(), ChildWorker::kGeneration);
  BOOST_REQUIRE_EQUAL(worker.turn(), "S");
  masterTakesOver(counters, worker.pid());
  masterStandsBy(counters, worker.pid(), ChildWorker::kGeneration);
  BOOST_CHECK(standsByAfter(true, worker.turn()));
  // A new probation in which another generation stands by does not move it.
  masterTakesOver(counters, worker.pid());
  BOOST_REQUIRE_EQUAL(worker.turn(), "T");
  masterStandsBy(counters, worker.pid(), ChildWorker::kGeneration + 2);
  BOOST_CHECK_EQUAL(worker.turn(), "");
}

BOOST_AUTO_TEST_CASE(a_drained_worker_never_stands_by_or_takes_over_again) {
  BlockedSignals blocked;
  reload::SharedCounters counters;
  ChildWorker worker(counters);
  masterStandsBy(counters, worker.pid(), ChildWorker::kGeneration);
  BOOST_REQUIRE_EQUAL(worker.turn(), "S");
  // Its generation is replaced: it drains, and a late take-over (the word
  // no longer names it) must not make it accept again.
  BOOST_REQUIRE_EQUAL(kill(worker.pid(), SIGTERM), 0);
  masterTakesOver(counters, worker.pid());
  BOOST_CHECK_EQUAL(worker.turn(), "D");
  masterStandsBy(counters, worker.pid(), ChildWorker::kGeneration);
  masterTakesOver(counters, worker.pid());
  BOOST_CHECK_EQUAL(worker.turn(), "");
}

// rt_sigqueueinfo() lets any sender put the master's pid in si_pid when
// si_code is negative (SI_QUEUE): such a signal is not the master's.
BOOST_AUTO_TEST_CASE(a_signal_queued_with_the_masters_pid_forged_is_ignored) {
  BlockedSignals blocked;
  reload::SharedCounters counters;
  ChildWorker worker(counters);
  counters[reload::kStandbyGeneration].store(ChildWorker::kGeneration, std::memory_order_release);
  const pid_t master = getpid();
  pid_t forger = fork();
  BOOST_REQUIRE(forger >= 0);
  if (forger == 0) {
    for (int signo : {SIGUSR1, SIGHUP}) {
      siginfo_t info;
      std::memset(&info, 0, sizeof info);
      info.si_signo = signo;
      info.si_code = SI_QUEUE;
      info.si_pid = master;  // not this process
      info.si_uid = getuid();
      if (syscall(SYS_rt_sigqueueinfo, worker.pid(), signo, &info) != 0) _exit(errno);
    }
    _exit(0);
  }
  int status = -1;
  BOOST_REQUIRE_EQUAL(waitpid(forger, &status, 0), forger);
  BOOST_REQUIRE_MESSAGE(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                        "rt_sigqueueinfo: " << std::strerror(WEXITSTATUS(status)));
  BOOST_CHECK_EQUAL(worker.turn(), "");
  // The master's own kill() still counts.
  BOOST_REQUIRE_EQUAL(kill(worker.pid(), SIGUSR1), 0);
  BOOST_CHECK_EQUAL(worker.turn(), "S");
}

BOOST_AUTO_TEST_CASE(a_worker_whose_master_is_not_its_parent_is_told_to_go) {
  reload::WorkerContext context;
  context.masterPid = getppid();
  BOOST_CHECK(reload::watchMaster(context));
  context.masterPid = getpid();
  BOOST_CHECK(!reload::watchMaster(context));
  BOOST_REQUIRE_EQUAL(prctl(PR_SET_PDEATHSIG, 0), 0);
}

BOOST_AUTO_TEST_SUITE_END()
