#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdio>
#include <filesystem>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "http_handlers.h"
#include "http_request.h"
#include "object_key.h"
#include "moltd_service.h"
#include "object_store.h"

BOOST_AUTO_TEST_SUITE(ObjectTest)

BOOST_AUTO_TEST_CASE(key_validation) {
  BOOST_TEST(server::keyProblem("photos/2024/cat.jpg") == "");
  BOOST_TEST(server::keyProblem("a..b") == "");
  BOOST_TEST(server::keyProblem("") == "object key is empty");
  BOOST_TEST(server::keyProblem("../etc/passwd") == "object key may not contain '.' or '..' segments");
  BOOST_TEST(server::keyProblem("a/../b") == "object key may not contain '.' or '..' segments");
  BOOST_TEST(server::keyProblem("a/./b") == "object key may not contain '.' or '..' segments");
  BOOST_TEST(server::keyProblem(std::string("a\0b", 3)) == "object key contains a NUL byte");
  BOOST_TEST(server::keyProblem(std::string(1025, 'k')) == "object key is longer than 1024 bytes");
  BOOST_TEST(server::keyProblem(std::string(1024, 'k')) == "");
  BOOST_TEST(server::bucketProblem("my-bucket_1.x") == "");
  BOOST_TEST(server::bucketProblem("..") == "bucket name may not be '.' or '..'");
  BOOST_TEST(server::bucketProblem("has/slash") == "bucket names use letters, digits, '-', '_' and '.' only");
}

BOOST_AUTO_TEST_CASE(metrics_label_values_are_escaped) {
  // Every byte: the three the format names are escaped, the rest kept.
  for (int c = 1; c < 256; ++c) {
    std::string in(1, static_cast<char>(c));
    std::string want = c == '\\' ? "\\\\" : c == '"' ? "\\\"" : c == '\n' ? "\\n" : in;
    BOOST_TEST(server::prometheusLabelValue(in) == want, c);
  }
  BOOST_TEST(server::prometheusLabelValue("/srv/a\"} 1\nfake 2") == "/srv/a\\\"} 1\\nfake 2");
}

BOOST_AUTO_TEST_CASE(percent_coding) {
  BOOST_TEST(*server::percentDecode("a%20b%2Fc") == "a b/c");
  BOOST_TEST(!server::percentDecode("bad%2"));
  BOOST_TEST(!server::percentDecode("bad%zz"));
  BOOST_TEST(server::percentEncode("a b/c%") == "a%20b/c%25");
  auto path = server::parseObjectPath("/v1/bucket/dir/key");
  BOOST_TEST(path->bucket == "bucket");
  BOOST_TEST(path->key == "dir/key");
  BOOST_TEST(server::parseObjectPath("/v1/bucket")->key == "");
  BOOST_TEST(!server::parseObjectPath("/v2/bucket/key"));
}

// Every byte, escaped in either case, decodes to itself; the decoding into a
// string reused from a longer earlier value leaves nothing of that value.
BOOST_AUTO_TEST_CASE(percent_decoding_into_a_reused_string) {
  std::string out = std::string(300, 'z');
  const char* digits[] = {"0123456789ABCDEF", "0123456789abcdef"};
  for (int byte = 0; byte < 256; ++byte) {
    for (const char* hex : digits) {
      std::string escaped = std::string("a%") + hex[byte >> 4] + hex[byte & 15] + "b";
      BOOST_REQUIRE(server::percentDecodeInto(escaped, out));
      BOOST_TEST(out == std::string("a") + static_cast<char>(byte) + "b", byte);
      BOOST_TEST(*server::percentDecode(escaped) == out);
    }
    std::string plain(1, static_cast<char>(byte));
    BOOST_REQUIRE(server::percentDecodeInto(server::percentEncode(plain), out));
    BOOST_TEST(out == plain, byte);
  }
  for (std::string bad : {"%", "%2", "a%zz", "%g0", "%0g", "x%2"}) {
    BOOST_TEST(!server::percentDecodeInto(bad, out), bad);
    BOOST_TEST(!server::percentDecode(bad), bad);
  }
}

// Parsing into an ObjectPath that held another request's path gives what
// parseObjectPath gives, whatever was there before.
BOOST_AUTO_TEST_CASE(object_path_parsed_into_a_reused_one) {
  const std::vector<std::string> paths = {"/v1/b/k", "/v1/bucket", "/v1/bucket/", "/v1/b/dir/key/x",
                                          "/v1//k", "/v1/", "/v2/b/k", "/v1", "",
                                          "/v1/a-long-bucket-name/a/key/that/is/longer/than/sso"};
  for (const auto& before : paths) {
    for (const auto& path : paths) {
      server::ObjectPath reused;
      server::parseObjectPathInto(before, reused);
      auto fresh = server::parseObjectPath(path);
      BOOST_TEST(server::parseObjectPathInto(path, reused) == fresh.has_value(), before << " then " << path);
      if (!fresh) continue;
      BOOST_TEST(reused.bucket == fresh->bucket, before << " then " << path);
      BOOST_TEST(reused.key == fresh->key, before << " then " << path);
    }
  }
}

// A request cleared and filled again holds exactly its own fields, in
// order, whether their storage is new or kept from the last request.
BOOST_AUTO_TEST_CASE(request_fields_after_clear_are_the_new_ones) {
  server::Request request;
  const std::string big(4000, 'v');
  for (size_t first = 0; first <= 20; first += 5) {
    for (size_t second = 0; second <= 20; second += 5) {
      request.clear();
      for (size_t i = 0; i < first; ++i)
        request.addField("Old-" + std::to_string(i), i % 3 ? "an older value, longer than sso" : big);
      request.clear();
      BOOST_TEST(request.fields.empty());
      BOOST_TEST(!request.find("Old-0"));
      for (size_t i = 0; i < second; ++i) request.addField("F" + std::to_string(i), std::to_string(i));
      BOOST_REQUIRE_EQUAL(request.fields.size(), second);
      for (size_t i = 0; i < second; ++i) {
        BOOST_TEST(request.fields[i].first == "F" + std::to_string(i));
        BOOST_TEST(request.fields[i].second == std::to_string(i));
      }
      BOOST_TEST(!request.find("Old-1"));
    }
  }
}

BOOST_AUTO_TEST_CASE(range_parsing) {
  server::ByteRange r;
  using server::RangeResult;
  BOOST_TEST((server::parseRange("bytes=0-9", 100, r) == RangeResult::kSatisfiable));
  BOOST_TEST(r.first == 0u);
  BOOST_TEST(r.last == 9u);
  BOOST_TEST((server::parseRange("bytes=90-", 100, r) == RangeResult::kSatisfiable));
  BOOST_TEST(r.last == 99u);
  BOOST_TEST((server::parseRange("bytes=-10", 100, r) == RangeResult::kSatisfiable));
  BOOST_TEST(r.first == 90u);
  BOOST_TEST((server::parseRange("bytes=-500", 100, r) == RangeResult::kSatisfiable));
  BOOST_TEST(r.first == 0u);
  BOOST_TEST((server::parseRange("bytes=50-500", 100, r) == RangeResult::kSatisfiable));
  BOOST_TEST(r.last == 99u);
  BOOST_TEST((server::parseRange("bytes=100-", 100, r) == RangeResult::kUnsatisfiable));
  BOOST_TEST((server::parseRange("bytes=-0", 100, r) == RangeResult::kUnsatisfiable));
  BOOST_TEST((server::parseRange("bytes=0-1,5-6", 100, r) == RangeResult::kNone));
  BOOST_TEST((server::parseRange("bytes=9-1", 100, r) == RangeResult::kNone));
  BOOST_TEST((server::parseRange("items=0-1", 100, r) == RangeResult::kNone));
  BOOST_TEST((server::parseRange("bytes=x-1", 100, r) == RangeResult::kNone));
}

BOOST_AUTO_TEST_CASE(etag_lists) {
  BOOST_TEST(server::etagListMatches("\"abc\"", "abc"));
  BOOST_TEST(server::etagListMatches("\"x\", W/\"abc\"", "abc"));
  BOOST_TEST(server::etagListMatches("*", "abc"));
  BOOST_TEST(!server::etagListMatches("\"abd\"", "abc"));
}

BOOST_AUTO_TEST_CASE(metadata_round_trip) {
  server::ObjectMeta meta;
  meta.key = "dir/na me=\n%";
  meta.size = 12345;
  meta.etag = "d41d8cd98f00b204e9800998ecf8427e";
  meta.contentType = "text/plain; charset=utf-8";
  meta.timestamp = 1700000000.123456;
  meta.userMeta = {{"Color", "grey: dark"}, {"Empty", ""}};
  auto back = server::decodeMeta(server::encodeMeta(meta));
  BOOST_TEST(back.key == meta.key);
  BOOST_TEST(back.size == meta.size);
  BOOST_TEST(back.etag == meta.etag);
  BOOST_TEST(back.contentType == meta.contentType);
  BOOST_TEST(back.timestamp == meta.timestamp, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(back.userMeta == meta.userMeta);
  BOOST_CHECK_THROW(server::decodeMeta("size=1\n"), std::invalid_argument);
  // Damaged numbers are damage like any other, not std::out_of_range.
  BOOST_CHECK_THROW(server::decodeMeta("key=k\nsize=99999999999999999999999\n"), std::invalid_argument);
  BOOST_CHECK_THROW(server::decodeMeta("key=k\nsize=-1\n"), std::invalid_argument);
  BOOST_CHECK_THROW(server::decodeMeta("key=k\ntimestamp=1e999\n"), std::invalid_argument);
  BOOST_CHECK_THROW(server::decodeMeta("key=k\ntimestamp=5x\n"), std::invalid_argument);
  // Out of the range a time in microseconds can hold: damage, not a cast.
  for (const char* ts : {"1e19", "1e11", "9.3e12", "-1", "-1e19", "18446744073709551616"})
    BOOST_CHECK_THROW(server::decodeMeta(std::string("key=k\ntimestamp=") + ts + "\n"),
                      std::invalid_argument);
  BOOST_TEST(server::decodeMeta("key=k\ntimestamp=99999999999\n").timestamp == 99999999999.0);
}

// Adding a fifth volume moves about a fifth of the keys, and every moved key
// moves to the new volume: rendezvous hashing's promise.
BOOST_AUTO_TEST_CASE(placement_is_stable_when_a_volume_is_added) {
  std::vector<std::string> vols = {"/srv/a", "/srv/b", "/srv/c", "/srv/d"};
  auto best = [](const std::vector<std::string>& vs, const std::string& key) {
    std::string winner;
    uint64_t top = 0;
    for (const auto& v : vs) {
      uint64_t s = server::rendezvousScore(v, "bucket", key);
      if (winner.empty() || s > top) {
        winner = v;
        top = s;
      }
    }
    return winner;
  };
  const int n = 20000;
  std::map<std::string, int> perVolume;
  int moved = 0;
  for (int i = 0; i < n; ++i) {
    std::string key = "key-" + std::to_string(i);
    std::string before = best(vols, key);
    perVolume[before]++;
    auto more = vols;
    more.push_back("/srv/e");
    std::string after = best(more, key);
    if (after != before) {
      ++moved;
      BOOST_TEST(after == "/srv/e");
    }
  }
  BOOST_TEST(moved > n / 5 - n / 50);
  BOOST_TEST(moved < n / 5 + n / 50);
  for (const auto& [v, count] : perVolume) BOOST_TEST(count > n / 4 - n / 25, v);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(ObjectStoreTest)

struct TempVolumes {
  TempVolumes() {
    char tmpl[] = "/tmp/molt-store-XXXXXX";
    root = mkdtemp(tmpl);
    for (const char* name : {"/a", "/b"}) {
      std::string path = root + name;
      mkdir(path.c_str(), 0755);
      settings.volumes.push_back(path);
    }
  }
  ~TempVolumes() {
    std::string cmd = "rm -rf '" + root + "'";
    if (std::system(cmd.c_str()) != 0) std::perror("cleanup");
  }
  std::string root;
  server::StorageSettings settings;
};

void put(server::ObjectStore& store, const std::string& key, const std::string& data) {
  auto up = store.beginUpload("bucket", key);
  up->write(data.data(), data.size());
  server::ObjectMeta meta;
  meta.key = key;
  meta.size = data.size();
  meta.etag = "e";
  // Later writes carry later times, as the server's clock gives them.
  static double clock = 1000;
  meta.timestamp = ++clock;
  up->commit(meta);
}

BOOST_AUTO_TEST_CASE(listing_is_sorted_and_pages_with_marker) {
  TempVolumes vols;
  server::ObjectStore store(vols.settings);
  for (const char* key : {"m", "b", "a/2", "a/1", "z", "c"}) put(store, key, key);
  auto names = [&](const std::string& prefix, const std::string& marker, size_t limit) {
    std::vector<std::string> out;
    for (const auto& m : store.list("bucket", prefix, marker, limit)) out.push_back(m.key);
    return out;
  };
  BOOST_TEST(names("", "", 100) == std::vector<std::string>({"a/1", "a/2", "b", "c", "m", "z"}));
  BOOST_TEST(names("", "", 2) == std::vector<std::string>({"a/1", "a/2"}));
  BOOST_TEST(names("", "a/2", 2) == std::vector<std::string>({"b", "c"}));
  BOOST_TEST(names("", "c", 10) == std::vector<std::string>({"m", "z"}));
  BOOST_TEST(names("a/", "", 10) == std::vector<std::string>({"a/1", "a/2"}));
  BOOST_TEST(names("q", "", 10).empty());
}

// Object files on a volume's disk, whatever the store's own listing says.
size_t objectFilesOn(const std::string& volume) {
  size_t count = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(volume + "/objects", ec))
    if (entry.is_regular_file() && entry.path().extension() == ".obj") ++count;
  return count;
}

std::string readAll(const server::OpenObject& obj) {
  std::string data(obj.meta.size, '\0');
  BOOST_REQUIRE(pread(obj.fd.get(), data.data(), data.size(), 0) ==
                static_cast<ssize_t>(data.size()));
  return data;
}

BOOST_AUTO_TEST_CASE(objects_read_back_and_overwrite_leaves_one_copy) {
  TempVolumes vols;
  const std::string& a = vols.settings.volumes[0];
  const std::string& b = vols.settings.volumes[1];
  server::ObjectStore store(vols.settings);
  put(store, "k", "first");
  put(store, "k", "second, longer");
  auto obj = store.open("bucket", "k");
  BOOST_REQUIRE(obj);
  BOOST_TEST(readAll(*obj) == "second, longer");
  BOOST_TEST(objectFilesOn(a) + objectFilesOn(b) == 1u);
  BOOST_TEST(store.remove("bucket", "k"));
  BOOST_TEST(!store.open("bucket", "k"));
  BOOST_TEST(!store.remove("bucket", "k"));
  BOOST_TEST(objectFilesOn(a) + objectFilesOn(b) == 0u);
}

// A key first stored while only volume a existed is overwritten once b,
// which it prefers, is there: the copy on a must go.
BOOST_AUTO_TEST_CASE(overwrite_on_another_volume_removes_the_old_copy) {
  TempVolumes vols;
  const std::string& a = vols.settings.volumes[0];
  const std::string& b = vols.settings.volumes[1];
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    std::string candidate = "key-" + std::to_string(i);
    if (server::rendezvousScore(b, "bucket", candidate) > server::rendezvousScore(a, "bucket", candidate))
      key = candidate;
  }
  {
    server::StorageSettings onlyA = vols.settings;
    onlyA.volumes = {a};
    server::ObjectStore store(onlyA);
    put(store, key, "first");
  }
  BOOST_TEST(objectFilesOn(a) == 1u);
  BOOST_TEST(objectFilesOn(b) == 0u);
  server::ObjectStore store(vols.settings);
  BOOST_TEST(readAll(*store.open("bucket", key)) == "first");
  put(store, key, "second");
  BOOST_TEST(objectFilesOn(a) == 0u);
  BOOST_TEST(objectFilesOn(b) == 1u);
  BOOST_TEST(readAll(*store.open("bucket", key)) == "second");
}


// An upload placed on a volume the test chooses, written at `timestamp`.
std::unique_ptr<server::Upload> uploadOn(server::ObjectStore& store, const std::string& volume,
                                         const std::string& key, const std::string& data) {
  std::string tmp = volume + "/tmp";
  mkdir(tmp.c_str(), 0755);
  std::string path = tmp + "/test-" + key + "-" + std::to_string(rand()) + ".tmp";
  reload::Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  BOOST_REQUIRE(fd);
  auto up = std::make_unique<server::Upload>(store, volume, "bucket", key, path, std::move(fd));
  up->write(data.data(), data.size());
  return up;
}

server::ObjectMeta metaAt(const std::string& key, size_t size, double timestamp) {
  server::ObjectMeta meta;
  meta.key = key;
  meta.size = size;
  meta.etag = "e";
  meta.timestamp = timestamp;
  return meta;
}

// The preferred volume holds a copy older than the one on the other volume
// (one that could not be removed when the newer one was placed): reads
// take the newer.
BOOST_AUTO_TEST_CASE(reads_take_the_newest_copy_not_the_preferred_one) {
  TempVolumes vols;
  server::ObjectStore store(vols.settings);
  std::string key = "k";
  auto order = vols.settings.volumes;
  if (server::rendezvousScore(order[1], "bucket", key) > server::rendezvousScore(order[0], "bucket", key))
    std::swap(order[0], order[1]);
  // The stale copy a failed unlink leaves: an older write on the preferred
  // volume, kept aside while the newer one is placed, then put back.
  std::string rel = server::objectRelativePath("bucket", key);
  uploadOn(store, order[0], key, "old")->commit(metaAt(key, 3, 1000));
  std::filesystem::rename(order[0] + "/" + rel, order[0] + "/aside");
  uploadOn(store, order[1], key, "new")->commit(metaAt(key, 3, 2000));
  std::filesystem::rename(order[0] + "/aside", order[0] + "/" + rel);
  BOOST_TEST(objectFilesOn(order[0]) + objectFilesOn(order[1]) == 2u);
  auto obj = store.open("bucket", key);
  BOOST_REQUIRE(obj);
  BOOST_TEST(readAll(*obj) == "new");
  BOOST_TEST(obj->volume == order[1]);
  std::optional<server::OpenObject> cached;
  auto attempt = store.tryOpenCached("bucket", key, cached, true);
  if (attempt == server::ObjectStore::Attempt::kFound) BOOST_TEST(cached->data == "new");
}

// Two PUTs of one key placed on different volumes (workers that see the
// volumes differently): the one committed last but written first must not
// remove the newer copy, or both clients get 201 for an object read back
// old, or not at all.
BOOST_AUTO_TEST_CASE(a_commit_never_removes_a_newer_copy) {
  TempVolumes vols;
  const std::string& a = vols.settings.volumes[0];
  const std::string& b = vols.settings.volumes[1];
  server::ObjectStore first(vols.settings), second(vols.settings);
  auto older = uploadOn(first, a, "k", "older");
  auto newer = uploadOn(second, b, "k", "newer");
  newer->commit(metaAt("k", 5, 2000));
  older->commit(metaAt("k", 5, 1000));
  BOOST_TEST(objectFilesOn(b) == 1u);
  auto obj = first.open("bucket", "k");
  BOOST_REQUIRE(obj);
  BOOST_TEST(readAll(*obj) == "newer");
  // And the other way round the older copy goes.
  auto newest = uploadOn(first, a, "k", "newest");
  newest->commit(metaAt("k", 6, 3000));
  BOOST_TEST(objectFilesOn(b) == 0u);
  BOOST_TEST(readAll(*second.open("bucket", "k")) == "newest");
}


// Two PUTs of one key on different volumes stamped with the same time,
// both renamed into place before either removes the other's copy: each
// pass sees a copy as old as its own and must keep it, or both clients get
// 201 for an object that is gone. Here the later commit meets the earlier
// one's copy (the earlier saw none), with the volumes both ways round.
BOOST_AUTO_TEST_CASE(a_commit_keeps_a_copy_as_old_as_its_own) {
  for (size_t first : {0u, 1u}) {
    TempVolumes vols;
    const std::string& mine = vols.settings.volumes[first];
    const std::string& theirs = vols.settings.volumes[1 - first];
    server::ObjectStore one(vols.settings), other(vols.settings);
    uploadOn(other, theirs, "k", "theirs")->commit(metaAt("k", 6, 1000));
    uploadOn(one, mine, "k", "minee!")->commit(metaAt("k", 6, 1000));
    BOOST_TEST(objectFilesOn(mine) == 1u);
    BOOST_TEST(objectFilesOn(theirs) == 1u);
    auto seenByOne = one.open("bucket", "k");
    auto seenByOther = other.open("bucket", "k");
    BOOST_REQUIRE(seenByOne);
    BOOST_REQUIRE(seenByOther);
    BOOST_TEST(seenByOne->volume == seenByOther->volume);
    BOOST_TEST(readAll(*seenByOne) == readAll(*seenByOther));
  }
}


// A process with the PID of a dead one that left uploads behind: its own
// temp files never collide with theirs.
BOOST_AUTO_TEST_CASE(uploads_do_not_collide_with_leftovers_of_a_reused_pid) {
  TempVolumes vols;
  server::ObjectStore store(vols.settings);
  for (const auto& v : vols.settings.volumes) {
    std::filesystem::create_directories(v + "/tmp");
    for (int i = 0; i < 64; ++i) {
      std::string name = v + "/tmp/" + std::to_string(getpid()) + "." + std::to_string(i) + ".tmp";
      std::fclose(std::fopen(name.c_str(), "w"));
    }
  }
  for (int i = 0; i < 64; ++i) put(store, "k" + std::to_string(i), "data");
  for (int i = 0; i < 64; ++i) BOOST_TEST(readAll(*store.open("bucket", "k" + std::to_string(i))) == "data");
}

// While workers serve, only temp files nobody holds and older than the
// grace period go: a live upload's file stays, however idle.
BOOST_AUTO_TEST_CASE(cleaning_while_serving_spares_live_uploads) {
  TempVolumes vols;
  server::ObjectStore store(vols.settings);
  auto live = store.beginUpload("bucket", "live");
  live->write("partial", 7);
  std::string tmp = live->volume() + "/tmp";
  std::string dead = tmp + "/1.dead.0.tmp", young = tmp + "/1.young.0.tmp";
  std::fclose(std::fopen(dead.c_str(), "w"));
  std::fclose(std::fopen(young.c_str(), "w"));
  // Everything but the young file is made older than the grace period.
  struct timeval old[2] = {{time(nullptr) - 60, 0}, {time(nullptr) - 60, 0}};
  for (const auto& entry : std::filesystem::directory_iterator(tmp))
    if (entry.path() != young) BOOST_REQUIRE(utimes(entry.path().c_str(), old) == 0);
  BOOST_TEST(server::ObjectStore::removeTempFiles(store.volumes()) == 1u);
  BOOST_TEST(access(dead.c_str(), F_OK) != 0);
  BOOST_TEST(access(young.c_str(), F_OK) == 0);
  server::ObjectMeta meta;
  meta.key = "live";
  meta.size = 7;
  meta.etag = "e";
  live->commit(meta);
  BOOST_TEST(readAll(*store.open("bucket", "live")) == "partial");
}

// A worker's temp file between its creation and its lock, met by the check
// of a master that has just started (after an exec, its old workers still
// serving): it must stay, or the upload writes to an unlinked file and
// fails at its rename. Every cleaning spares files younger than the grace.
BOOST_AUTO_TEST_CASE(no_cleaning_removes_a_file_not_yet_locked) {
  TempVolumes vols;
  server::ObjectStore store(vols.settings);
  std::string tmp = vols.settings.volumes[0] + "/tmp";
  BOOST_REQUIRE(mkdir(tmp.c_str(), 0755) == 0);
  std::string fresh = tmp + "/1.fresh.0.tmp";
  reload::Fd fd(::open(fresh.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  BOOST_REQUIRE(fd);
  BOOST_TEST(server::ObjectStore::removeTempFiles(store.volumes()) == 0u);
  BOOST_TEST(access(fresh.c_str(), F_OK) == 0);
  // Once past the grace and still unlocked, it is a dead upload's.
  struct timeval old[2] = {{time(nullptr) - 60, 0}, {time(nullptr) - 60, 0}};
  BOOST_REQUIRE(utimes(fresh.c_str(), old) == 0);
  BOOST_TEST(server::ObjectStore::removeTempFiles(store.volumes()) == 1u);
  BOOST_TEST(access(fresh.c_str(), F_OK) != 0);
}

// VOLUME/tmp made a link to another directory: the cleaner removes nothing
// there (it reads VOLUME/tmp relative to the volume, following no link),
// and a link named like a temp file is not followed either.
BOOST_AUTO_TEST_CASE(cleaning_follows_no_link_at_tmp) {
  TempVolumes vols;
  const std::string elsewhere = vols.root + "/elsewhere";
  BOOST_REQUIRE(mkdir(elsewhere.c_str(), 0755) == 0);
  const std::string victim = elsewhere + "/1.victim.0.tmp";
  { reload::Fd fd(::open(victim.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)); BOOST_REQUIRE(fd); }
  struct timeval old[2] = {{time(nullptr) - 60, 0}, {time(nullptr) - 60, 0}};
  BOOST_REQUIRE(utimes(victim.c_str(), old) == 0);
  const std::string& a = vols.settings.volumes[0];
  const std::string& b = vols.settings.volumes[1];
  BOOST_REQUIRE(symlink(elsewhere.c_str(), (a + "/tmp").c_str()) == 0);
  BOOST_REQUIRE(mkdir((b + "/tmp").c_str(), 0755) == 0);
  BOOST_REQUIRE(symlink(victim.c_str(), (b + "/tmp/2.link.0.tmp").c_str()) == 0);
  server::ObjectStore store(vols.settings);
  BOOST_TEST(server::ObjectStore::removeTempFiles(store.volumes()) == 0u);
  BOOST_TEST(access(victim.c_str(), F_OK) == 0);
  // Uploads do not go where such a tmp leads: the volume is not writable.
  auto volumes = store.volumes();
  BOOST_REQUIRE(volumes.size() == 2u);
  BOOST_TEST(!volumes[0].writable);
  BOOST_TEST(volumes[0].problem == "tmp is not a directory");
  BOOST_TEST(volumes[1].writable);
}

BOOST_AUTO_TEST_CASE(an_abandoned_upload_leaves_nothing) {
  TempVolumes vols;
  server::ObjectStore store(vols.settings);
  {
    auto up = store.beginUpload("bucket", "gone");
    up->write("partial", 7);
  }
  BOOST_TEST(!store.open("bucket", "gone"));
  BOOST_TEST(server::ObjectStore::removeTempFiles(store.volumes()) == 0u);
}

// A commit's caller may let go of its upload while the upload waits for a
// batch of its volume (a client that left): the placement holds the upload
// until it has ended, and the object is placed.
BOOST_AUTO_TEST_CASE(an_upload_let_go_of_while_its_commit_waits_is_still_placed) {
  TempVolumes vols;
  vols.settings.volumes.resize(1);  // one volume: both uploads share its group commit
  server::ObjectStore store(vols.settings);
  auto first = store.beginUpload("bucket", "first");
  first->write("one", 3);
  std::shared_ptr<server::Upload> second = store.beginUpload("bucket", "second");
  second->write("pay", 3);  // the rest comes with the commit
  std::weak_ptr<server::Upload> watch = second;
  bool secondEnded = false;
  std::exception_ptr secondFailure;
  bool heldWhileQueued = false;
  first->commitAsync(metaAt("first", 3, 1000), {}, [&](std::exception_ptr firstFailure) {
    BOOST_TEST(!firstFailure);
    // Inside the first batch, on its leader: the second waits for the next one.
    second->commitAsync(metaAt("second", 7, 1001), "load", [&](std::exception_ptr failure) {
      secondEnded = true;
      secondFailure = failure;
    });
    BOOST_TEST(!secondEnded);
    second.reset();
    heldWhileQueued = !watch.expired();
  });
  // This thread led both batches.
  BOOST_TEST(heldWhileQueued);
  BOOST_TEST(secondEnded);
  BOOST_TEST(!secondFailure);
  BOOST_TEST(watch.expired());
  auto obj = store.open("bucket", "second");
  BOOST_REQUIRE(obj);
  BOOST_TEST(readAll(*obj) == "payload");
  BOOST_TEST(std::filesystem::is_empty(vols.settings.volumes[0] + "/tmp"));
}

BOOST_AUTO_TEST_SUITE_END()
