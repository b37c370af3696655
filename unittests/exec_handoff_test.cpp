#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "reload/exec_handoff.h"
#include "reload/fd.h"
#include "reload/process.h"
#include "loopback_listener.h"

using reload::ExecLayout;
using reload::Fd;
using reload::HandoffEnv;

namespace {

ino_t inodeOf(int fd) {
  struct stat st {};
  return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

std::vector<int> openFds() {
  std::vector<int> fds;
  DIR* dir = opendir("/proc/self/fd");
  while (dirent* entry = readdir(dir))
    if (entry->d_name[0] != '.' && std::atoi(entry->d_name) != dirfd(dir))
      fds.push_back(std::atoi(entry->d_name));
  closedir(dir);
  return fds;
}

struct Pipe {
  Fd read, write;
  Pipe() {
    int fds[2];
    BOOST_REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
    read.reset(fds[0]);
    write.reset(fds[1]);
  }
};

HandoffEnv sampleEnv() {
  HandoffEnv env;
  env.syncPid = 4242;
  env.lastGeneration = 7;
  env.servingGeneration = 6;
  env.startedEpoch = 1700000000;
  env.pending = "hup";
  env.workerNice = 3;
  env.counters.reloadsOk = 5;
  reload::HandoffChild child;
  child.pid = 31337;
  child.generation = 6;
  child.slot = 1;
  env.children.push_back(child);
  env.previousConfig = "token 00\nresolved 0\ncontents 0\n";
  return env;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ExecHandoffTest)

// What the old image lays out is what the new one reads: the new image's
// side runs in a forked child that sees the descriptors and environment as
// they would be after the exec.
BOOST_AUTO_TEST_CASE(what_the_old_image_lays_out_the_new_one_reads) {
  Pipe notify, state;
  Fd counters(memfd_create("test-counters", MFD_CLOEXEC));
  BOOST_REQUIRE(counters);
  Fd publicListener = listenOnLoopback(), adminListener = listenOnLoopback();
  const ino_t publicInode = inodeOf(publicListener.get());
  const ino_t adminInode = inodeOf(adminListener.get());
  const ino_t notifyInode = inodeOf(notify.write.get());
  {
    ExecLayout layout(sampleEnv(), notify.write.get(), state.read.get(), counters.get(),
                      {publicListener.get(), adminListener.get()}, {"public", "admin"});
    for (int fd : {layout.env().notifyFd, layout.env().stateFd, layout.env().countersFd})
      BOOST_TEST(fd >= 5);  // above the two listeners' places
    layout.apply(getpid());
    reload::handLogDropsOn(17);
    BOOST_TEST(std::string(getenv("LISTEN_FDS")) == "2");
    BOOST_TEST(std::string(getenv("LISTEN_FDNAMES")) == "public:admin");
    BOOST_TEST(std::string(getenv("LISTEN_PID")) == std::to_string(getpid()));
    BOOST_TEST(inodeOf(3) == publicInode);
    BOOST_TEST(inodeOf(4) == adminInode);
    auto passed = layout.passedFds();
    for (int fd : openFds()) {
      if (fd < 3) continue;
      bool isPassed = std::find(passed.begin(), passed.end(), fd) != passed.end();
      BOOST_TEST(((fcntl(fd, F_GETFD) & FD_CLOEXEC) == 0) == isPassed, "fd " << fd);
    }
    const int notifyFd = layout.env().notifyFd;
    pid_t child = reload::spawnChild("", [&]() -> int {
      reload::InheritedHandoff inherited = reload::takeInheritedHandoff();
      if (!inherited.afterExec || !inherited.handoff || !inherited.untrusted.empty()) return 10;
      const HandoffEnv& env = *inherited.handoff;
      if (env.lastGeneration != 7 || env.servingGeneration != 6 || env.pending != "hup" ||
          env.syncPid != 4242 || env.workerNice != 3 || env.counters.reloadsOk != 5)
        return 11;
      if (env.children.size() != 1 || env.children[0].pid != 31337 || env.children[0].slot != 1)
        return 12;
      if (env.notifyFd != notifyFd || inodeOf(env.notifyFd) != notifyInode) return 13;
      if (env.previousConfig != sampleEnv().previousConfig) return 14;
      if (getenv("MOLT_HANDOFF") || getenv("MOLT_HANDOFF_FD")) return 15;  // taken
      if (!getenv("LISTEN_FDS")) return 16;  // left for systemd::takeListenFds
      if (inherited.logDrops != 17 || getenv(reload::kLogDropsVariable)) return 17;
      return 0;
    });
    int status = 0;
    BOOST_REQUIRE(waitpid(child, &status, 0) == child);
    BOOST_TEST(WIFEXITED(status));
    BOOST_TEST(WEXITSTATUS(status) == 0);
  }
  // Destroyed without an exec: as before.
  BOOST_TEST(getenv("LISTEN_FDS") == nullptr);
  BOOST_TEST(getenv(reload::kLogDropsVariable) == nullptr);
  BOOST_TEST(getenv("MOLT_HANDOFF") == nullptr);
  BOOST_TEST(getenv("MOLT_HANDOFF_FD") == nullptr);
  BOOST_TEST(inodeOf(publicListener.get()) == publicInode);
}

BOOST_AUTO_TEST_CASE(undo_puts_back_whatever_sat_where_the_listeners_went) {
  Pipe notify, state;
  Fd counters(memfd_create("test-counters", MFD_CLOEXEC));
  Fd listener = listenOnLoopback();
  std::vector<std::pair<int, ino_t>> before;
  for (int fd : openFds())
    if (fd >= 3) before.emplace_back(fd, inodeOf(fd));
  {
    ExecLayout layout(sampleEnv(), notify.write.get(), state.read.get(), counters.get(),
                      {listener.get()}, {"public"});
    layout.apply(getpid());
    BOOST_TEST(inodeOf(3) == inodeOf(listener.get()));
    layout.undo();
    layout.undo();  // idempotent
  }
  std::vector<std::pair<int, ino_t>> after;
  for (int fd : openFds())
    if (fd >= 3) after.emplace_back(fd, inodeOf(fd));
  BOOST_TEST(before == after, "descriptors and what they are, before and after");
}

// The descriptor an exec runs may sit at any place the listeners take (a
// binary opened early in a start is often at 3): its copy is still that
// file once the layout is applied, at every such place.
BOOST_AUTO_TEST_CASE(the_binary_an_exec_runs_survives_the_listeners_layout_wherever_it_sits) {
  const int listenerCount = 3;
  for (int place = 3; place < 3 + listenerCount; ++place) {
    pid_t child = reload::spawnChild("", [&]() -> int {
      Fd binary(open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
      if (!binary) return 10;
      const ino_t binaryInode = inodeOf(binary.get());
      if (binary.get() != place && dup3(binary.get(), place, O_CLOEXEC) != place) return 11;
      Fd listeners[listenerCount] = {listenOnLoopback(), listenOnLoopback(), listenOnLoopback()};
      Fd counters(memfd_create("test-counters", MFD_CLOEXEC));
      std::vector<int> fds;
      for (const Fd& l : listeners) fds.push_back(l.get());
      ExecLayout layout(sampleEnv(), -1, -1, counters.get(), fds, {"a", "b", "c"});
      Fd copy = layout.copyClearOfListeners(place, "binary");
      layout.apply(getpid());
      if (copy.get() < 3 + listenerCount) return 12;
      if (inodeOf(copy.get()) != binaryInode) return 13;
      if (inodeOf(place) == binaryInode) return 14;  // a listener sits there now
      if ((fcntl(copy.get(), F_GETFD) & FD_CLOEXEC) == 0) return 15;
      return 0;
    });
    int status = 0;
    BOOST_REQUIRE(waitpid(child, &status, 0) == child);
    BOOST_TEST(WIFEXITED(status));
    BOOST_TEST(WEXITSTATUS(status) == 0, "binary at fd " << place);
  }
}

BOOST_AUTO_TEST_CASE(a_layout_that_cannot_be_prepared_changes_nothing) {
  Pipe notify, state;
  auto before = openFds();
  BOOST_CHECK_THROW(ExecLayout(sampleEnv(), notify.write.get(), state.read.get(), -1, {}, {}),
                    std::system_error);
  BOOST_TEST(openFds() == before);
  BOOST_TEST(getenv("MOLT_HANDOFF") == nullptr);
}

BOOST_AUTO_TEST_CASE(descriptors_that_are_not_the_claimed_pipe_ends_are_not_trusted) {
  Pipe notify, state;
  HandoffEnv env = sampleEnv();
  env.notifyFd = notify.write.get();
  env.stateFd = state.read.get();
  BOOST_TEST(reload::checkHandoffFds(env) == "");
  env.notifyFd = notify.read.get();
  BOOST_TEST(reload::checkHandoffFds(env).find("notify fd") != std::string::npos);
  env.notifyFd = notify.write.get();
  env.stateFd = state.write.get();
  BOOST_TEST(reload::checkHandoffFds(env).find("state fd") != std::string::npos);
  env.stateFd = state.read.get();
  // The workers' notify socket must be a Unix datagram socket.
  env.workerNotifyFd = notify.read.get();
  BOOST_TEST(reload::checkHandoffFds(env).find("worker notify fd") != std::string::npos);
  reload::Fd datagram(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  env.workerNotifyFd = datagram.get();
  BOOST_TEST(reload::checkHandoffFds(env) == "");
  reload::Fd stream(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  env.workerNotifyFd = stream.get();
  BOOST_TEST(reload::checkHandoffFds(env).find("worker notify fd") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(an_environment_without_a_handoff_is_a_fresh_start) {
  unsetenv("MOLT_HANDOFF");
  setenv(reload::kLogDropsVariable, "12", 1);  // forged: no handoff vouches for it
  auto inherited = reload::takeInheritedHandoff();
  BOOST_TEST(!inherited.afterExec);
  BOOST_TEST(!inherited.handoff);
  BOOST_TEST(inherited.untrusted.empty());
  BOOST_TEST(inherited.logDrops == 0u);
  BOOST_TEST(getenv(reload::kLogDropsVariable) == nullptr);
}

BOOST_AUTO_TEST_CASE(a_handoff_that_cannot_be_read_is_reported_and_dropped) {
  setenv("MOLT_HANDOFF", "2", 1);
  setenv("MOLT_HANDOFF_FD", "999", 1);  // nothing there
  auto inherited = reload::takeInheritedHandoff();
  BOOST_TEST(inherited.afterExec);
  BOOST_TEST(!inherited.handoff);
  BOOST_TEST(!inherited.untrusted.empty());
  BOOST_TEST(getenv("MOLT_HANDOFF") == nullptr);
  BOOST_TEST(getenv("MOLT_HANDOFF_FD") == nullptr);
}

BOOST_AUTO_TEST_SUITE_END()
