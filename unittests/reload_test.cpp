#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <map>
#include <sstream>
#include <thread>

#include "reload/fd.h"
#include "reload/handoff.h"
#include "reload/process.h"
#include "reload/shared_counters.h"
#include "reload/synchronizer.h"
#include "reload/worker_registry.h"

using namespace reload;

BOOST_AUTO_TEST_SUITE(WorkerRegistryTest)

BOOST_AUTO_TEST_CASE(generations_and_draining) {
  WorkerRegistry r;
  r.add({88, 1, 0, WorkerState::kReady, 0, 0, 0});
  r.add({89, 1, 1, WorkerState::kReady, 0, 0, 0});
  r.add({90, 2, 0, WorkerState::kStarting, 5, 0, 0});
  BOOST_TEST(r.readyCount(1) == 2u);
  BOOST_TEST(r.readyCount(2) == 0u);
  r.markReady(90);
  BOOST_TEST(r.readyCount(2) == 1u);
  BOOST_TEST(r.missingSlots(2, 2) == std::vector<int>({1}));

  auto drained = r.startDraining(1, 10, 70);
  BOOST_TEST(drained.size() == 2u);
  BOOST_TEST(r.drainingGenerations() == std::vector<uint64_t>({1}));
  BOOST_TEST(r.missingSlots(1, 2) == std::vector<int>({0, 1}));  // draining workers are not live
  BOOST_TEST(r.overdue(69).empty());
  BOOST_TEST(r.overdue(70).size() == 2u);
  BOOST_TEST(*r.nextKillAt() == 70.0);
  // Draining twice changes nothing.
  BOOST_TEST(r.startDraining(1, 20, 90).empty());
  BOOST_TEST(r.find(88)->killAt == 70.0);
  // The master clears the deadline of a worker it has killed: killed but
  // not yet reaped, it is neither killed nor counted again.
  r.find(88)->killAt = 0;
  BOOST_TEST(r.overdue(1000) == std::vector<pid_t>({89}));
  r.find(89)->killAt = 0;
  BOOST_TEST(r.overdue(1000).empty());
  BOOST_TEST(!r.nextKillAt());
}

BOOST_AUTO_TEST_CASE(unknown_pids_are_not_workers) {
  WorkerRegistry r;
  r.add({88, 1, 0, WorkerState::kReady, 0, 0, 0});
  BOOST_TEST(!r.remove(12345));
  auto gone = r.remove(88);
  BOOST_TEST(gone->slot == 0);
  BOOST_TEST(r.size() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(HandoffTest)

BOOST_AUTO_TEST_CASE(env_round_trip) {
  HandoffEnv env;
  env.notifyFd = 7;
  env.stateFd = 8;
  env.countersFd = 9;
  env.syncPid = 4242;
  env.lastGeneration = 17;
  env.servingGeneration = 16;
  env.startedEpoch = 1700000000;
  env.reloadStartedUs = 123456789;
  env.pending = "hup";
  env.workerNice = 5;
  env.counters = {5, 2, 1, 3};
  env.children = {{100, 16, 0, false, 0, std::nullopt, 0, 0}, {101, 15, 1, true, 99000000, std::nullopt, 0, 0}};
  std::map<std::string, std::string> vars;
  for (const auto& [k, v] : encodeHandoffEnv(env)) vars[k] = v;
  auto get = [&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
  auto back = decodeHandoffEnv(get);
  BOOST_REQUIRE(back);
  BOOST_TEST(back->notifyFd == 7);
  BOOST_TEST(back->stateFd == 8);
  BOOST_TEST(back->countersFd == 9);
  BOOST_TEST(back->syncPid == 4242);
  BOOST_TEST(back->lastGeneration == 17u);
  BOOST_TEST(back->servingGeneration == 16u);
  BOOST_TEST(back->startedEpoch == 1700000000);
  BOOST_TEST(back->reloadStartedUs == 123456789);
  BOOST_TEST(back->pending == "hup");
  BOOST_TEST(back->workerNice == 5);
  BOOST_TEST(back->counters.reloadsOk == 5u);
  BOOST_TEST(back->counters.reloadsFailed == 2u);
  BOOST_TEST(back->counters.workerRestarts == 1u);
  BOOST_TEST(back->counters.drainKills == 3u);
  BOOST_REQUIRE(back->children.size() == env.children.size());
  for (size_t i = 0; i < env.children.size(); ++i) {
    const auto& want = env.children[i];
    const auto& got = back->children[i];
    BOOST_TEST(got.pid == want.pid);
    BOOST_TEST(got.generation == want.generation);
    BOOST_TEST(got.slot == want.slot);
    BOOST_TEST(got.draining == want.draining);
    BOOST_TEST(got.killAtUs == want.killAtUs);
  }
  BOOST_TEST(handoffEnvNames().size() == vars.size());
}

BOOST_AUTO_TEST_CASE(absent_and_malformed_env) {
  BOOST_TEST(!decodeHandoffEnv([](const char*) -> const char* { return nullptr; }));
  auto wrongVersion = [](const char* name) -> const char* {
    return std::string(name) == "MOLT_HANDOFF" ? "2" : "0";
  };
  BOOST_CHECK_THROW(decodeHandoffEnv(wrongVersion), std::invalid_argument);
  auto missing = [](const char* name) -> const char* {
    return std::string(name) == "MOLT_HANDOFF" ? "1" : nullptr;
  };
  BOOST_CHECK_THROW(decodeHandoffEnv(missing), std::invalid_argument);
}

// Numbers that would wrap or truncate into plausible values are refused:
// -1 as a counter is not 2^64-1, and 2^32+3 as a descriptor is not fd 3.
BOOST_AUTO_TEST_CASE(handoff_numbers_never_wrap) {
  HandoffEnv env;
  env.notifyFd = 5;
  env.stateFd = 6;
  env.syncPid = 4242;
  env.lastGeneration = 2;
  env.servingGeneration = 1;
  const std::string good = encodeHandoffText(env);
  BOOST_TEST(decodeHandoffText(good).syncPid == 4242);
  auto with = [&](const std::string& from, const std::string& to) {
    std::string text = good;
    auto at = text.find(from);
    BOOST_REQUIRE(at != std::string::npos);
    return text.replace(at, from.size(), to);
  };
  BOOST_CHECK_THROW(decodeHandoffText(with("counters=0:0:0:0", "counters=-1:0:0:0")),
                    std::invalid_argument);
  BOOST_CHECK_THROW(decodeHandoffText(with("generation=2", "generation=-2")), std::invalid_argument);
  BOOST_CHECK_THROW(decodeHandoffText(with("notify_fd=5", "notify_fd=4294967299")),
                    std::invalid_argument);
  BOOST_CHECK_THROW(decodeHandoffText(with("sync_pid=4242", "sync_pid=4294971538")),
                    std::invalid_argument);
}

// What an image that adopts the workers needs crosses in full, for every
// worker state; keys that do not fit their child or range are refused.
BOOST_AUTO_TEST_CASE(an_adopting_handoff_carries_every_worker_as_it_is) {
  HandoffEnv env;
  env.notifyFd = 5;
  env.stateFd = 6;
  env.syncPid = 4242;
  env.lastGeneration = 3;
  env.servingGeneration = 3;
  env.adopt = true;
  const WorkerState states[] = {WorkerState::kStarting, WorkerState::kReady, WorkerState::kStandby,
                                WorkerState::kDraining};
  pid_t pid = 100;
  for (WorkerState state : states) {
    HandoffChild c;
    c.pid = pid++;
    c.generation = state == WorkerState::kDraining ? 2 : 3;
    c.slot = static_cast<int>(pid % 3);
    c.draining = state == WorkerState::kDraining;
    c.killAtUs = c.draining ? 99000000 : 0;
    c.state = state;
    c.startedUs = 1000 * pid;
    c.drainStartedUs = c.draining ? 5000 : 0;
    env.children.push_back(c);
  }
  env.readyPipes = {{100, 9}};
  env.drainSignals = {{2, SIGINT}, {3, SIGTERM}};
  env.mainPids = {{555, 101}};
  env.quickFailures = {{0, 3}, {1, 1}};
  const std::string text = encodeHandoffText(env);
  HandoffEnv back = decodeHandoffText(text);
  BOOST_TEST(back.adopt);
  BOOST_REQUIRE(back.children.size() == env.children.size());
  for (size_t i = 0; i < env.children.size(); ++i) {
    BOOST_TEST(back.children[i].pid == env.children[i].pid);
    BOOST_TEST(back.children[i].slot == env.children[i].slot);
    BOOST_TEST(back.children[i].generation == env.children[i].generation);
    BOOST_TEST((back.children[i].state == env.children[i].state));
    BOOST_TEST(back.children[i].startedUs == env.children[i].startedUs);
    BOOST_TEST(back.children[i].drainStartedUs == env.children[i].drainStartedUs);
  }
  BOOST_TEST((back.readyPipes == env.readyPipes));
  BOOST_TEST((back.drainSignals == env.drainSignals));
  BOOST_TEST((back.mainPids == env.mainPids));
  BOOST_TEST((back.quickFailures == env.quickFailures));
  auto with = [&](const std::string& from, const std::string& to) {
    std::string changed = text;
    auto at = changed.find(from);
    BOOST_REQUIRE(at != std::string::npos);
    return changed.replace(at, from.size(), to);
  };
  BOOST_CHECK_THROW(decodeHandoffText(with("child_state=103:d", "child_state=103:r")),
                    std::invalid_argument);  // a draining child said ready
  BOOST_CHECK_THROW(decodeHandoffText(with("child_state=100:s", "child_state=999:s")),
                    std::invalid_argument);  // no such child
  BOOST_CHECK_THROW(decodeHandoffText(with("ready_pipe=100:9", "ready_pipe=999:9")),
                    std::invalid_argument);
  BOOST_CHECK_THROW(decodeHandoffText(with("ready_pipe=100:9", "ready_pipe=100:5")),
                    std::invalid_argument);  // the notify fd again
  BOOST_CHECK_THROW(decodeHandoffText(with("drain_signal=2:2", "drain_signal=2:99")),
                    std::invalid_argument);
  BOOST_CHECK_THROW(decodeHandoffText(with("main_pid=555:101", "main_pid=1:101")),
                    std::invalid_argument);
  // An image that knows none of these keys still reads the children.
  std::string old;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("child_state=", 0) != 0 && line.rfind("adopt=", 0) != 0) old += line + "\n";
  HandoffEnv plain = decodeHandoffText(old);
  BOOST_TEST(!plain.adopt);
  BOOST_TEST(plain.children.size() == env.children.size());
  BOOST_TEST(!plain.children[0].state.has_value());
}

BOOST_AUTO_TEST_CASE(sync_report_is_length_prefixed) {
  SyncReport report{77, 5555, {10, 11}, {12}};
  std::string bytes = encodeSyncReport(report);
  for (size_t cut = 0; cut < bytes.size(); ++cut) BOOST_TEST(!decodeSyncReport(bytes.substr(0, cut)));
  auto back = decodeSyncReport(bytes);
  BOOST_REQUIRE(back);
  BOOST_TEST(back->syncPid == 77);
  BOOST_TEST(back->signalled == std::vector<pid_t>({10, 11}));
  BOOST_TEST(back->alreadyGone == std::vector<pid_t>({12}));
  BOOST_CHECK_THROW(decodeSyncReport("JUNK1\0\0\0\0"), std::invalid_argument);
  std::string v2 = bytes;
  v2[4] = '2';
  BOOST_CHECK_THROW(decodeSyncReport(v2), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(notify_lines) {
  auto ready = decodeNotify(encodeNotify({NotifyMessage::Kind::kReady, 42, 9, ""}));
  BOOST_TEST((ready->kind == NotifyMessage::Kind::kReady));
  BOOST_TEST(ready->generation == 9u);
  auto fail = decodeNotify(encodeNotify({NotifyMessage::Kind::kFail, 0, 0, "bind 1.2.3.4:80\nin use"}));
  BOOST_TEST((fail->kind == NotifyMessage::Kind::kFail));
  BOOST_TEST(fail->reason == "bind 1.2.3.4:80 in use");
  BOOST_TEST(!decodeNotify("READY 1"));
  BOOST_TEST(decodeNotify("garbage\n")->reason == "malformed notify line 'garbage'");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(ProcessTest)

bool isOpen(int fd) { return fcntl(fd, F_GETFD) >= 0; }

// What a descriptor refers to: the file and, for pipes whose two ends share
// an inode, which end (the access mode of the open file description).
struct FdIdentity {
  dev_t dev = 0;
  ino_t ino = 0;
  int accessMode = -1;
  int fdFlags = -1;
  bool operator==(const FdIdentity& o) const {
    return dev == o.dev && ino == o.ino && accessMode == o.accessMode && fdFlags == o.fdFlags;
  }
};

FdIdentity identify(int fd) {
  FdIdentity id;
  struct stat st {};
  if (fstat(fd, &st) != 0) return id;
  id.dev = st.st_dev;
  id.ino = st.st_ino;
  id.accessMode = fcntl(fd, F_GETFL) & O_ACCMODE;
  id.fdFlags = fcntl(fd, F_GETFD);
  return id;
}

BOOST_AUTO_TEST_CASE(fd_layout_puts_sources_at_3_and_undo_restores) {
  // Two pipes: one occupies 3 and 4 (the layout must not lose it), the other
  // is what has to end up there, read end at 3 and write end at 4.
  int pipeA[2], pipeB[2];
  BOOST_REQUIRE(pipe2(pipeA, O_CLOEXEC) == 0);
  BOOST_REQUIRE(pipe2(pipeB, O_CLOEXEC) == 0);
  BOOST_REQUIRE(isOpen(3));
  BOOST_REQUIRE(isOpen(4));
  FdIdentity before3 = identify(3), before4 = identify(4);
  FdIdentity read = identify(pipeB[0]), write = identify(pipeB[1]);
  BOOST_REQUIRE(read.accessMode == O_RDONLY);
  BOOST_REQUIRE(write.accessMode == O_WRONLY);
  {
    FdLayout layout({pipeB[0], pipeB[1]});
    FdIdentity at3 = identify(3), at4 = identify(4);
    BOOST_TEST((at3.ino == read.ino && at3.accessMode == O_RDONLY));
    BOOST_TEST((at4.ino == write.ino && at4.accessMode == O_WRONLY));
    // Inherited across exec: no FD_CLOEXEC on the targets.
    BOOST_TEST(at3.fdFlags == 0);
    BOOST_TEST(at4.fdFlags == 0);
    // The sources themselves are untouched.
    BOOST_TEST((identify(pipeB[0]) == read));
    BOOST_TEST((identify(pipeB[1]) == write));
    layout.undo();
  }
  BOOST_TEST((identify(3) == before3));
  BOOST_TEST((identify(4) == before4));
  for (int fd : {pipeA[0], pipeA[1], pipeB[0], pipeB[1]}) close(fd);
}

BOOST_AUTO_TEST_CASE(close_all_except_in_a_child) {
  int p[2];
  BOOST_REQUIRE(pipe2(p, O_CLOEXEC) == 0);
  Fd extra(open("/dev/null", O_RDONLY | O_CLOEXEC));
  pid_t pid = fork();
  if (pid == 0) {
    closeAllFdsExcept({p[1]});
    bool ok = isOpen(p[1]) && !isOpen(p[0]) && !isOpen(extra.get()) && isOpen(2);
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  BOOST_TEST(describeWaitStatus(status) == "exited with status 0");
  close(p[0]);
  close(p[1]);
}

BOOST_AUTO_TEST_CASE(wait_status_descriptions) {
  pid_t pid = fork();
  if (pid == 0) {
    raise(SIGKILL);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  BOOST_TEST(describeWaitStatus(status) == "killed by SIGKILL");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(SharedCountersTest)

BOOST_AUTO_TEST_CASE(children_add_and_a_remapped_fd_sees_it) {
  SharedCounters counters;
  BOOST_TEST((fcntl(counters.fd(), F_GETFD) & FD_CLOEXEC) != 0);
  counters.add(3, 5);
  pid_t pid = fork();
  if (pid == 0) {
    for (int i = 0; i < 1000; ++i) counters.add(3, 1);
    _exit(0);
  }
  for (int i = 0; i < 1000; ++i) counters.add(3, 1);
  waitpid(pid, nullptr, 0);
  BOOST_TEST(counters.load(3) == 2005u);
  // What a re-executed image does with the inherited fd.
  SharedCounters again(fcntl(counters.fd(), F_DUPFD_CLOEXEC, 3));
  BOOST_TEST(again.load(3) == 2005u);
  again.add(3, 1);
  BOOST_TEST(counters.load(3) == 2006u);
}

BOOST_AUTO_TEST_CASE(its_own_memfd_is_sealed_at_its_size) {
  SharedCounters counters;
  BOOST_TEST(fcntl(counters.fd(), F_GET_SEALS) == SharedCounters::kRequiredSeals);
  constexpr off_t kBytes = SharedCounters::kSlots * sizeof(uint64_t);
  BOOST_TEST(ftruncate(counters.fd(), 0) == -1);
  BOOST_TEST(errno == EPERM);
  BOOST_TEST(ftruncate(counters.fd(), kBytes * 2) == -1);
  counters.add(1, 1);  // still mapped and whole
  BOOST_TEST(counters.load(1) == 1u);
}

// Only a memfd sealed against shrinking, growing and resealing, of exactly
// the right size, is adopted: every other descriptor of the right size
// could be truncated under the workers' mappings.
BOOST_AUTO_TEST_CASE(only_a_sealed_memfd_of_the_exact_size_is_adopted) {
  constexpr off_t kBytes = SharedCounters::kSlots * sizeof(uint64_t);
  auto refused = [](int fd) {
    try {
      SharedCounters adopted(fd);
    } catch (const std::system_error&) {
      BOOST_TEST(fcntl(fd, F_GETFD) >= 0);  // left open, not adopted
      close(fd);
      return true;
    }
    return false;
  };
  // A regular file of the right size.
  char path[] = "/tmp/counters-test-XXXXXX";
  int file = mkstemp(path);
  BOOST_REQUIRE(file >= 0);
  unlink(path);
  BOOST_REQUIRE(ftruncate(file, kBytes) == 0);
  BOOST_TEST(refused(file));
  // Memfds with every subset of the seals but the full one, at the right
  // size; and with all of them at every wrong size around it.
  for (int seals = 0; seals < 8; ++seals) {
    int fd = memfd_create("forged", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    BOOST_REQUIRE(fd >= 0);
    BOOST_REQUIRE(ftruncate(fd, kBytes) == 0);
    BOOST_REQUIRE(fcntl(fd, F_ADD_SEALS, seals) == 0);
    if ((seals & SharedCounters::kRequiredSeals) == SharedCounters::kRequiredSeals) {
      SharedCounters adopted(fd);
      adopted.add(0, 1);
      BOOST_TEST(adopted.load(0) == 1u);
    } else {
      BOOST_TEST(refused(fd), "seals " << seals);
    }
  }
  for (off_t size : {off_t{0}, kBytes - 8, kBytes - 1, kBytes + 1, kBytes * 2}) {
    int fd = memfd_create("forged", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    BOOST_REQUIRE(fd >= 0);
    BOOST_REQUIRE(ftruncate(fd, size) == 0);
    BOOST_REQUIRE(fcntl(fd, F_ADD_SEALS, SharedCounters::kRequiredSeals) == 0);
    BOOST_TEST(refused(fd), "size " << size);
  }
  // A memfd that cannot be sealed (MFD_ALLOW_SEALING not given).
  int plain = memfd_create("forged", MFD_CLOEXEC);
  BOOST_REQUIRE(plain >= 0);
  BOOST_REQUIRE(ftruncate(plain, kBytes) == 0);
  BOOST_TEST(refused(plain));
  // A pipe.
  int pipeFds[2];
  BOOST_REQUIRE(pipe2(pipeFds, O_CLOEXEC) == 0);
  BOOST_TEST(refused(pipeFds[0]));
  close(pipeFds[1]);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(SynchronizerTest)

// The synchronizer runs in-process here against real pipes; the "old
// workers" are children of this test, which plays the master.
// The "old worker" echoes every byte it is sent, so the test can prove it
// is alive: kill(pid, 0) cannot (it succeeds for a zombie), and waitpid()
// right after a wrong kill can still find it running.
struct SyncRig {
  SyncRig() {
    BOOST_REQUIRE(pipe2(notify, O_CLOEXEC) == 0);
    BOOST_REQUIRE(pipe2(state, O_CLOEXEC | O_NONBLOCK) == 0);
    int ping[2], pong[2];
    BOOST_REQUIRE(pipe2(ping, O_CLOEXEC) == 0);
    BOOST_REQUIRE(pipe2(pong, O_CLOEXEC) == 0);
    worker = fork();
    if (worker == 0) {
      closeAllFdsExcept({ping[0], pong[1]});  // or it would hold the notify pipe open
      char byte;
      while (read(ping[0], &byte, 1) == 1)
        if (write(pong[1], &byte, 1) != 1) break;
      _exit(0);
    }
    close(ping[0]);
    close(pong[1]);
    pingFd = ping[1];
    pongFd = pong[0];
  }
  ~SyncRig() {
    kill(worker, SIGKILL);
    waitpid(worker, nullptr, 0);
    for (int fd : {notify[0], notify[1], state[0], state[1], pingFd, pongFd}) close(fd);
  }
  // True when the worker answers; false when it is gone (EOF on the pipe).
  bool workerAlive() {
    signal(SIGPIPE, SIG_IGN);  // a dead worker's pipe gives EPIPE, not a signal
    char byte = 'p';
    if (write(pingFd, &byte, 1) != 1) return false;
    return read(pongFd, &byte, 1) == 1;
  }
  SyncParams params(double timeout) {
    SyncParams p;
    p.notifyFd = notify[0];
    p.stateFd = state[1];
    p.oldWorkers = {worker};
    p.masterPid = getpid();
    p.timeoutSeconds = timeout;
    return p;
  }
  int notify[2];
  int state[2];
  int pingFd = -1;
  int pongFd = -1;
  pid_t worker;
};

BOOST_AUTO_TEST_CASE(ready_drains_old_workers_and_reports) {
  SyncRig rig;
  std::string line = encodeNotify({NotifyMessage::Kind::kReady, getpid(), 2, ""});
  BOOST_REQUIRE(write(rig.notify[1], line.data(), line.size()) == static_cast<ssize_t>(line.size()));
  BOOST_TEST(runSynchronizer(rig.params(5)) == kSyncDrained);
  int status = 0;
  BOOST_REQUIRE(waitpid(rig.worker, &status, 0) == rig.worker);
  BOOST_TEST(describeWaitStatus(status) == "killed by SIGTERM");
  char buf[512];
  ssize_t n = read(rig.state[0], buf, sizeof buf);
  auto report = decodeSyncReport(std::string(buf, static_cast<size_t>(n)));
  BOOST_REQUIRE(report);
  BOOST_TEST(report->signalled == std::vector<pid_t>({rig.worker}));
  rig.worker = fork();  // something for the destructor to reap
  if (rig.worker == 0) _exit(0);
}

BOOST_AUTO_TEST_CASE(failure_leaves_old_workers_alone) {
  SyncRig rig;
  std::string line = encodeNotify({NotifyMessage::Kind::kFail, 0, 0, "no"});
  BOOST_REQUIRE(write(rig.notify[1], line.data(), line.size()) > 0);
  BOOST_TEST(runSynchronizer(rig.params(5)) == kSyncAborted);
  BOOST_TEST(rig.workerAlive());
  char buf[16];
  BOOST_TEST(read(rig.state[0], buf, sizeof buf) == -1);  // nothing was reported
}

// A stop is not a failed image: the synchronizer says so, before the new
// generation is ready and while it is on probation, and touches nothing.
BOOST_AUTO_TEST_CASE(a_stop_is_reported_as_a_stop) {
  for (bool onProbation : {false, true}) {
    SyncRig rig;
    std::string stop = encodeNotify({NotifyMessage::Kind::kStop, 0, 0, "graceful shutdown"});
    std::thread master;
    if (onProbation) {
      NotifyMessage ready{NotifyMessage::Kind::kReady, getpid(), 2, ""};
      ready.probation = true;
      std::string line = encodeNotify(ready);
      BOOST_REQUIRE(write(rig.notify[1], line.data(), line.size()) > 0);
      // The stop comes once the synchronizer took the ready line (its
      // report says so), as it does from a master.
      master = std::thread([&rig, stop] {
        pollfd report{rig.state[0], POLLIN, 0};
        if (poll(&report, 1, 5000) == 1 && write(rig.notify[1], stop.data(), stop.size()) < 0) {
          // The synchronizer then times out, and the test says so.
        }
      });
    } else {
      BOOST_REQUIRE(write(rig.notify[1], stop.data(), stop.size()) > 0);
    }
    BOOST_TEST(runSynchronizer(rig.params(5)) == kSyncStopped);
    if (master.joinable()) master.join();
    BOOST_TEST(rig.workerAlive());
    BOOST_TEST(std::string(describeSyncExit(kSyncStopped)) ==
               "the master stops; both generations stop with it");
  }
  auto decoded = decodeNotify(encodeNotify({NotifyMessage::Kind::kStop, 0, 0, "immediate stop"}));
  BOOST_REQUIRE(decoded);
  BOOST_TEST((decoded->kind == NotifyMessage::Kind::kStop));
  BOOST_TEST(decoded->reason == "immediate stop");
}

BOOST_AUTO_TEST_CASE(eof_and_timeout) {
  {
    SyncRig rig;
    close(rig.notify[1]);
    rig.notify[1] = -1;
    BOOST_TEST(runSynchronizer(rig.params(5)) == kSyncMasterGone);
    BOOST_TEST(rig.workerAlive());
  }
  {
    SyncRig rig;
    BOOST_TEST(runSynchronizer(rig.params(0.05)) == kSyncTimedOut);
    BOOST_TEST(rig.workerAlive());
  }
}

BOOST_AUTO_TEST_SUITE_END()
