#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <vector>

#include "reload/event_loop.h"
#include "reload/master.h"
#include "reload/signals.h"
#include "reload/worker_signals.h"

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

}  // namespace

BOOST_AUTO_TEST_SUITE(WorkerSignalsTest)

BOOST_AUTO_TEST_CASE(only_the_master_moves_a_worker_between_standby_and_serving) {
  BlockedSignals blocked;
  reload::EventLoop loop;
  // This process's parent is the master: the signals it sends itself come
  // from someone else.
  reload::WorkerSignals signals(loop, getppid());
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

BOOST_AUTO_TEST_CASE(the_masters_signals_are_orders_and_its_death_a_drain_ordered_once) {
  BlockedSignals blocked;
  reload::EventLoop loop;
  // This process as its own master: its signals are the master's, and its
  // parent is not this "master", as for a worker whose master died.
  reload::WorkerSignals signals(loop, getpid());
  auto orders = ordersAfter(loop, signals, {SIGUSR1});
  BOOST_CHECK((orders == std::vector<WorkerOrder>{WorkerOrder::kStandBy, WorkerOrder::kDrain}));
  orders = ordersAfter(loop, signals, {SIGHUP});
  BOOST_CHECK(orders == std::vector<WorkerOrder>{WorkerOrder::kTakeOver});
  BOOST_CHECK(signals.take().empty());
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
