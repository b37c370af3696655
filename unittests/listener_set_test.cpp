#include <sys/eventfd.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <map>
#include <string>
#include <system_error>
#include <vector>

#include "reload/listener_set.h"

using reload::HeldListener;
using reload::ListenerSet;
using reload::WantedListener;

namespace {

// Hands out eventfds for "sockets" and remembers which address each is
// for; fails the bind of one chosen address.
class FakeBinder : public reload::ListenerBinder {
 public:
  reload::Fd bind(const reload::ListenAddress& address, bool refuseShared) override {
    ++binds;
    lastRefuseShared = refuseShared;
    if (address.toString() == failing)
      throw std::system_error(EADDRINUSE, std::generic_category(), "bind " + failing);
    reload::Fd fd(eventfd(0, EFD_CLOEXEC));
    BOOST_REQUIRE(fd);
    keys[fd.get()] = "tcp:" + address.toString();
    return fd;
  }
  std::string keyOf(int fd) override { return keys.count(fd) ? keys[fd] : ""; }
  int binds = 0;
  bool lastRefuseShared = false;
  std::string failing;
  std::map<int, std::string> keys;
};

WantedListener wanted(int port, const std::string& role = "public") {
  WantedListener w;
  w.address.host = "127.0.0.1";
  w.address.port = port;
  w.role = role;
  w.key = "tcp:" + w.address.toString();
  return w;
}

// A socket passed by the image before (an eventfd stands for it).
reload::Listener inheritedSocket(int port) {
  reload::Listener l;
  l.key = "tcp:127.0.0.1:" + std::to_string(port);
  l.role = "public";
  l.fd.reset(eventfd(0, EFD_CLOEXEC));
  return l;
}

std::vector<std::string> keysIn(const ListenerSet& set, HeldListener::State state) {
  std::vector<std::string> keys;
  for (const auto& h : set.held())
    if (h.state == state) keys.push_back(h.listener.key);
  return keys;
}

// Serving 1 and 2; a reload to 1 and 3 has begun.
struct Reloading {
  FakeBinder binder;
  ListenerSet set{binder};
  Reloading() {
    set.bindMissing({wanted(1), wanted(2)}, true);
    set.begin({wanted(1), wanted(3)});
  }
};

using Keys = std::vector<std::string>;
const auto kActive = HeldListener::State::kActive;
const auto kAdding = HeldListener::State::kAdding;
const auto kRemoving = HeldListener::State::kRemoving;

}  // namespace

BOOST_AUTO_TEST_SUITE(ListenerSetTest)

BOOST_AUTO_TEST_CASE(the_plan_keeps_removes_reuses_and_binds) {
  auto plan = reload::planListenerSet({"a", "b", "c"}, {"d"}, {"c", "d", "e", "a"});
  BOOST_TEST(plan.keep == (std::vector<size_t>{0, 2}));
  BOOST_TEST(plan.remove == (std::vector<size_t>{1}));
  BOOST_TEST(plan.reuse == (std::vector<size_t>{1}));
  BOOST_TEST(plan.bind == (std::vector<size_t>{2}));
}

BOOST_AUTO_TEST_CASE(an_address_wanted_twice_is_planned_once) {
  auto plan = reload::planListenerSet({}, {}, {"a", "a"});
  BOOST_TEST(plan.bind == (std::vector<size_t>{0}));
  plan = reload::planListenerSet({"a"}, {}, {"a", "a"});
  BOOST_TEST(plan.keep == (std::vector<size_t>{0}));
  BOOST_TEST(plan.bind.empty());
}

BOOST_AUTO_TEST_CASE(bind_missing_binds_only_what_is_not_held) {
  FakeBinder binder;
  ListenerSet set(binder);
  set.bindMissing({wanted(1), wanted(2, "admin")}, true);
  BOOST_TEST(binder.binds == 2);
  BOOST_TEST(binder.lastRefuseShared);
  set.bindMissing({wanted(1), wanted(2, "admin"), wanted(3)}, false);
  BOOST_TEST(binder.binds == 3);
  BOOST_TEST(!binder.lastRefuseShared);
  BOOST_TEST(keysIn(set, kActive) == (Keys{"tcp:127.0.0.1:1", "tcp:127.0.0.1:2", "tcp:127.0.0.1:3"}));
  BOOST_TEST(set.fds("admin", true).size() == 1u);
  BOOST_TEST(set.fds("public", false).size() == 2u);
}

BOOST_FIXTURE_TEST_CASE(begin_binds_what_is_added_and_marks_what_is_dropped, Reloading) {
  int kept = set.fds("public", false)[0];  // 1, held before and after
  BOOST_TEST(keysIn(set, kActive) == (Keys{"tcp:127.0.0.1:1"}));
  BOOST_TEST(keysIn(set, kRemoving) == (Keys{"tcp:127.0.0.1:2"}));
  BOOST_TEST(keysIn(set, kAdding) == (Keys{"tcp:127.0.0.1:3"}));
  // The serving generation keeps 1 and 2; the next one gets 1 and 3.
  auto serving = set.fds("public", false);
  auto next = set.fds("public", true);
  BOOST_TEST(serving.size() == 2u);
  BOOST_TEST(next.size() == 2u);
  BOOST_TEST(serving[0] == kept);
  BOOST_TEST(next[0] == kept);
  BOOST_TEST(serving[1] != next[1]);
}

BOOST_FIXTURE_TEST_CASE(commit_closes_what_was_dropped_and_keeps_what_was_added, Reloading) {
  set.commit();
  BOOST_TEST(keysIn(set, kActive) == (Keys{"tcp:127.0.0.1:1", "tcp:127.0.0.1:3"}));
  BOOST_TEST(keysIn(set, kRemoving).empty());
  BOOST_TEST(keysIn(set, kAdding).empty());
  BOOST_TEST(set.spares() == 0u);
}

BOOST_FIXTURE_TEST_CASE(rollback_keeps_added_sockets_as_spares_for_the_next_reload, Reloading) {
  set.rollback();
  BOOST_TEST(keysIn(set, kActive) == (Keys{"tcp:127.0.0.1:1", "tcp:127.0.0.1:2"}));
  BOOST_TEST(set.spares() == 1u);
  // The failed generation's workers may still hold 3: the next reload
  // takes the same socket instead of binding the address again.
  int binds = binder.binds;
  set.begin({wanted(1), wanted(3)});
  BOOST_TEST(binder.binds == binds);
  BOOST_TEST(set.spares() == 0u);
  BOOST_TEST(keysIn(set, kAdding) == (Keys{"tcp:127.0.0.1:3"}));
}

BOOST_AUTO_TEST_CASE(a_begin_that_cannot_bind_leaves_the_set_as_it_was) {
  FakeBinder binder;
  ListenerSet set(binder);
  set.bindMissing({wanted(1), wanted(2)}, true);
  binder.failing = "127.0.0.1:4";
  BOOST_CHECK_THROW(set.begin({wanted(3), wanted(4)}), std::system_error);
  BOOST_TEST(keysIn(set, kActive) == (Keys{"tcp:127.0.0.1:1", "tcp:127.0.0.1:2"}));
  BOOST_TEST(set.held().size() == 2u);  // 3, bound before 4 failed, is closed again
  BOOST_TEST(set.spares() == 0u);
}

BOOST_AUTO_TEST_CASE(going_back_to_a_configuration_closes_what_only_the_other_had) {
  FakeBinder binder;
  ListenerSet set(binder);
  set.bindMissing({wanted(1), wanted(2), wanted(3, "admin")}, true);
  set.keepOnly({"tcp:127.0.0.1:1", "tcp:127.0.0.1:3"});
  BOOST_TEST(keysIn(set, kRemoving) == (Keys{"tcp:127.0.0.1:2"}));
  BOOST_TEST(set.fds("public", true).size() == 1u);  // no longer offered while it waits
  set.closeRemoving("only the failed configuration had it");
  BOOST_TEST(keysIn(set, kActive) == (Keys{"tcp:127.0.0.1:1", "tcp:127.0.0.1:3"}));
  BOOST_TEST(set.holds("tcp:127.0.0.1:3"));
  BOOST_TEST(!set.holds("tcp:127.0.0.1:2"));
}

BOOST_AUTO_TEST_CASE(an_inherited_socket_the_new_configuration_drops_waits_for_the_outcome) {
  FakeBinder binder;
  ListenerSet set(binder);
  set.adopt(inheritedSocket(9), kRemoving);
  set.bindMissing({wanted(1)}, true);
  BOOST_TEST(set.fds("public", true).size() == 1u);   // not for the new generation
  BOOST_TEST(set.fds("public", false).size() == 2u);  // the old one still serves it
  // The new image hands back: the old configuration has it again.
  set.keepOnly({"tcp:127.0.0.1:9"});
  set.closeRemoving("only the failed configuration had it");
  BOOST_TEST(keysIn(set, kActive) == (Keys{"tcp:127.0.0.1:9"}));
}

BOOST_AUTO_TEST_CASE(adopted_sockets_count_as_held) {
  FakeBinder binder;
  ListenerSet set(binder);
  set.adopt(inheritedSocket(1));
  set.bindMissing({wanted(1), wanted(2)}, true);
  BOOST_TEST(binder.binds == 1);
  set.clear();
  BOOST_TEST(set.held().empty());
}

// Every combination of role, origin and exec: a socket-activated socket
// keeps that origin across every exec of the master, and only paths this
// server bound are ever removed.
BOOST_AUTO_TEST_CASE(SocketActivatedPathsAreNeverOurs) {
  for (const char* role : {"public", "admin"}) {
    for (bool owns : {true, false}) {
      reload::Listener l;
      l.role = role;
      l.ownsPath = owns;
      std::string name = reload::handoffFdName(l);
      BOOST_TEST(reload::roleOfHandoffFdName(name) == role);
      BOOST_TEST(reload::fromSocketActivation(name, true) == !owns, name);
      BOOST_TEST(reload::fromSocketActivation(name, false));  // a first start: systemd's
    }
  }
  // Names systemd gives (FileDescriptorName=, the unit's name) on a first start.
  for (const char* name : {"moltd.socket", "", "admin", "public", "x.activated"})
    BOOST_TEST(reload::fromSocketActivation(name, false));
  BOOST_TEST(reload::roleOfHandoffFdName("moltd.socket") == "public");
  BOOST_TEST(reload::roleOfHandoffFdName(".activated") == "public");

  std::vector<HeldListener> held;
  auto add = [&](const std::string& address, bool owns) {
    HeldListener h;
    h.listener.address = reload::ListenAddress::parse(address);
    h.listener.ownsPath = owns;
    held.push_back(std::move(h));
  };
  add("unix:/run/molt/own.sock", true);
  add("unix:/run/molt/activated.sock", false);
  add("127.0.0.1:8080", true);
  HeldListener abstract;  // as an inherited socket's key gives it
  abstract.listener.address.kind = reload::ListenAddress::Kind::kUnix;
  abstract.listener.address.path = "@abstract";
  held.push_back(std::move(abstract));
  BOOST_TEST(reload::ownedUnixPaths(held) == std::vector<std::string>{"/run/molt/own.sock"});
}

BOOST_AUTO_TEST_CASE(RebindLossIsReportedUnlessTheKernelMigratesQueues) {
  char path[] = "/tmp/migrate-req-XXXXXX";
  int fd = mkstemp(path);
  BOOST_REQUIRE(fd >= 0);
  auto holding = [&](const std::string& text) {
    BOOST_REQUIRE(ftruncate(fd, 0) == 0);
    BOOST_REQUIRE(pwrite(fd, text.data(), text.size(), 0) == static_cast<ssize_t>(text.size()));
    return reload::rebindQueueLoss(path);
  };
  BOOST_TEST(holding("1\n") == "");
  BOOST_TEST(holding("0\n").find("net.ipv4.tcp_migrate_req is 0") != std::string::npos);
  BOOST_TEST(holding("").find("this kernel has no") != std::string::npos);
  close(fd);
  unlink(path);
  BOOST_TEST(reload::rebindQueueLoss(path).find("this kernel has no") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
