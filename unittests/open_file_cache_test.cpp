#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "object_versions.h"
#include "open_file_cache.h"

namespace {

struct TempVolume {
  TempVolume() {
    char tmpl[] = "/tmp/molt-versions-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempVolume() { std::filesystem::remove_all(path); }
  std::string path;
};

std::unique_ptr<server::VersionTable> openTable(const std::string& volume) {
  std::string error;
  auto table = server::VersionTable::open(volume, error);
  BOOST_TEST_REQUIRE(static_cast<bool>(table), error);
  return table;
}

std::shared_ptr<server::CachedObject> smallObject(const std::string& bytes, size_t slot) {
  server::OpenObject opened;
  opened.meta.key = "k";
  opened.meta.size = bytes.size();
  opened.meta.etag = "e";
  opened.data = bytes;
  opened.dataLoaded = true;
  auto object = server::describeObject(std::move(opened));
  object->slot = slot;
  return object;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(OpenFileCacheTest)

BOOST_AUTO_TEST_CASE(a_table_is_shared_by_every_process_that_maps_it) {
  TempVolume volume;
  auto table = openTable(volume.path);
  const size_t slot = server::versionSlot("b", "k");
  pid_t child = fork();
  BOOST_TEST_REQUIRE(child >= 0);
  if (child == 0) {
    std::string error;
    auto other = server::VersionTable::open(volume.path, error);
    if (!other) _exit(2);
    other->beginWrite(slot);
    other->endWrite(slot);
    _exit(0);
  }
  int status = 0;
  BOOST_TEST_REQUIRE(waitpid(child, &status, 0) == child);
  BOOST_TEST_REQUIRE(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0);
  BOOST_TEST(table->load(slot) == 1u);  // one write, none in flight
  // A second mapping in this process (another image after an exec) sees it too.
  auto again = openTable(volume.path);
  BOOST_TEST(again->load(slot) == 1u);
  BOOST_TEST(again->createdAt() == table->createdAt());
}

BOOST_AUTO_TEST_CASE(a_table_of_another_layout_is_refused) {
  TempVolume volume;
  { auto table = openTable(volume.path); }
  BOOST_TEST_REQUIRE(truncate((volume.path + "/versions").c_str(), 100) == 0);
  std::string error;
  BOOST_TEST(!server::VersionTable::open(volume.path, error));
  BOOST_TEST(!error.empty());
}

BOOST_AUTO_TEST_CASE(every_write_state_changes_the_stamp) {
  TempVolume a, b;
  server::ObjectVersions versions;
  versions.add(openTable(a.path));
  const size_t slot = server::versionSlot("b", "k");
  auto before = versions.stamp(slot);
  BOOST_TEST(before.usable());
  auto write = versions.beginWrite(slot);
  auto during = versions.stamp(slot);
  BOOST_TEST(!during.usable());  // a writer in flight: nothing may be kept or used
  write->end();
  auto after = versions.stamp(slot);
  BOOST_TEST(after.usable());
  BOOST_TEST(!(after == before));
  // A write that is never ended explicitly is ended by its destructor.
  { auto dropped = versions.beginWrite(slot); }
  BOOST_TEST(versions.stamp(slot).usable());
  BOOST_TEST(!(versions.stamp(slot) == after));
  // A table added changes every stamp, even where its slot is 0.
  auto withOne = versions.stamp(slot);
  versions.add(openTable(b.path));
  BOOST_TEST(!(versions.stamp(slot) == withOne));
  // Another key's slot is untouched by these writes.
  size_t other = (slot + 1) % server::VersionTable::kSlots;
  BOOST_TEST(versions.stamp(other).sum == 0u);
}

BOOST_AUTO_TEST_CASE(trust_waits_for_the_tables_age) {
  TempVolume volume;
  server::ObjectVersions versions;
  BOOST_TEST(!versions.trusted(4000000000u));  // no table
  versions.add(openTable(volume.path));
  versions.setTrustAfter(30);
  const uint64_t created = static_cast<uint64_t>(time(nullptr));
  BOOST_TEST(!versions.trusted(created + 5));
  BOOST_TEST(versions.trusted(created + 31));
}

BOOST_AUTO_TEST_CASE(an_entry_is_used_only_while_its_key_is_unwritten) {
  TempVolume volume;
  server::ObjectVersions versions;
  versions.add(openTable(volume.path));
  server::OpenFileCache cache(versions, {});
  cache.setUsable(true);
  const size_t slot = server::versionSlot("b", "k");
  auto stamp = versions.stamp(slot);
  cache.keep("b", "k", smallObject("one", slot), stamp);
  auto hit = cache.find("b", "k", slot);
  BOOST_TEST_REQUIRE(static_cast<bool>(hit));
  BOOST_TEST(*hit->body == "one");
  BOOST_TEST(hit->headers.find("ETag: \"e\"\r\n") != std::string::npos);
  // A write in flight hides the entry; once it ended, the entry is gone.
  auto write = versions.beginWrite(slot);
  BOOST_TEST(!cache.find("b", "k", slot));
  write->end();
  BOOST_TEST(!cache.find("b", "k", slot));
  BOOST_TEST(cache.size() == 0u);
}

BOOST_AUTO_TEST_CASE(what_was_opened_across_a_write_is_not_kept) {
  TempVolume volume;
  server::ObjectVersions versions;
  versions.add(openTable(volume.path));
  server::OpenFileCache cache(versions, {});
  cache.setUsable(true);
  const size_t slot = server::versionSlot("b", "k");
  // The stamp is taken before the open; a write answered between the two
  // makes what was opened unfit to keep.
  auto before = versions.stamp(slot);
  versions.beginWrite(slot)->end();
  cache.keep("b", "k", smallObject("old", slot), before);
  BOOST_TEST(!cache.find("b", "k", slot));
  // Nor is what was opened while a writer was in flight.
  auto write = versions.beginWrite(slot);
  cache.keep("b", "k", smallObject("maybe", slot), versions.stamp(slot));
  write->end();
  BOOST_TEST(!cache.find("b", "k", slot));
  // A cache not usable keeps and finds nothing.
  cache.setUsable(false);
  cache.keep("b", "k", smallObject("x", slot), versions.stamp(slot));
  BOOST_TEST(cache.size() == 0u);
}

BOOST_AUTO_TEST_CASE(the_cache_is_bounded_and_sweeps_stale_entries) {
  TempVolume volume;
  server::ObjectVersions versions;
  versions.add(openTable(volume.path));
  server::OpenFileCache::Limits limits;
  limits.entries = 8;
  server::OpenFileCache cache(versions, limits);
  cache.setUsable(true);
  for (int i = 0; i < 20; ++i) {
    std::string key = "k" + std::to_string(i);
    size_t slot = server::versionSlot("b", key);
    cache.keep("b", key, smallObject(key, slot), versions.stamp(slot));
  }
  BOOST_TEST(cache.size() == 8u);
  BOOST_TEST(!cache.find("b", "k0", server::versionSlot("b", "k0")));  // least recent went first
  BOOST_TEST(static_cast<bool>(cache.find("b", "k19", server::versionSlot("b", "k19"))));
  versions.beginWrite(server::versionSlot("b", "k19"))->end();
  cache.sweep();
  BOOST_TEST(cache.size() <= 7u);
}

BOOST_AUTO_TEST_SUITE_END()
