#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cstring>
#include <dirent.h>
#include <map>
#include <string>
#include <vector>

#include "launch.h"
#include "notify_socket.h"
#include "reload/fd.h"

namespace {

std::map<std::string, std::string> asMap(const std::vector<std::string>& environment) {
  std::map<std::string, std::string> out;
  for (const auto& entry : environment) {
    size_t eq = entry.find('=');
    BOOST_REQUIRE(eq != std::string::npos);
    BOOST_TEST(out.count(entry.substr(0, eq)) == 0u);  // each name once
    out[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  return out;
}

// Runs `check` in a forked child; its exit code is the result.
int inChild(const std::function<int()>& check) {
  pid_t pid = fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 99;
    try {
      code = check();
    } catch (...) {
      code = 98;
    }
    _exit(code);
  }
  int status = 0;
  BOOST_REQUIRE(waitpid(pid, &status, 0) == pid);
  BOOST_REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

ino_t inodeOf(int fd) {
  struct stat st {};
  return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(LaunchTest)

BOOST_AUTO_TEST_CASE(EnvironmentIsInheritedListThenConfiguredThenListeners) {
  run::ProgramConfig config;
  config.inheritEnvironment = {"PATH", "LANG", "ABSENT"};
  config.environment = {{"LANG", "C.UTF-8"}, {"APP", "x=y z"}};
  std::map<std::string, std::string> parent = {{"PATH", "/usr/bin"}, {"LANG", "de_DE"},
                                               {"SECRET", "s"}, {"LISTEN_FDS", "9"}};
  auto lookup = [&parent](const char* name) -> const char* {
    auto it = parent.find(name);
    return it == parent.end() ? nullptr : it->second.c_str();
  };
  auto env = asMap(run::programEnvironment(config, lookup, {"web", "dns", "bad:name"}, "@molt-run/1", 7, 2));
  std::map<std::string, std::string> expected = {
      {"PATH", "/usr/bin"}, {"LANG", "C.UTF-8"}, {"APP", "x=y z"}, {"LISTEN_FDS", "3"},
      {"LISTEN_FDNAMES", "web:dns:unknown"}, {"NOTIFY_SOCKET", "@molt-run/1"},
      {"MOLT_RUN_GENERATION", "7"}, {"MOLT_RUN_SLOT", "2"}};
  BOOST_TEST(env == expected);

  auto quiet = asMap(run::programEnvironment(config, lookup, {}, "", 1, 0));
  BOOST_TEST(quiet.count("NOTIFY_SOCKET") == 0u);
  BOOST_TEST(quiet.count("LISTEN_PID") == 0u);
  BOOST_TEST(quiet["LISTEN_FDS"] == "0");
  BOOST_TEST(quiet["LISTEN_FDNAMES"] == "");
}

BOOST_AUTO_TEST_CASE(EveryByteInAFdName) {
  for (int c = 0; c < 256; ++c) {
    std::string name = "a" + std::string(1, static_cast<char>(c)) + "b";
    bool fine = c > ' ' && c < 127 && c != ':';
    BOOST_TEST_CONTEXT(c) { BOOST_TEST(run::fdName(name) == (fine ? name : "unknown")); }
  }
  BOOST_TEST(run::fdName("") == "unknown");
  BOOST_TEST(run::fdName(std::string(255, 'x')) == std::string(255, 'x'));
  BOOST_TEST(run::fdName(std::string(256, 'x')) == "unknown");
}

// Sockets placed anywhere, in any order, including over the target range
// itself: each lands at 3 + its index, blocking, inheritable; nothing else
// stays open; stdin reads /dev/null.
BOOST_AUTO_TEST_CASE(DescriptorsLandAtThreeOnwardsInEveryOrder) {
  for (bool sparse : {false, true})
  for (int count = 0; count <= 4; ++count) {
    std::vector<int> order(static_cast<size_t>(count));
    for (int i = 0; i < count; ++i) order[static_cast<size_t>(i)] = i;
    do {
      int code = inChild([&]() -> int {
        // Occupy 3..: some sockets, then unrelated descriptors between them.
        std::vector<int> sockets;
        for (int i = 0; i < count; ++i) {
          sockets.push_back(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
          if (sockets.back() < 0) return 90;
          if (open("/dev/zero", O_RDONLY | (i % 2 ? O_CLOEXEC : 0)) < 0) return 91;
        }
        if (sparse) {
          // Every socket moved high, the target range left empty: whatever
          // the layout opens on its way lands there.
          for (int i = 0; i < count; ++i) {
            int& fd = sockets[static_cast<size_t>(i)];
            int moved = fcntl(fd, F_DUPFD_CLOEXEC, 40 + i);
            if (moved < 0) return 94;
            close(fd);
            fd = moved;
          }
          for (int fd = 3; fd < 40; ++fd) close(fd);
        }
        std::vector<int> sources;
        std::vector<ino_t> inodes;
        for (int index : order) {
          sources.push_back(sockets[static_cast<size_t>(index)]);
          inodes.push_back(inodeOf(sockets[static_cast<size_t>(index)]));
        }
        run::prepareDescriptors(sources);
        for (int i = 0; i < count; ++i) {
          int fd = 3 + i;
          if (inodeOf(fd) != inodes[static_cast<size_t>(i)]) return 10 + i;
          if (fcntl(fd, F_GETFD) != 0) return 20 + i;
          if (fcntl(fd, F_GETFL) & O_NONBLOCK) return 30 + i;
        }
        DIR* dir = opendir("/proc/self/fd");
        if (dir == nullptr) return 92;
        int extra = 0;
        while (dirent* e = readdir(dir)) {
          if (e->d_name[0] == '.') continue;
          int fd = std::atoi(e->d_name);
          if (fd >= 3 + count && fd != dirfd(dir)) ++extra;
        }
        closedir(dir);
        if (extra) return 40;
        char byte = 0;
        if (read(STDIN_FILENO, &byte, 1) != 0) return 41;
        return 0;
      });
      BOOST_TEST_CONTEXT("count " << count << (sparse ? ", sparse" : ", packed")) { BOOST_TEST(code == 0); }
    } while (std::next_permutation(order.begin(), order.end()));
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(NotifyTest)

BOOST_AUTO_TEST_CASE(MessageFields) {
  auto f = run::parseNotifyMessage("READY=1\nSTATUS=serving 3 = ok\nnonsense\n=x\nMAINPID=42");
  std::map<std::string, std::string> expected = {{"READY", "1"}, {"STATUS", "serving 3 = ok"}, {"MAINPID", "42"}};
  BOOST_TEST(f == expected);
}

BOOST_AUTO_TEST_CASE(DatagramsCarryTheSendersPid) {
  run::NotifySocket notify("unit-test/" + std::to_string(getpid()));
  BOOST_TEST(notify.address().rfind("@molt-run/", 0) == 0u);
  BOOST_TEST(!notify.receive().has_value());
  reload::Fd sender(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string name = notify.address().substr(1);
  std::memcpy(addr.sun_path + 1, name.data(), name.size());
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  std::string message = "READY=1\nSTATUS=up";
  BOOST_REQUIRE(sendto(sender.get(), message.data(), message.size(), 0,
                       reinterpret_cast<sockaddr*>(&addr), len) == static_cast<ssize_t>(message.size()));
  auto received = notify.receive();
  BOOST_REQUIRE(received.has_value());
  BOOST_TEST(received->sender == getpid());
  BOOST_TEST(received->fields["READY"] == "1");
  BOOST_TEST(received->fields["STATUS"] == "up");
}

BOOST_AUTO_TEST_CASE(WhatAWorkerPassesOnArrivesFromTheWorker) {
  run::NotifySocket master("unit-test-relay/" + std::to_string(getpid()));
  BOOST_REQUIRE(run::sendNotify(master.address(), "READY=1"));
  auto received = master.receive();
  BOOST_REQUIRE(received.has_value());
  BOOST_TEST(received->sender == getpid());
  BOOST_TEST(received->fields["READY"] == "1");
  BOOST_TEST(!run::sendNotify("@molt-run/nobody-listens-here", "READY=1"));
  BOOST_TEST(!run::sendNotify("", "READY=1"));
}

BOOST_AUTO_TEST_SUITE_END()
