#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <string>

#include "reload/systemd.h"

using reload::systemd::watchdogUsec;

BOOST_AUTO_TEST_SUITE(SystemdWatchdogTest)

BOOST_AUTO_TEST_CASE(the_interval_is_ours_unless_another_pid_is_named) {
  const pid_t self = 4242;
  // WATCHDOG_PID unset or empty: the interval is for whoever reads it.
  BOOST_TEST(watchdogUsec("30000000", nullptr, self) == 30000000u);
  BOOST_TEST(watchdogUsec("30000000", "", self) == 30000000u);
  BOOST_TEST(watchdogUsec("30000000", "4242", self) == 30000000u);
  // Named for another process (the master's, seen by a child): none.
  for (const char* other : {"4243", "1", "0", "-4242", "4242x", " 4242", "99999999999"})
    BOOST_TEST(watchdogUsec("30000000", other, self) == 0u, other);
}

BOOST_AUTO_TEST_CASE(anything_but_a_count_of_microseconds_is_no_watchdog) {
  for (const char* usec : {"", "-1", "1.5", "30s", " 1", "0x10", "123456789012345678901"})
    BOOST_TEST(watchdogUsec(usec, nullptr, 1) == 0u, usec);
  BOOST_TEST(watchdogUsec(nullptr, nullptr, 1) == 0u);
  BOOST_TEST(watchdogUsec("0", nullptr, 1) == 0u);  // WatchdogSec=0: off
  BOOST_TEST(watchdogUsec("1", nullptr, 1) == 1u);
}

BOOST_AUTO_TEST_CASE(the_environment_is_read_and_left_in_place) {
  setenv("WATCHDOG_USEC", "2000000", 1);
  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  BOOST_TEST(watchdogUsec() == 2000000u);
  BOOST_TEST(getenv("WATCHDOG_USEC") != nullptr);  // the next image needs it
  setenv("WATCHDOG_PID", std::to_string(getpid() + 1).c_str(), 1);
  BOOST_TEST(watchdogUsec() == 0u);
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
  BOOST_TEST(watchdogUsec() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
