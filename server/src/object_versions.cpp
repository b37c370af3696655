#include "object_versions.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "reload/fd.h"

namespace server {

namespace {

// The table's first 64 bytes; the slots follow.
struct Header {
  uint64_t magic;      // the bytes of kMagic, stored last by the creator: a table without it is not ready
  uint64_t slots;
  uint64_t createdAt;  // epoch seconds
  char reserved[40];
};
static_assert(sizeof(Header) == 64, "the header is part of the format");
constexpr char kMagic[8] = {'M', 'O', 'L', 'T', 'V', 'E', 'R', '1'};

uint64_t magicWord() {
  uint64_t word;
  std::memcpy(&word, kMagic, sizeof word);
  return word;
}
constexpr size_t kLength = sizeof(Header) + VersionTable::kSlots * sizeof(uint64_t);
static_assert(__atomic_always_lock_free(sizeof(uint64_t), 0), "slots are shared between processes");

std::string sysText(const std::string& what) { return what + ": " + std::strerror(errno); }

}  // namespace

size_t versionSlot(std::string_view bucket, std::string_view key) {
  uint64_t h = 0xcbf29ce484222325ULL;
  auto feed = [&](unsigned char c) {
    h ^= c;
    h *= 0x100000001b3ULL;
  };
  for (unsigned char c : bucket) feed(c);
  feed(0);
  for (unsigned char c : key) feed(c);
  return static_cast<size_t>(h % VersionTable::kSlots);
}

VersionTable::VersionTable(std::string volume, void* map, size_t length, uint64_t* slots,
                           uint64_t createdAt)
    : volume_(std::move(volume)), map_(map), length_(length), slots_(slots), createdAt_(createdAt) {}

VersionTable::~VersionTable() { munmap(map_, length_); }

std::unique_ptr<VersionTable> VersionTable::open(const std::string& volume, std::string& error) {
  const std::string path = volume + "/versions";
  bool created = false;
  reload::Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (fd) {
    created = true;
    // Blocks, not a sparse file: a store into a hole of a shared mapping
    // on a full volume would be a SIGBUS, not an error.
    if (int err = posix_fallocate(fd.get(), 0, static_cast<off_t>(kLength)); err != 0) {
      error = "posix_fallocate " + path + ": " + std::strerror(err);
      unlink(path.c_str());
      return nullptr;
    }
  } else if (errno == EEXIST) {
    fd.reset(::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
      error = sysText("open " + path);
      return nullptr;
    }
  } else {
    error = sysText("create " + path);
    return nullptr;
  }
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) {
    error = sysText("fstat " + path);
    return nullptr;
  }
  if (!S_ISREG(st.st_mode)) {
    error = path + " is not a regular file";
    return nullptr;
  }
  // A table another process is creating right now is not ready yet (its
  // size or its magic is missing): the caller tries again later.
  if (static_cast<size_t>(st.st_size) != kLength) {
    error = path + " has " + std::to_string(st.st_size) + " bytes, not " + std::to_string(kLength);
    return nullptr;
  }
  void* map = mmap(nullptr, kLength, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (map == MAP_FAILED) {
    error = sysText("mmap " + path);
    return nullptr;
  }
  // Best effort: a table kept in memory never makes a GET wait for the disk.
  (void)mlock(map, kLength);
  auto* header = static_cast<Header*>(map);
  if (created) {
    header->slots = kSlots;
    header->createdAt = static_cast<uint64_t>(time(nullptr));
    // Publishes the fields above to every process that sees the magic.
    __atomic_store_n(&header->magic, magicWord(), __ATOMIC_RELEASE);
  }
  if (__atomic_load_n(&header->magic, __ATOMIC_ACQUIRE) != magicWord() || header->slots != kSlots) {
    munmap(map, kLength);
    error = path + " is not a version table of this layout (or is being created)";
    return nullptr;
  }
  auto* slots = reinterpret_cast<uint64_t*>(static_cast<char*>(map) + sizeof(Header));
  return std::unique_ptr<VersionTable>(
      new VersionTable(volume, map, kLength, slots, header->createdAt));
}

VersionWrite::VersionWrite(std::vector<VersionTable*> tables, size_t slot)
    : tables_(std::move(tables)), slot_(slot) {
  for (auto* t : tables_) t->beginWrite(slot_);
}

void VersionWrite::end() {
  if (ended_) return;
  ended_ = true;
  for (auto* t : tables_) t->endWrite(slot_);
}

void ObjectVersions::add(std::unique_ptr<VersionTable> table) {
  if (!table || covers(table->volume())) return;
  newestCreatedAt_ = std::max(newestCreatedAt_, table->createdAt());
  tables_.push_back(std::move(table));
}

bool ObjectVersions::covers(const std::string& volume) const {
  return std::any_of(tables_.begin(), tables_.end(),
                     [&](const auto& t) { return t->volume() == volume; });
}

bool ObjectVersions::trusted(uint64_t nowSeconds) const {
  if (tables_.empty()) return false;
  return static_cast<double>(nowSeconds) >=
         static_cast<double>(newestCreatedAt_) + trustAfterSeconds_;
}

VersionStamp ObjectVersions::stamp(size_t slot) const {
  VersionStamp s;
  s.tables = tables_.size();
  for (const auto& t : tables_) {
    uint64_t v = t->load(slot);
    s.sum += v & VersionTable::kVersionMask;
    s.writing = s.writing || (v >> 48) != 0;
  }
  return s;
}

std::unique_ptr<VersionWrite> ObjectVersions::beginWrite(size_t slot) const {
  std::vector<VersionTable*> tables;
  tables.reserve(tables_.size());
  for (const auto& t : tables_) tables.push_back(t.get());
  return std::make_unique<VersionWrite>(std::move(tables), slot);
}

}  // namespace server
