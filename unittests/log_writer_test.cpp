#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "reload/log.h"
#include "reload/log_writer.h"
#include "reload/process.h"

using reload::log::BoundedLogWriter;
using reload::log::Destination;

namespace {

// Takes at most `room` bytes until given more; fails with `error` when set.
struct FakeSink {
  std::string taken;
  size_t room = 0;
  int error = 0;
  size_t waits = 0;
};

class FakeDestination : public Destination {
 public:
  explicit FakeDestination(FakeSink& sink) : sink_(sink) {}
  ssize_t write(const char* data, size_t size) override {
    if (sink_.error != 0) {
      errno = sink_.error;
      return -1;
    }
    size_t n = std::min(size, sink_.room);
    sink_.room -= n;
    sink_.taken.append(data, n);
    return static_cast<ssize_t>(n);
  }
  bool waitWritable(int /*timeoutMs*/) override {
    ++sink_.waits;
    return sink_.room > 0;
  }

 private:
  FakeSink& sink_;
};

std::string summary(uint64_t n) { return "[" + std::to_string(n) + " dropped]\n"; }

BoundedLogWriter writerOn(FakeSink& sink, size_t limit) {
  return BoundedLogWriter(std::make_unique<FakeDestination>(sink), limit, &summary);
}

std::string record(int i) { return "record " + std::to_string(1000 + i) + "\n"; }  // 12 bytes

}  // namespace

BOOST_AUTO_TEST_SUITE(LogWriterTest)

BOOST_AUTO_TEST_CASE(writes_through_when_the_destination_takes_everything) {
  FakeSink sink;
  sink.room = 1 << 20;
  auto writer = writerOn(sink, 100);
  for (int i = 0; i < 50; ++i) writer.write(record(i));
  std::string expected;
  for (int i = 0; i < 50; ++i) expected += record(i);
  BOOST_TEST(sink.taken == expected);
  BOOST_TEST(writer.idle());
  BOOST_TEST(writer.droppedTotal() == 0u);
}

// Every split of the destination's room: what was taken is always whole
// records in order, then (once room is back) the rest, the summary at the
// place of the gap and the records after it; the bound is never passed.
BOOST_AUTO_TEST_CASE(keeps_order_bounds_the_queue_and_reports_the_gap_at_every_room) {
  const size_t limit = 60;  // five records
  for (size_t room = 0; room <= 40; ++room) {
    FakeSink sink;
    sink.room = room;
    auto writer = writerOn(sink, limit);
    for (int i = 0; i < 20; ++i) {
      writer.write(record(i));
      BOOST_TEST(writer.queuedBytes() <= limit);
    }
    // Taken: the first `room` bytes, `whole` records of them; queued:
    // five records (a half-written one among them, at the front).
    const size_t whole = room / 12;
    const uint64_t dropped = 20 - whole - 5;
    BOOST_TEST(writer.droppedTotal() == dropped, "room " << room);
    BOOST_TEST(writer.takeUnpublished() == dropped);
    BOOST_TEST(writer.takeUnpublished() == 0u);
    sink.room = 1 << 20;
    writer.write(record(99));
    std::string expected;
    for (size_t i = 0; i < 20 - dropped; ++i) expected += record(static_cast<int>(i));
    if (dropped) expected += summary(dropped);
    expected += record(99);
    BOOST_TEST(sink.taken == expected, "room " << room);
    BOOST_TEST(writer.idle());
  }
}

BOOST_AUTO_TEST_CASE(the_summary_comes_once_room_is_back_without_a_new_record) {
  FakeSink sink;
  auto writer = writerOn(sink, 24);
  for (int i = 0; i < 5; ++i) writer.write(record(i));
  BOOST_TEST(writer.droppedTotal() == 3u);
  BOOST_TEST(!writer.flush());
  sink.room = 1000;
  BOOST_TEST(writer.flush());
  BOOST_TEST(sink.taken == record(0) + record(1) + summary(3));
  // Drops after a summary get a summary of their own.
  sink.room = 0;
  for (int i = 5; i < 9; ++i) writer.write(record(i));
  sink.room = 1000;
  BOOST_TEST(writer.drain(10));
  BOOST_TEST(sink.taken == record(0) + record(1) + summary(3) + record(5) + record(6) + summary(2));
  BOOST_TEST(writer.droppedTotal() == 5u);
}

BOOST_AUTO_TEST_CASE(a_failing_destination_drops_and_counts_without_looping) {
  FakeSink sink;
  sink.error = EPIPE;
  auto writer = writerOn(sink, 1000);
  for (int i = 0; i < 10; ++i) writer.write(record(i));
  BOOST_TEST(writer.droppedTotal() == 10u);
  BOOST_TEST(!writer.flush());
  BOOST_TEST(writer.droppedTotal() == 10u);  // the summary that failed is no record of its own
  sink.error = 0;
  sink.room = 1000;
  writer.write(record(42));
  BOOST_TEST(sink.taken == summary(10) + record(42));
}

BOOST_AUTO_TEST_CASE(a_failing_destination_is_tried_less_often_and_a_full_one_at_the_base_pace) {
  FakeSink sink;
  auto writer = writerOn(sink, 1000);
  writer.write(record(0));  // waits: the destination takes nothing now
  BOOST_TEST(writer.retryWaitMs(200, 6400) == 200);
  sink.error = EIO;
  std::vector<int> waits;
  for (int i = 0; i < 8; ++i) {
    BOOST_TEST(!writer.flush());
    waits.push_back(writer.retryWaitMs(200, 6400));
  }
  BOOST_TEST(waits == (std::vector<int>{200, 400, 800, 1600, 3200, 6400, 6400, 6400}),
             boost::test_tools::per_element());
  sink.error = 0;
  sink.room = 1000;
  BOOST_TEST(writer.flush());  // the summary is taken: the pace is the base again
  BOOST_TEST(writer.retryWaitMs(200, 6400) == 200);
}

BOOST_AUTO_TEST_CASE(drops_of_an_earlier_image_are_reported_not_counted_again) {
  FakeSink sink;
  auto before = writerOn(sink, 24);
  for (int i = 0; i < 3; ++i) before.write(record(i));  // nothing taken: 2 wait, 1 dropped
  before.abandon();                                      // the exec: what waits is dropped
  BOOST_TEST(before.unreported() == 3u);
  FakeSink after;
  after.room = 1000;
  auto next = writerOn(after, 1000);
  next.carryUnreported(before.unreported());
  BOOST_TEST(!next.idle());
  BOOST_TEST(next.flush());
  BOOST_TEST(after.taken == summary(3));
  BOOST_TEST(next.droppedTotal() == 0u);
  BOOST_TEST(next.takeUnpublished() == 0u);
}

BOOST_AUTO_TEST_CASE(drain_waits_then_abandon_counts_what_is_left) {
  FakeSink sink;
  auto writer = writerOn(sink, 1000);
  for (int i = 0; i < 4; ++i) writer.write(record(i));
  BOOST_TEST(!writer.drain(50));  // the fake never gets room: gives up at once
  BOOST_TEST(sink.waits == 1u);
  writer.abandon();
  BOOST_TEST(writer.droppedTotal() == 4u);
  BOOST_TEST(writer.queuedBytes() == 0u);
}

// A forked child's copy of its parent's queue: the parent writes and counts
// it; the child writes only its own records, with no summary of the
// parent's drops and none added to the shared count.
BOOST_AUTO_TEST_CASE(a_child_forgets_its_parents_records_and_drops) {
  FakeSink sink;
  auto writer = writerOn(sink, 30);
  for (int i = 0; i < 5; ++i) writer.write(record(i));  // 2 wait, 3 dropped
  BOOST_TEST(writer.droppedTotal() == 3u);
  writer.forget();
  BOOST_TEST(writer.idle());
  BOOST_TEST(writer.takeUnpublished() == 0u);
  sink.room = 1000;
  writer.write(record(7));
  BOOST_TEST(sink.taken == record(7));
}

BOOST_AUTO_TEST_CASE(a_replacing_writer_takes_what_waits_ahead_of_its_own) {
  FakeSink oldSink, newSink;
  oldSink.room = 5;  // the first record half written to the old destination
  auto old = writerOn(oldSink, 24);
  for (int i = 0; i < 4; ++i) old.write(record(i));
  BOOST_TEST(old.droppedTotal() == 2u);  // records 2 and 3
  newSink.room = 1000;
  auto next = writerOn(newSink, 1000);
  next.adopt(old);
  BOOST_TEST(old.idle());
  // The half-written record is not written again, and its lost end counts.
  BOOST_TEST(next.droppedTotal() == 3u);
  BOOST_TEST(next.takeUnpublished() == 3u);  // the old writer's two and the lost end
  next.write(record(9));
  BOOST_TEST(newSink.taken == record(1) + summary(3) + record(9));
}

BOOST_AUTO_TEST_CASE(reframing_changes_whole_records_only) {
  FakeSink sink;
  sink.room = 4;  // "one" written, "two" begun
  auto writer = writerOn(sink, 1000);
  writer.write("one");
  writer.write("two");
  writer.write("three");
  BOOST_TEST(writer.queuedBytes() == 8u);
  writer.reframe([](std::string& text) { text.push_back('\n'); });
  BOOST_TEST(writer.queuedBytes() == 9u);
  sink.room = 1000;
  BOOST_TEST(writer.flush());
  BOOST_TEST(sink.taken == "onetwothree\n");
}

// The real descriptors: a pipe nobody reads and a stream socket nobody
// reads take nothing once full, and no write waits.
BOOST_AUTO_TEST_CASE(a_full_pipe_and_a_full_socket_never_hold_a_write) {
  for (int kind = 0; kind < 2; ++kind) {
    int fds[2];
    if (kind == 0) {
      BOOST_REQUIRE(pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
    } else {
      BOOST_REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) == 0);
    }
    class RawFd : public Destination {
     public:
      RawFd(int fd, bool socket) : fd_(fd), socket_(socket) {}
      ssize_t write(const char* data, size_t size) override {
        ssize_t n = socket_ ? ::send(fd_, data, size, MSG_DONTWAIT | MSG_NOSIGNAL)
                            : ::write(fd_, data, size);
        if (n < 0 && errno == EAGAIN) return 0;
        return n;
      }
      bool waitWritable(int) override { return false; }

     private:
      int fd_;
      bool socket_;
    };
    BoundedLogWriter writer(std::make_unique<RawFd>(fds[1], kind == 1), 4096, &summary);
    const std::string line(100, 'x');
    for (int i = 0; i < 20000; ++i) writer.write(line + "\n");
    BOOST_TEST(writer.droppedTotal() > 0u);
    BOOST_TEST(writer.queuedBytes() <= 4096u + 101u);
    close(fds[0]);
    close(fds[1]);
  }
}

// The descriptor the log holds of its own (a log file; standard error as a
// pipe, opened again) sits high: configuring the log moves no other
// descriptor's number, so the lowest free one is the same before and
// after, and the log is clear of the places an exec's handoff lays
// listeners out at. Standard error as a regular file needs none. Each
// case runs in a child: the log is the process's.
BOOST_AUTO_TEST_CASE(the_log_descriptor_sits_high_and_moves_no_other) {
  char dir[] = "/tmp/molt-log-test-XXXXXX";
  BOOST_REQUIRE(mkdtemp(dir) != nullptr);
  const std::string file = std::string(dir) + "/log";
  enum Case { kFile, kStderrPipe, kStderrFile };
  for (int c : {kFile, kStderrPipe, kStderrFile}) {
    pid_t child = reload::spawnChild("", [&]() -> int {
      if (c == kStderrPipe) {
        int fds[2];
        if (pipe(fds) != 0 || dup2(fds[1], STDERR_FILENO) != STDERR_FILENO) return 10;
        close(fds[1]);  // the read end stays open: writes succeed
      } else if (c == kStderrFile) {
        int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd < 0 || dup2(fd, STDERR_FILENO) != STDERR_FILENO) return 11;
        close(fd);
      }
      auto lowestFree = [] {
        int fd = fcntl(0, F_DUPFD, 3);
        close(fd);
        return fd;
      };
      const int before = lowestFree();
      reload::log::Settings settings;
      settings.target = c == kFile ? file : "stderr";
      if (!reload::log::configure(settings)) return 12;
      MOLT_LOG(kWarning) << "a record";
      reload::log::flush();
      if (lowestFree() != before) return 13;
      auto own = reload::log::ownDescriptors();
      if (c == kStderrFile) return own.empty() ? 0 : 14;
      if (own.size() != 1) return 15;
      if (own[0] < 64) return 16;
      if ((fcntl(own[0], F_GETFD) & FD_CLOEXEC) == 0) return 17;
      return 0;
    });
    int status = 0;
    BOOST_REQUIRE(waitpid(child, &status, 0) == child);
    BOOST_TEST(WIFEXITED(status));
    BOOST_TEST(WEXITSTATUS(status) == 0, "case " << c);
  }
  unlink(file.c_str());
  rmdir(dir);
}

// With no room high up (EMFILE), the log's file keeps a low number, where
// an exec's layout may put another descriptor for a moment (dup2, undone
// when the exec fails). Meanwhile the log writes nothing to what took the
// number and, replaced, does not close it; with its own file back at the
// number, the records that waited are written. Runs in a child: the log
// and the descriptor limit are the process's.
BOOST_AUTO_TEST_CASE(a_low_log_descriptor_taken_over_is_neither_written_nor_closed) {
  char dir[] = "/tmp/molt-log-test-XXXXXX";
  BOOST_REQUIRE(mkdtemp(dir) != nullptr);
  const std::string logPath = std::string(dir) + "/log";
  const std::string otherPath = std::string(dir) + "/other";
  pid_t child = reload::spawnChild("", [&]() -> int {
    rlimit limit{64, 64};
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) return 10;
    // Every number from half the limit up taken (the log's floor), the low
    // ones left free: the sanitizers need a few.
    std::vector<int> filler;
    for (;;) {
      int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0) break;
      filler.push_back(fd);
    }
    if (errno != EMFILE) return 11;
    for (int fd : filler)
      if (fd < 32) close(fd);
    const int low = fcntl(0, F_DUPFD_CLOEXEC, 3);
    close(low);
    reload::log::Settings settings;
    settings.target = logPath;
    if (!reload::log::configure(settings)) return 12;
    auto own = reload::log::ownDescriptors();
    if (own.size() != 1 || own[0] != low) return 13;
    MOLT_LOG(kWarning) << "first record";
    reload::log::flush();
    // Another file takes the number; the log's is parked, as a layout does.
    const int parked = fcntl(low, F_DUPFD_CLOEXEC, 3);
    int other = open(otherPath.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (parked < 0 || other < 0 || dup2(other, low) != low) return 14;
    close(other);
    MOLT_LOG(kWarning) << "while the number is another's";
    reload::log::flush();
    struct stat st {};
    if (stat(otherPath.c_str(), &st) != 0 || st.st_size != 0) return 15;
    // Undone: the record that waited goes to the log.
    if (dup2(parked, low) != low) return 16;
    close(parked);
    MOLT_LOG(kWarning) << "third record";
    reload::log::flush();
    std::ifstream in(logPath);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (text.find("first record") == std::string::npos ||
        text.find("while the number is another's") == std::string::npos ||
        text.find("third record") == std::string::npos)
      return 17;
    // Taken over again, then the log moves: the number is not closed.
    other = open(otherPath.c_str(), O_WRONLY | O_CLOEXEC);
    if (other < 0 || dup2(other, low) != low) return 18;
    close(other);
    settings.target = "stderr";
    if (!reload::log::configure(settings)) return 19;
    if (fcntl(low, F_GETFD) < 0) return 20;
    struct stat atLow {};
    if (fstat(low, &atLow) != 0 || stat(otherPath.c_str(), &st) != 0 || atLow.st_ino != st.st_ino) return 21;
    return 0;
  });
  int status = 0;
  BOOST_REQUIRE(waitpid(child, &status, 0) == child);
  BOOST_TEST(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0);
  unlink(logPath.c_str());
  unlink(otherPath.c_str());
  rmdir(dir);
}

BOOST_AUTO_TEST_SUITE_END()
