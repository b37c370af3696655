// The disk check of a root master: every name it touches in a volume,
// planted as a link to a file or directory of root's outside the volume,
// leaves that file as it was.
#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "object_store.h"
#include "volume_check.h"

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  BOOST_REQUIRE(out.good());
}

void run(const std::string& command) { BOOST_REQUIRE_MESSAGE(std::system(command.c_str()) == 0, command); }

// What a file or directory is, not following a link: its inode's state and
// its bytes (or, for a directory, what each of its names is). The link
// count is left out: removing a hard link planted in the volume (a stale
// temporary name) changes only that.
std::string snapshot(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return "absent";
  std::ostringstream out;
  out << st.st_ino << " " << std::oct << st.st_mode << std::dec << " " << st.st_uid << ":" << st.st_gid << " "
      << st.st_size << " " << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec;
  if (S_ISREG(st.st_mode)) out << " [" << slurp(path) << "]";
  if (S_ISDIR(st.st_mode))
    for (const char* name : {"data.mdb", "lock.mdb", "file"}) out << " {" << name << " " << snapshot(path + "/" + name) << "}";
  return out.str();
}

// Every path under `dir`, relative to it, not following links.
void walk(const std::string& dir, const std::string& rel, std::vector<std::string>& out) {
  DIR* d = opendir((dir + (rel.empty() ? "" : "/" + rel)).c_str());
  if (!d) return;
  std::vector<std::string> names;
  while (dirent* e = readdir(d))
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.emplace_back(e->d_name);
  closedir(d);
  for (const auto& name : names) {
    std::string child = rel.empty() ? name : rel + "/" + name;
    out.push_back(child);
    struct stat st {};
    if (lstat((dir + "/" + child).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) walk(dir, child, out);
  }
}

bool isDirectory(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void age(const std::string& path) {
  timespec old[2] = {{time(nullptr) - 600, 0}, {time(nullptr) - 600, 0}};
  BOOST_REQUIRE(utimensat(AT_FDCWD, path.c_str(), old, AT_SYMLINK_NOFOLLOW) == 0);
}

struct RootTree {
  RootTree() {
    std::fflush(stdout);  // else each forked check writes what is buffered again
    char tmpl[] = "/tmp/molt-volcheck-XXXXXX";
    root = mkdtemp(tmpl);
    BOOST_REQUIRE(chmod(root.c_str(), 0755) == 0);
    passwd* pw = getpwnam("nobody");
    BOOST_REQUIRE(pw != nullptr);
    uid = pw->pw_uid;
    gid = pw->pw_gid;
    decoy = root + "/decoy";
    writeFile(decoy, "a file of root's");
    BOOST_REQUIRE(chmod(decoy.c_str(), 0644) == 0);
    decoyDir = root + "/decoydir";
    BOOST_REQUIRE(mkdir(decoyDir.c_str(), 0755) == 0);
    for (const char* name : {"data.mdb", "lock.mdb", "file"}) writeFile(decoyDir + "/" + name, "root's too");
    volume = root + "/volume";
    templateVolume = root + "/template";
    settings.volumes = {volume};
    // A volume of nobody's with objects and a complete index, made by nobody.
    BOOST_REQUIRE(mkdir(templateVolume.c_str(), 0755) == 0);
    BOOST_REQUIRE(chown(templateVolume.c_str(), uid, gid) == 0);
    server::StorageSettings templateSettings;
    templateSettings.volumes = {templateVolume};
    server::VolumeCredentials nobody = server::volumeCredentials("nobody", templateVolume);
    server::runWithCredentials(nobody, [&] {
      server::ObjectStore store(templateSettings);
      for (const char* key : {"one", "two"}) {
        auto up = store.beginUpload("own", key);
        up->write(key, 3);
        server::ObjectMeta meta;
        meta.key = key;
        meta.size = 3;
        meta.etag = "e";
        up->commit(meta);
      }
      return std::to_string(store.list("own", "", "", 10).size());
    });
  }
  ~RootTree() {
    std::string cmd = "rm -rf '" + root + "'";
    if (std::system(cmd.c_str()) != 0) std::perror("cleanup");
  }
  // A fresh copy of the template at `volume`, its index damaged if asked.
  void freshVolume(bool damaged) {
    run("rm -rf '" + volume + "' && cp -a '" + templateVolume + "' '" + volume + "'");
    if (damaged) {
      std::string data = volume + "/index/data.mdb";
      std::string bytes = slurp(data);
      writeFile(data, std::string(bytes.size(), '\xa5'));
    }
  }
  // Every entry of the volume that is not nobody's (the decoy's own inode,
  // linked in by a case, aside).
  std::vector<std::string> notNobodys() {
    struct stat d {};
    BOOST_REQUIRE(stat(decoy.c_str(), &d) == 0);
    std::vector<std::string> all, out;
    walk(volume, "", all);
    for (const auto& rel : all) {
      struct stat st {};
      if (lstat((volume + "/" + rel).c_str(), &st) != 0) continue;
      if (st.st_ino == d.st_ino && st.st_dev == d.st_dev) continue;
      if (st.st_uid != uid) out.push_back(rel);
    }
    return out;
  }
  std::string root, decoy, decoyDir, volume, templateVolume;
  uid_t uid = 0;
  gid_t gid = 0;
  server::StorageSettings settings;
};

// Every name the check touches in a volume: those its inotify events name
// (in every directory the volume had), while it removes stale leftovers of
// each kind and rebuilds a damaged index, and every name there afterwards.
std::set<std::string> namesTheCheckTouches(RootTree& tree) {
  tree.freshVolume(true);
  const std::string& v = tree.volume;
  BOOST_REQUIRE(mkdir((v + "/index.new.AbCd12").c_str(), 0755) == 0);
  writeFile(v + "/index.new.AbCd12/file", "x");
  writeFile(v + "/index/lock.mdb.new.42", "");
  writeFile(v + "/tmp/123.0011223344556677.0.tmp", "partial");
  for (const char* name : {"/index.new.AbCd12/file", "/index.new.AbCd12", "/index/lock.mdb.new.42",
                           "/tmp/123.0011223344556677.0.tmp"})
    age(v + name);
  run("chown -R nobody: '" + v + "'");
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  BOOST_REQUIRE(fd >= 0);
  std::map<int, std::string> watched;
  std::vector<std::string> dirs{""};
  walk(v, "", dirs);
  for (const auto& rel : dirs) {
    if (!isDirectory(v + "/" + rel)) continue;
    int wd = inotify_add_watch(fd, (v + "/" + rel).c_str(), IN_ALL_EVENTS);
    BOOST_REQUIRE(wd >= 0);
    watched[wd] = rel;
  }
  std::string out = server::checkVolumes(tree.settings, "nobody", "start");
  BOOST_TEST_MESSAGE(out);
  BOOST_REQUIRE(out.find("rebuilt from its files") != std::string::npos);
  std::set<std::string> names;
  alignas(inotify_event) char buf[1 << 16];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) {
    for (char* p = buf; p < buf + n;) {
      auto* e = reinterpret_cast<inotify_event*>(p);
      std::string dir = watched[e->wd];
      if (e->len > 0) names.insert(dir.empty() ? e->name : dir + "/" + e->name);
      else if (!dir.empty()) names.insert(dir);
      p += sizeof(inotify_event) + e->len;
    }
  }
  close(fd);
  std::vector<std::string> after;
  walk(v, "", after);
  names.insert(after.begin(), after.end());
  return names;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(VolumeCheckTest)

BOOST_AUTO_TEST_CASE(a_root_check_follows_no_link_planted_at_any_name_it_touches) {
  if (geteuid() != 0) {
    BOOST_TEST_MESSAGE("skipped: needs root (a check that works as another user)");
    return;
  }
  RootTree tree;
  const auto names = namesTheCheckTouches(tree);
  for (const char* expected : {"index", "index/data.mdb", "index/lock.mdb", "index.lock", "index.damaged",
                               "index.damaged/data.mdb", "index.rebuilding", "index.new.AbCd12", "tmp"})
    BOOST_TEST(names.count(expected) == 1u, expected << " is among the names the check touches");
  size_t cases = 0;
  for (const auto& name : names) {
    for (const char* kind : {"link to a file", "link to a directory", "hard link"}) {
      for (bool damaged : {false, true}) {
        tree.freshVolume(damaged);
        const std::string at = tree.volume + "/" + name;
        const bool wasDirectory = isDirectory(at);
        if (std::string(kind) == "hard link" && wasDirectory) continue;
        run("rm -rf '" + at + "'");
        // Its directory, as a worker would make it (index.damaged is there
        // only after a rebuild).
        run("mkdir -p \"$(dirname '" + at + "')\" && chown -R nobody: '" + tree.volume + "'");
        if (std::string(kind) == "hard link") {
          BOOST_REQUIRE(link(tree.decoy.c_str(), at.c_str()) == 0);
        } else {
          const std::string& target = std::string(kind) == "link to a file" ? tree.decoy : tree.decoyDir;
          BOOST_REQUIRE(symlink(target.c_str(), at.c_str()) == 0);
          BOOST_REQUIRE(lchown(at.c_str(), tree.uid, tree.gid) == 0);
        }
        if (name.rfind("index.new.", 0) == 0 || name.find(".mdb.new.") != std::string::npos ||
            name.rfind("tmp/", 0) == 0)
          age(at);
        const std::string fileBefore = snapshot(tree.decoy), dirBefore = snapshot(tree.decoyDir);
        const std::string out = server::checkVolumes(tree.settings, "nobody", "start");
        const std::string what = name + " as a " + kind + (damaged ? ", index damaged" : "");
        BOOST_TEST(snapshot(tree.decoy) == fileBefore, what);
        BOOST_TEST(snapshot(tree.decoyDir) == dirBefore, what);
        // Whatever the check made is nobody's, and the volume is reported.
        BOOST_TEST(tree.notNobodys().empty(), what << ": " << tree.notNobodys().size() << " entries of another user");
        BOOST_TEST(out.find("volume\t" + tree.volume + "\t") != std::string::npos, what);
        ++cases;
      }
    }
  }
  BOOST_TEST_MESSAGE(cases << " cases over " << names.size() << " names");
  BOOST_TEST(cases > 40u);
}

// Leftovers of a rebuild cut short (older versions made new index files
// under temporary names) go, relative to directory descriptors: a link
// named like one is removed, and what it names is untouched.
BOOST_AUTO_TEST_CASE(stale_index_temporaries_go_and_a_link_named_like_one_is_only_removed) {
  char tmpl[] = "/tmp/molt-stale-XXXXXX";
  const std::string root = mkdtemp(tmpl);
  const std::string v = root + "/v";
  BOOST_REQUIRE(mkdir(v.c_str(), 0755) == 0);
  BOOST_REQUIRE(mkdir((v + "/index").c_str(), 0755) == 0);
  BOOST_REQUIRE(mkdir((root + "/target").c_str(), 0755) == 0);
  writeFile(root + "/target/file", "kept");
  writeFile(root + "/targetfile", "kept too");
  BOOST_REQUIRE(mkdir((v + "/index.new.Empty1").c_str(), 0700) == 0);
  BOOST_REQUIRE(mkdir((v + "/index.new.Full22").c_str(), 0755) == 0);
  BOOST_REQUIRE(mkdir((v + "/index.new.Full22/inner").c_str(), 0755) == 0);
  writeFile(v + "/index.new.Full22/data.mdb", "x");
  writeFile(v + "/index.new.Full22/inner/file", "x");
  BOOST_REQUIRE(symlink((root + "/target").c_str(), (v + "/index.new.Link33").c_str()) == 0);
  BOOST_REQUIRE(symlink((root + "/target").c_str(), (v + "/index.new.Full22/link").c_str()) == 0);
  writeFile(v + "/index/lock.mdb.new.4242", "");
  BOOST_REQUIRE(symlink((root + "/targetfile").c_str(), (v + "/index/data.mdb.new.4343").c_str()) == 0);
  for (const char* name : {"/index.new.Full22/inner/file", "/index.new.Full22/inner", "/index.new.Full22/data.mdb",
                           "/index.new.Full22/link", "/index.new.Full22", "/index.new.Empty1",
                           "/index.new.Link33", "/index/lock.mdb.new.4242", "/index/data.mdb.new.4343"})
    age(v + name);
  // Not stale: one just made (a rebuild may be making it), and names that
  // are not a rebuild's.
  BOOST_REQUIRE(mkdir((v + "/index.new.Young4").c_str(), 0755) == 0);
  BOOST_REQUIRE(mkdir((v + "/index.new.toolong5").c_str(), 0755) == 0);
  writeFile(v + "/index/lock.mdb.new.x1", "");
  age(v + "/index.new.toolong5");
  age(v + "/index/lock.mdb.new.x1");
  const std::string targetBefore = snapshot(root + "/target"), fileBefore = snapshot(root + "/targetfile");

  BOOST_TEST(server::ObjectStore::removeStaleIndexTemps(v) == 5u);

  for (const char* gone : {"/index.new.Empty1", "/index.new.Full22", "/index.new.Link33", "/index/lock.mdb.new.4242",
                           "/index/data.mdb.new.4343"})
    BOOST_TEST(snapshot(v + gone) == "absent", gone);
  for (const char* kept : {"/index.new.Young4", "/index.new.toolong5", "/index/lock.mdb.new.x1", "/index"})
    BOOST_TEST(snapshot(v + kept) != "absent", kept);
  BOOST_TEST(snapshot(root + "/target") == targetBefore);
  BOOST_TEST(snapshot(root + "/targetfile") == fileBefore);
  std::string cmd = "rm -rf '" + root + "'";
  BOOST_REQUIRE(std::system(cmd.c_str()) == 0);
}

// Index files a root worker of an earlier setup left (root's, in a
// directory only root can write) are given to the workers' user, so that
// they can open them; in a directory another user can write they are not.
BOOST_AUTO_TEST_CASE(a_root_index_of_an_earlier_setup_is_given_to_the_user_only_where_root_alone_writes) {
  if (geteuid() != 0) {
    BOOST_TEST_MESSAGE("skipped: needs root");
    return;
  }
  RootTree tree;
  for (mode_t mode : {0755, 0777}) {
    tree.freshVolume(false);
    run("chown -R root: '" + tree.volume + "/index'");
    BOOST_REQUIRE(chmod((tree.volume + "/index").c_str(), mode) == 0);
    const std::string out = server::checkVolumes(tree.settings, "nobody", "start");
    struct stat st {};
    BOOST_REQUIRE(stat((tree.volume + "/index/data.mdb").c_str(), &st) == 0);
    if (mode == 0755) {
      BOOST_TEST(st.st_uid == tree.uid);
      BOOST_TEST(tree.notNobodys().empty());
      BOOST_TEST(out.find("cannot check") == std::string::npos, out);
    } else {
      BOOST_TEST(st.st_uid == 0u);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
