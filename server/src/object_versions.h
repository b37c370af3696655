// Versions of keys, shared by every process that serves a volume: what lets
// a worker keep an object open (or its small body in memory) and still
// answer every GET with what the last acknowledged PUT or DELETE left,
// whichever worker or generation answered it.
//
// Each volume has a table of 64-bit slots in VOLUME/versions, mapped shared
// by every worker of every generation and image that serves the volume (it
// is found by path, so a seamless re-exec, a rollback and a draining old
// generation all use the same one). A key hashes to one slot. A write of a
// key (PUT or DELETE) marks the slot before it touches any file and bumps
// it after the store returned, whatever the outcome, before the answer is
// sent:
//
//   slot = writers in flight (high 16 bits) | version (low 48 bits)
//   beginWrite: writers + 1            endWrite: writers - 1, version + 1
//
// A reader takes the slot's value (one atomic load per table) *before* it
// opens the file and keeps it with what it opened; it may use what it kept
// only while the value is unchanged and no writer is in flight. A writer
// that dies between the two leaves its slot marked: keys of that slot are
// never cached again (they are still served, from the files), which is
// safe, and costs one slot in 16384.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace server {

// One volume's table. The layout is part of the format every process
// serving the volume must agree on: a binary that finds another layout does
// not cache at all.
class VersionTable {
 public:
  static constexpr size_t kSlots = 16384;
  static constexpr uint64_t kWriterUnit = uint64_t{1} << 48;
  static constexpr uint64_t kVersionMask = kWriterUnit - 1;

  // Maps VOLUME/versions, creating it if need be. Returns null and says why
  // in `error` when the table cannot be used.
  static std::unique_ptr<VersionTable> open(const std::string& volume, std::string& error);
  ~VersionTable();
  VersionTable(const VersionTable&) = delete;
  VersionTable& operator=(const VersionTable&) = delete;

  const std::string& volume() const { return volume_; }
  // Seconds since the epoch at which the table was created.
  uint64_t createdAt() const { return createdAt_; }
  uint64_t load(size_t slot) const { return __atomic_load_n(&slots_[slot], __ATOMIC_ACQUIRE); }
  void beginWrite(size_t slot) { __atomic_fetch_add(&slots_[slot], kWriterUnit, __ATOMIC_SEQ_CST); }
  void endWrite(size_t slot) {
    __atomic_fetch_add(&slots_[slot], uint64_t{1} - kWriterUnit, __ATOMIC_SEQ_CST);
  }

 private:
  VersionTable(std::string volume, void* map, size_t length, uint64_t* slots, uint64_t createdAt);
  std::string volume_;
  void* map_;
  size_t length_;
  uint64_t* slots_;
  uint64_t createdAt_;
};

// The slot of a key: FNV-1a over bucket, a NUL and key. Part of the
// table's format (every binary that shares a table must agree on it).
size_t versionSlot(std::string_view bucket, std::string_view key);

// What a reader compares: the sum of the key's slot versions over every
// table, and whether any writer of the slot is in flight.
struct VersionStamp {
  uint64_t sum = 0;
  size_t tables = 0;  // a table added since changes every stamp
  bool writing = false;
  bool usable() const { return !writing && tables > 0; }
  bool operator==(const VersionStamp& o) const {
    return sum == o.sum && tables == o.tables && writing == o.writing;
  }
};

// A write of one key in progress: marked in every table when made, bumped
// by end() (or, if end() was never called, by the destructor). Made on the
// loop; end() may run on a pool thread (tables outlive every write).
class VersionWrite {
 public:
  VersionWrite(std::vector<VersionTable*> tables, size_t slot);
  ~VersionWrite() { end(); }
  VersionWrite(const VersionWrite&) = delete;
  VersionWrite& operator=(const VersionWrite&) = delete;
  void end();

 private:
  std::vector<VersionTable*> tables_;
  size_t slot_;
  bool ended_ = false;
};

// The tables of every volume a worker may read from or write to. Used from
// the worker's loop only (tables are mapped on the pool and added here);
// tables stay mapped for the life of the worker.
class ObjectVersions {
 public:
  // A table created less than `seconds` ago may have been preceded by
  // workers of a binary without tables that still drain and write without
  // bumping: nothing is cached until it is that old (graceful_timeout,
  // after which no such worker is left).
  void setTrustAfter(double seconds) { trustAfterSeconds_ = seconds; }
  // Adds a mapped table. A table for a volume already present is ignored.
  void add(std::unique_ptr<VersionTable> table);
  bool covers(const std::string& volume) const;
  // Whether entries may be kept at `nowSeconds` (epoch): there are tables,
  // and all are old enough. (Whether every volume read has one is the
  // caller's to check.)
  bool trusted(uint64_t nowSeconds) const;
  VersionStamp stamp(size_t slot) const;
  std::unique_ptr<VersionWrite> beginWrite(size_t slot) const;
  size_t tables() const { return tables_.size(); }

 private:
  std::vector<std::unique_ptr<VersionTable>> tables_;
  double trustAfterSeconds_ = 60;
  uint64_t newestCreatedAt_ = 0;
};

}  // namespace server
