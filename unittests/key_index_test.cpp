#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <lmdb.h>

#include "key_index.h"
#include "object_store.h"

namespace {

struct Volumes {
  explicit Volumes(int count) {
    char tmpl[] = "/tmp/molt-index-XXXXXX";
    root = mkdtemp(tmpl);
    for (int i = 0; i < count; ++i) {
      std::string path = root + "/v" + std::to_string(i);
      mkdir(path.c_str(), 0755);
      settings.volumes.push_back(path);
    }
  }
  ~Volumes() {
    std::string cmd = "rm -rf '" + root + "'";
    if (std::system(cmd.c_str()) != 0) std::perror("cleanup");
  }
  std::string root;
  server::StorageSettings settings;
};

void put(server::ObjectStore& store, const std::string& bucket, const std::string& key) {
  auto up = store.beginUpload(bucket, key);
  up->write(key.data(), key.size());
  server::ObjectMeta meta;
  meta.key = key;
  meta.size = key.size();
  meta.etag = "e";
  up->commit(meta);
}

std::vector<std::string> names(const server::ObjectStore& store, const std::string& bucket,
                               const std::string& prefix, const std::string& marker, size_t limit) {
  std::vector<std::string> out;
  for (const auto& m : store.list(bucket, prefix, marker, limit)) out.push_back(m.key);
  return out;
}

// Object files on a volume.
size_t objectFiles(const std::string& volume) {
  std::string cmd = "find '" + volume + "/objects' -name '*.obj' | wc -l";
  FILE* p = popen(cmd.c_str(), "r");
  size_t n = 0;
  if (p && std::fscanf(p, "%zu", &n) != 1) n = 0;
  if (p) pclose(p);
  return n;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(KeyIndexTest)

// How many entries another process finds committed in the index: a child
// reads the files on its own, read-only, as another worker would.
long committedEntries(const std::string& volume) {
  pid_t child = fork();
  if (child == 0) {
    alarm(20);
    MDB_env* env = nullptr;
    MDB_txn* txn = nullptr;
    MDB_dbi dbi = 0;
    MDB_stat stat{};
    if (mdb_env_create(&env) != 0 ||
        mdb_env_open(env, (volume + "/index").c_str(), MDB_RDONLY | MDB_NOTLS, 0644) != 0 ||
        mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn) != 0 || mdb_dbi_open(txn, nullptr, 0, &dbi) != 0 ||
        mdb_stat(txn, dbi, &stat) != 0)
      _exit(255);
    _exit(static_cast<int>(std::min<size_t>(stat.ms_entries, 200)));
  }
  int status = 0;
  if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status) == 255 ? -1 : WEXITSTATUS(status);
}

BOOST_AUTO_TEST_CASE(a_batch_places_no_new_key_before_its_entry_is_committed) {
  Volumes vols(1);
  const std::string vol = vols.settings.volumes[0];
  server::KeyIndex index(vol);
  index.add("bk", "old");
  // Two uploads of one new key in one batch (a client's retry), beside a
  // key already indexed and another new one.
  std::vector<std::pair<std::string, std::string>> batch{
      {"bk", "new"}, {"bk", "new"}, {"bk", "old"}, {"bk", "other"}};
  std::vector<int> placedCount(batch.size());
  std::vector<long> committedWhenPlaced(batch.size(), -1);
  index.placeAllIndexed(batch, [&](size_t i) {
    ++placedCount[i];
    committedWhenPlaced[i] = committedEntries(vol);
  });
  long committed = committedEntries(vol);
  BOOST_TEST(committed >= 3);  // old, new, other (and any marker)
  for (size_t i = 0; i < batch.size(); ++i) {
    BOOST_TEST(placedCount[i] == 1);
    bool isNew = batch[i].second != "old";  // an indexed key may be placed at once
    BOOST_TEST((isNew ? committedWhenPlaced[i] == committed : committedWhenPlaced[i] >= 1),
               "item " << i << " (" << batch[i].second << ") placed when " << committedWhenPlaced[i]
                       << " of " << committed << " entries were committed");
  }
}

BOOST_AUTO_TEST_CASE(index_orders_keys_per_bucket_from_a_marker) {
  Volumes vols(1);
  server::KeyIndex index(vols.settings.volumes[0]);
  for (const char* key : {"b", "a/2", "a/1", "c", "a"}) index.add("bk", key);
  index.add("bk2", "a");
  index.add("b", "zz");  // a bucket whose name is a prefix of another
  using V = std::vector<std::string>;
  BOOST_TEST(index.keysAfter("bk", "", "", 10) == V({"a", "a/1", "a/2", "b", "c"}));
  BOOST_TEST(index.keysAfter("bk", "a", "", 2) == V({"a/1", "a/2"}));
  BOOST_TEST(index.keysAfter("bk", "", "a/", 10) == V({"a/1", "a/2"}));
  BOOST_TEST(index.keysAfter("bk", "a/1", "a/", 10) == V({"a/2"}));
  BOOST_TEST(index.keysAfter("b", "", "", 10) == V({"zz"}));
  index.remove("bk", "a/1");
  BOOST_TEST(index.keysAfter("bk", "", "a/", 10) == V({"a/2"}));
  BOOST_TEST(!index.complete());
  index.markComplete();
  BOOST_TEST(index.complete());
  BOOST_TEST(index.keysAfter("bk", "", "", 0).empty());
}

BOOST_AUTO_TEST_CASE(listing_merges_volumes_and_pages) {
  Volumes vols(3);
  server::ObjectStore store(vols.settings);
  std::vector<std::string> keys;
  for (int i = 0; i < 60; ++i) {
    char key[16];
    std::snprintf(key, sizeof key, "k%03d", i);
    keys.push_back(key);
    put(store, "bucket", key);
  }
  put(store, "other", "k000");
  size_t spread = 0;
  for (const auto& v : vols.settings.volumes) spread += objectFiles(v) > 0 ? 1 : 0;
  BOOST_TEST(spread == 3u);  // the merge has something to merge
  BOOST_TEST(names(store, "bucket", "", "", 100) == keys);
  std::vector<std::string> paged;
  std::string marker;
  for (;;) {
    auto page = names(store, "bucket", "", marker, 7);
    if (page.empty()) break;
    BOOST_TEST(page.size() <= 7u);
    paged.insert(paged.end(), page.begin(), page.end());
    marker = page.back();
  }
  BOOST_TEST(paged == keys);
  BOOST_TEST(names(store, "bucket", "k05", "", 100) ==
             std::vector<std::string>(keys.begin() + 50, keys.begin() + 60));
  BOOST_TEST(names(store, "other", "", "", 10) == std::vector<std::string>({"k000"}));
}

BOOST_AUTO_TEST_CASE(entries_whose_object_is_gone_are_skipped_and_dropped) {
  Volumes vols(1);
  server::ObjectStore store(vols.settings);
  for (const char* key : {"a", "b", "c", "d"}) put(store, "bucket", key);
  // Objects removed behind the store's back (as a crash between the index
  // write and the rename would leave them): the listing still fills its page.
  std::string vol = vols.settings.volumes[0];
  for (const char* key : {"a", "b"})
    BOOST_REQUIRE(unlink((vol + "/" + server::objectRelativePath("bucket", key)).c_str()) == 0);
  BOOST_TEST(names(store, "bucket", "", "", 2) == std::vector<std::string>({"c", "d"}));
  BOOST_TEST(store.remove("bucket", "c"));
  BOOST_TEST(names(store, "bucket", "", "", 10) == std::vector<std::string>({"d"}));
}

BOOST_AUTO_TEST_CASE(a_volume_with_objects_but_no_index_gets_one) {
  Volumes vols(2);
  {
    server::ObjectStore store(vols.settings);
    for (const char* key : {"x", "y", "z", "w"}) put(store, "bucket", key);
  }
  for (const auto& v : vols.settings.volumes) {
    std::string cmd = "rm -rf '" + v + "/index'";
    BOOST_REQUIRE(std::system(cmd.c_str()) == 0);
  }
  server::ObjectStore store(vols.settings);
  BOOST_TEST(names(store, "bucket", "", "", 10) == std::vector<std::string>({"w", "x", "y", "z"}));
  for (const auto& v : vols.settings.volumes) {
    struct stat st {};
    BOOST_TEST(stat((v + "/index/data.mdb").c_str(), &st) == 0);
  }
}


// A damaged data.mdb met by a running store (a volume it opens): the index
// is rebuilt from the files; the volume is unhealthy while the rebuild's
// marker is there, and writes and listings go on.
BOOST_AUTO_TEST_CASE(a_damaged_index_is_rebuilt_when_the_volume_opens) {
  Volumes vols(1);
  std::string vol = vols.settings.volumes[0];
  {
    server::ObjectStore store(vols.settings);
    for (const char* key : {"a", "b", "c"}) put(store, "bucket", key);
  }
  {
    FILE* f = std::fopen((vol + "/index/data.mdb").c_str(), "r+b");
    BOOST_REQUIRE(f);
    std::string garbage(8192, '\x5a');
    BOOST_REQUIRE(std::fwrite(garbage.data(), 1, garbage.size(), f) == garbage.size());
    std::fclose(f);
  }
  BOOST_CHECK_THROW(server::KeyIndex index(vol), server::IndexDamaged);
  server::ObjectStore store(vols.settings);
  put(store, "bucket", "d");
  BOOST_TEST(names(store, "bucket", "", "", 10) == std::vector<std::string>({"a", "b", "c", "d"}));
  struct stat st {};
  BOOST_TEST(stat((vol + "/index.damaged/data.mdb").c_str(), &st) == 0);
  BOOST_TEST(!server::ObjectStore::rebuildPending(vol));
  BOOST_TEST(server::scanVolumes(vols.settings).at(0).writable);
}

BOOST_AUTO_TEST_CASE(a_rebuild_cut_short_marks_the_volume_and_is_redone) {
  Volumes vols(1);
  std::string vol = vols.settings.volumes[0];
  {
    server::ObjectStore store(vols.settings);
    for (const char* key : {"a", "b"}) put(store, "bucket", key);
  }
  std::fclose(std::fopen((vol + "/index.rebuilding").c_str(), "w"));  // a crash mid-rebuild
  auto scanned = server::scanVolumes(vols.settings).at(0);
  BOOST_TEST(!scanned.writable);
  BOOST_TEST(scanned.problem.find("key index") != std::string::npos, scanned.problem);
  auto lines = server::ObjectStore::repairIndexes(server::scanVolumes(vols.settings));
  BOOST_REQUIRE(lines.size() == 1u);
  BOOST_TEST(lines[0].find("rebuilt from its files") != std::string::npos, lines[0]);
  BOOST_TEST(server::scanVolumes(vols.settings).at(0).writable);
  server::ObjectStore store(vols.settings);
  BOOST_TEST(names(store, "bucket", "", "", 10) == std::vector<std::string>({"a", "b"}));
}

// Long keys: the bounded entries keep the order of the full keys, also
// among keys that share the prefix the entry keeps, from any marker.
BOOST_AUTO_TEST_CASE(long_keys_list_in_order_from_every_marker) {
  Volumes vols(1);
  server::KeyIndex index(vols.settings.volumes[0]);
  std::string base(server::KeyIndex::kEntryKeyPrefix, 'p');
  std::vector<std::string> keys = {base.substr(0, 10), base, base + "a", base + "b" + std::string(600, 'z'),
                                   base + "b", base + "\xff", base + "c", std::string(1024, 'q'),
                                   base.substr(0, 399) + "q" + std::string(600, 'a'), "a", "z"};
  for (int i = 0; i < 30; ++i) keys.push_back(base + std::to_string(i * 7919 % 1000));
  for (const auto& k : keys) index.add("bk", k);
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  BOOST_TEST(index.keysAfter("bk", "", "", 1000) == keys);
  for (size_t i = 0; i < keys.size(); ++i) {
    std::vector<std::string> rest(keys.begin() + static_cast<long>(i) + 1, keys.end());
    BOOST_TEST(index.keysAfter("bk", keys[i], "", 1000) == rest, i);
    std::vector<std::string> two(rest.begin(), rest.begin() + static_cast<long>(std::min<size_t>(2, rest.size())));
    BOOST_TEST(index.keysAfter("bk", keys[i], "", 2) == two, i);
  }
  for (const std::string& prefix : {base, base + "b", base + "1", std::string("q"), base.substr(0, 399) + "q"}) {
    std::vector<std::string> want;
    for (const auto& k : keys)
      if (k.compare(0, prefix.size(), prefix) == 0) want.push_back(k);
    BOOST_TEST(index.keysAfter("bk", "", prefix, 1000) == want, prefix.size());
  }
  index.remove("bk", base + "b" + std::string(600, 'z'));
  BOOST_TEST(index.keysAfter("bk", base + "b", "", 1).at(0) == base + "c");
}

// Another process's rebuild: the files move aside and a new index takes
// their place while this KeyIndex still holds the old ones. Each of its
// writes and reads then follows to the new index, in place.
BOOST_AUTO_TEST_CASE(an_index_replaced_underneath_is_followed_by_every_use) {
  Volumes vols(1);
  std::string vol = vols.settings.volumes[0];
  server::KeyIndex held(vol);
  held.add("b", "before");
  ino_t oldInode = held.directoryInode();
  BOOST_REQUIRE(rename((vol + "/index").c_str(), (vol + "/index.damaged").c_str()) == 0);
  {
    server::KeyIndex rebuilt(vol);  // other files: the rebuilder's new index
    rebuilt.add("b", "rebuilt");
  }
  held.add("b", "after");
  BOOST_TEST(held.directoryInode() != oldInode);
  bool placed = false;
  held.placeIndexed("b", "placed", [&] { placed = true; });
  BOOST_TEST(placed);
  BOOST_TEST(held.dropIfGone("b", "rebuilt", [] { return true; }));
  BOOST_TEST(held.keysAfter("b", "", "", 10) == std::vector<std::string>({"after", "placed"}));
  // The old files got none of it.
  BOOST_REQUIRE(rename((vol + "/index").c_str(), (vol + "/index.new").c_str()) == 0);
  BOOST_REQUIRE(rename((vol + "/index.damaged").c_str(), (vol + "/index").c_str()) == 0);
  server::KeyIndex old(vol);
  BOOST_TEST(old.keysAfter("b", "", "", 10) == std::vector<std::string>({"before"}));
}

// A read-only use follows too: a listing never reads files a rebuild left.
BOOST_AUTO_TEST_CASE(a_listing_follows_a_replaced_index) {
  Volumes vols(1);
  std::string vol = vols.settings.volumes[0];
  server::KeyIndex held(vol);
  held.add("b", "old");
  BOOST_REQUIRE(rename((vol + "/index").c_str(), (vol + "/index.damaged").c_str()) == 0);
  {
    server::KeyIndex rebuilt(vol);
    rebuilt.add("b", "new");
  }
  BOOST_TEST(held.keysAfter("b", "", "", 10) == std::vector<std::string>({"new"}));
}

// replaceFiles moves the files while it holds their write lock and leaves
// the same KeyIndex on a new, empty index.
BOOST_AUTO_TEST_CASE(replace_files_leaves_a_new_index_in_place) {
  Volumes vols(1);
  std::string vol = vols.settings.volumes[0];
  server::KeyIndex index(vol);
  index.add("b", "x");
  bool moved = false;
  index.replaceFiles([&] {
    moved = rename((vol + "/index").c_str(), (vol + "/index.damaged").c_str()) == 0;
  });
  BOOST_TEST(moved);
  BOOST_TEST(index.keysAfter("b", "", "", 10).empty());
  index.add("b", "y");
  BOOST_TEST(index.keysAfter("b", "", "", 10) == std::vector<std::string>({"y"}));
}

// The directories that hold the files named `name` this process has open
// (their paths now, read from /proc/self/fd), one per descriptor.
std::vector<std::string> directoriesOfOpen(const std::string& name) {
  std::vector<std::string> dirs;
  DIR* fds = opendir("/proc/self/fd");
  BOOST_REQUIRE(fds != nullptr);
  while (dirent* e = readdir(fds)) {
    if (e->d_name[0] == '.') continue;
    char target[PATH_MAX];
    ssize_t n = readlinkat(dirfd(fds), e->d_name, target, sizeof target - 1);
    if (n <= 0) continue;  // the descriptor of the listing itself, closed by now
    std::string path(target, static_cast<size_t>(n));
    const std::string tail = "/" + name;
    if (path.size() > tail.size() && path.compare(path.size() - tail.size(), tail.size(), tail) == 0)
      dirs.push_back(path.substr(0, path.size() - tail.size()));
  }
  closedir(fds);
  return dirs;
}

// A rebuild (in another process) moves VOLUME/index aside and creates a
// new index in its place while this one opens the index: the environment
// opened must take its lock file and its data file from one directory, or
// two write locks guard one data file. Another thread plays the rebuilder,
// moving the directory at a moment that sweeps across each open.
BOOST_AUTO_TEST_CASE(an_open_racing_a_rebuild_takes_lock_and_data_from_one_directory) {
  using Clock = std::chrono::steady_clock;
  Volumes vols(1);
  const std::string vol = vols.settings.volumes[0];
  const std::string dir = vol + "/index";
  std::mutex moving;  // held by each move, and while an open's files are read
  std::atomic<unsigned> opensStarted{0};
  std::atomic<unsigned> moves{0};
  std::atomic<bool> stop{false};
  std::thread rebuilder([&] {
    unsigned seen = 0;
    for (unsigned n = 0; !stop; ++n) {
      unsigned started = opensStarted.load();
      if (started == seen) {
        std::this_thread::yield();
        continue;
      }
      seen = started;
      const auto at = Clock::now() + std::chrono::microseconds((n * 37) % 300);
      while (Clock::now() < at) {
      }
      std::lock_guard<std::mutex> hold(moving);
      std::string aside = vol + "/index.moved" + std::to_string(n);
      if (rename(dir.c_str(), aside.c_str()) != 0) continue;  // none there yet
      ++moves;
      if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) std::perror("mkdir");
    }
  });
  unsigned opens = 0, failedOpens = 0, split = 0;
  std::string example;
  const auto deadline = Clock::now() + std::chrono::seconds(15);
  while (moves < 400 && Clock::now() < deadline) {
    ++opensStarted;
    try {
      server::KeyIndex index(vol);
      ++opens;
      std::lock_guard<std::mutex> hold(moving);
      // LMDB holds the data file twice (one descriptor for its meta-page writes).
      auto files = directoriesOfOpen("lock.mdb");
      const size_t locks = files.size();
      for (auto& d : directoriesOfOpen("data.mdb")) files.push_back(d);
      bool oneDirectory = locks == 1 && files.size() > 1 &&
                          std::all_of(files.begin(), files.end(), [&](const std::string& d) { return d == files[0]; });
      if (!oneDirectory && split++ == 0) {
        example = std::to_string(locks) + " lock files, then data files:";
        for (const auto& d : files) example += " " + d;
      }
    } catch (const std::system_error& e) {
      if (failedOpens++ == 0) example += std::string(example.empty() ? "" : "; ") + "failed: " + e.what();
    }
  }
  stop = true;
  rebuilder.join();
  BOOST_TEST_MESSAGE(opens << " opens, " << failedOpens << " failed, " << moves << " moves, " << split
                           << " split");
  BOOST_TEST(moves >= 300u, "the rebuilder moved the index only " << moves << " times");
  BOOST_TEST(split == 0u, split << " of " << opens << " opens held files of two directories, e.g. " << example);
  // The directory gone for a moment (moved, its successor not made yet) is
  // no reason for an open to fail either.
  BOOST_TEST(failedOpens == 0u, failedOpens << " opens failed, e.g. " << example);
}

BOOST_AUTO_TEST_CASE(a_deferred_index_opens_on_demand) {
  Volumes vols(1);
  server::KeyIndex index(vols.settings.volumes[0], server::KeyIndex::kDeferred);
  BOOST_TEST(!index.isOpen());
  BOOST_CHECK_THROW(index.add("b", "x"), server::IndexPanicked);
  index.openCurrent();
  BOOST_TEST(index.isOpen());
  index.add("b", "x");
  BOOST_TEST(index.keysAfter("b", "", "", 10) == std::vector<std::string>({"x"}));
}

BOOST_AUTO_TEST_SUITE_END()
