#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdio>
#include <string>

#include "reload/handoff.h"

using reload::HandoffEnv;

namespace {

HandoffEnv sample() {
  HandoffEnv env;
  env.notifyFd = 7;
  env.stateFd = 8;
  env.countersFd = 9;
  env.syncPid = 4242;
  env.lastGeneration = 17;
  env.servingGeneration = 16;
  env.pending = "usr1";
  env.counters = {5, 2, 1, 3};
  env.children = {{100, 16, 0, false, 0, std::nullopt, 0, 0}, {101, 15, 1, true, 99000000, std::nullopt, 0, 0}};
  env.previousConfig = std::string("[server]\nbind = x\n\0binary", 26);
  return env;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(HandoffTrustTest)

BOOST_AUTO_TEST_CASE(text_round_trip) {
  auto back = reload::decodeHandoffText(reload::encodeHandoffText(sample()));
  BOOST_TEST(back.notifyFd == 7);
  BOOST_TEST(back.syncPid == 4242);
  BOOST_TEST(back.pending == "usr1");
  BOOST_TEST(back.counters.drainKills == 3u);
  BOOST_TEST(back.children.size() == 2u);
  BOOST_TEST(back.children[1].killAtUs == 99000000);
  BOOST_TEST(back.previousConfig == sample().previousConfig);
}

// The workers' notify socket rides along as an optional key: absent it is
// -1 (an older image), present it is a passed descriptor distinct from the
// others.
BOOST_AUTO_TEST_CASE(worker_notify_fd_round_trip_and_bounds) {
  BOOST_TEST(reload::decodeHandoffText(reload::encodeHandoffText(sample())).workerNotifyFd == -1);
  HandoffEnv env = sample();
  env.workerNotifyFd = 11;
  BOOST_TEST(reload::decodeHandoffText(reload::encodeHandoffText(env)).workerNotifyFd == 11);
  env.workerNotifyFd = 9;  // the counters' descriptor
  BOOST_CHECK_THROW(reload::validateHandoff(env), std::invalid_argument);
  env.workerNotifyFd = 2;
  BOOST_CHECK_THROW(reload::validateHandoff(env), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(unknown_optional_keys_are_ignored_missing_required_ones_are_not) {
  std::string text = reload::encodeHandoffText(sample()) + "from_a_newer_image=42\n";
  BOOST_TEST(reload::decodeHandoffText(text).lastGeneration == 17u);
  std::string noSync = text;
  noSync.erase(noSync.find("sync_pid="), noSync.find('\n', noSync.find("sync_pid=")) -
                                             noSync.find("sync_pid=") + 1);
  BOOST_CHECK_THROW(reload::decodeHandoffText(noSync), std::invalid_argument);
  BOOST_CHECK_THROW(reload::decodeHandoffText("MOLT-HANDOFF 3\n"), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(pids_fds_and_counts_are_checked) {
  for (pid_t bad : {-1, 0, 1}) {
    auto env = sample();
    env.children[0].pid = bad;
    BOOST_CHECK_THROW(reload::validateHandoff(env), std::invalid_argument);
    env = sample();
    env.syncPid = bad;
    BOOST_CHECK_THROW(reload::validateHandoff(env), std::invalid_argument);
  }
  for (int fd : {-1, 0, 1, 2}) {
    auto env = sample();
    env.notifyFd = fd;
    BOOST_CHECK_THROW(reload::validateHandoff(env), std::invalid_argument);
  }
  auto env = sample();
  env.stateFd = env.notifyFd;
  BOOST_CHECK_THROW(reload::validateHandoff(env), std::invalid_argument);
  env = sample();
  env.children.assign(reload::kMaxHandoffChildren + 1, {100, 16, 0, false, 0, std::nullopt, 0, 0});
  BOOST_CHECK_THROW(reload::validateHandoff(env), std::invalid_argument);
  env = sample();
  env.children[0].generation = 18;  // newer than any generation started
  BOOST_CHECK_THROW(reload::validateHandoff(env), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(version_one_environment_refuses_forged_pids) {
  auto get = [](const char* name) -> const char* {
    std::string n = name;
    if (n == "MOLT_HANDOFF") return "1";
    if (n == "MOLT_NOTIFY_FD") return "7";
    if (n == "MOLT_STATE_FD") return "8";
    if (n == "MOLT_COUNTERS_FD") return "9";
    if (n == "MOLT_SYNC_PID") return "4242";
    if (n == "MOLT_GENERATION" || n == "MOLT_SERVING_GENERATION") return "1";
    if (n == "MOLT_PENDING") return "";
    if (n == "MOLT_COUNTERS") return "0:0:0:0";
    if (n == "MOLT_CHILDREN") return "-1:1:0:d:1";
    return "0";
  };
  BOOST_CHECK_THROW(reload::readHandoff(get), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(memfd_round_trip_and_only_a_sealed_handoff_memfd_is_read) {
  std::string text = reload::encodeHandoffText(sample());
  int fd = reload::writeHandoffMemfd(text);
  int high = fcntl(fd, F_DUPFD_CLOEXEC, 100);
  close(fd);
  BOOST_TEST(reload::readHandoffMemfd(high) == text);
  BOOST_TEST(fcntl(high, F_GETFD) == -1);  // closed once read

  int unsealed = memfd_create("moltd-handoff", MFD_CLOEXEC);
  BOOST_TEST(write(unsealed, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  BOOST_CHECK_THROW(reload::readHandoffMemfd(unsealed), std::invalid_argument);

  char name[] = "/tmp/molt-unit-XXXXXX";
  int file = mkstemp(name);
  std::remove(name);
  BOOST_CHECK_THROW(reload::readHandoffMemfd(file), std::invalid_argument);
  BOOST_CHECK_THROW(reload::readHandoffMemfd(2), std::invalid_argument);
}

BOOST_AUTO_TEST_SUITE_END()
