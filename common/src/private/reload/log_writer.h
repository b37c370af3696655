// The bounded, never-waiting path every log record takes to its
// destination (log.cpp). Kept apart from Boost.Log so that the buffer and
// drop rules can be tested with a fake destination.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>

namespace reload::log {

// Where formatted records go. write() must never wait: it takes what the
// destination takes now.
class Destination {
 public:
  virtual ~Destination() = default;
  // Writes a prefix of [data, data + size): its length, 0 when the
  // destination takes nothing now, -1 with errno on an error.
  virtual ssize_t write(const char* data, size_t size) = 0;
  // Waits at most `timeoutMs` until write() may take bytes again; false
  // when it cannot be waited for (a destination that is gone).
  virtual bool waitWritable(int timeoutMs) = 0;
  // The descriptor the destination holds of its own, or -1.
  virtual int ownDescriptor() const { return -1; }
};

// Records wait in memory, in order, while the destination takes nothing,
// up to `limit` bytes; past it a record is dropped and counted. Once the
// destination takes bytes again and the records queued before the drop are
// written, one record says how many were dropped, at the place of the gap.
// Not thread-safe: the Boost.Log sink frontend serializes its calls.
class BoundedLogWriter {
 public:
  using Summary = std::function<std::string(uint64_t dropped)>;
  BoundedLogWriter(std::unique_ptr<Destination> destination, size_t limit, Summary summary);

  // Queues a whole record (with its newline) and writes what it can.
  void write(std::string record);
  // Writes what it can now; true when nothing waits.
  bool flush();
  // Writes for at most `timeoutMs`, waiting for the destination in
  // between; true when nothing waits.
  bool drain(int timeoutMs);
  // Counts what still waits as dropped and forgets it (a process that
  // leaves, or a log moved elsewhere that took nothing).
  void abandon();
  // Forgets what waits and the drops not yet reported or counted, as
  // another process's (a forked child's copy of its parent's queue, which
  // the parent writes and counts itself).
  void forget();
  // Takes the records and drop counts of `other` (a log being replaced),
  // ahead of anything queued here. A record `other` had half written is
  // counted as dropped.
  void adopt(BoundedLogWriter& other);
  // Changes every whole record that waits (records framed for another
  // destination).
  void reframe(const std::function<void(std::string&)>& change);

  // How long to wait before trying again while records wait: `base` while
  // the destination only takes nothing now, doubled for each write in a row
  // that failed, up to `longest` (a destination that is gone is not polled
  // at the pace of one that is merely full).
  int retryWaitMs(int base, int longest) const;

  size_t queuedBytes() const { return queuedBytes_; }
  bool idle() const { return entries_.empty() && unreported_ == 0; }
  uint64_t droppedTotal() const { return droppedTotal_; }
  // Drops no summary record has reported yet.
  uint64_t unreported() const { return unreported_; }
  // Drops counted elsewhere (an earlier image) that the next summary
  // reports with this writer's own.
  void carryUnreported(uint64_t records) { unreported_ += records; }
  // Drops not yet added to a shared counter: returns them and resets.
  uint64_t takeUnpublished();
  Destination& destination() { return *destination_; }

 private:
  struct Entry {
    std::string text;
    uint64_t summarizes = 0;  // a summary record: the drops it reports
  };
  void drop(uint64_t records);
  void queueSummary();
  std::unique_ptr<Destination> destination_;
  const size_t limit_;
  Summary summary_;
  std::deque<Entry> entries_;
  size_t written_ = 0;  // bytes of the first entry already written
  size_t queuedBytes_ = 0;
  uint64_t unreported_ = 0;  // drops since the last summary queued
  uint64_t droppedTotal_ = 0;
  uint64_t unpublished_ = 0;
  unsigned failuresInARow_ = 0;
};

}  // namespace reload::log
