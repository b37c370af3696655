#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>

#include "reload/pid_file.h"

using reload::PidFile;

namespace {

// A private directory (mode 0700, ours) removed with everything in it.
struct TempDir {
  TempDir() {
    char templ[] = "/tmp/pidfile-test-XXXXXX";
    BOOST_REQUIRE(mkdtemp(templ) != nullptr);
    path = templ;
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string path;
};

std::string contentsOf(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  BOOST_REQUIRE(out);
}

std::set<std::string> entries(const std::string& dir) {
  std::set<std::string> names;
  DIR* d = opendir(dir.c_str());
  BOOST_REQUIRE(d != nullptr);
  while (dirent* e = readdir(d))
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.insert(e->d_name);
  closedir(d);
  return names;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(PidFileTest)

// Every mode and every kind of owner: a directory may hold the pid file
// exactly when root or we own it and neither group nor others can write it.
BOOST_AUTO_TEST_CASE(DirectoryRuleForEveryModeAndOwner) {
  const uid_t self = 1000;
  for (uid_t owner : {uid_t{0}, self, uid_t{1001}}) {
    for (mode_t perms = 0; perms <= 07777; ++perms) {
      for (mode_t type : {mode_t{S_IFDIR}, mode_t{S_IFREG}, mode_t{S_IFLNK}}) {
        bool safe = type == S_IFDIR && (owner == 0 || owner == self) &&
                    (perms & (S_IWGRP | S_IWOTH)) == 0;
        std::string problem = PidFile::directoryProblem(type | perms, owner, self);
        BOOST_CHECK_MESSAGE(problem.empty() == safe, "mode " << std::oct << (type | perms)
                                                             << std::dec << " owner " << owner
                                                             << ": '" << problem << "'");
      }
    }
  }
  // The reason names what is wrong.
  BOOST_TEST(PidFile::directoryProblem(S_IFDIR | 01777, 0, self).find("writable by anyone (mode 1777)") !=
             std::string::npos);
  BOOST_TEST(PidFile::directoryProblem(S_IFDIR | 0775, self, self).find("writable by its group") !=
             std::string::npos);
  BOOST_TEST(PidFile::directoryProblem(S_IFDIR | 0755, 1001, self).find("owned by uid 1001") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(RelativeOrDirectoryPathsAreRefused) {
  BOOST_CHECK_THROW(PidFile("moltd.pid"), std::invalid_argument);
  BOOST_CHECK_THROW(PidFile(""), std::invalid_argument);
  BOOST_CHECK_THROW(PidFile("/run/molt/"), std::invalid_argument);
  BOOST_TEST(PidFile("/moltd.pid").directory() == "/");
}

BOOST_AUTO_TEST_CASE(WritesThePidAndLeavesNoTemporaryFile) {
  TempDir dir;
  PidFile file(dir.path + "/moltd.pid");
  file.write(4242);
  BOOST_TEST(contentsOf(file.path()) == "4242\n");
  BOOST_TEST(file.read().value_or(0) == 4242);
  file.write(4243);
  BOOST_TEST(contentsOf(file.path()) == "4243\n");
  BOOST_TEST(entries(dir.path) == std::set<std::string>{"moltd.pid"});
  struct stat st {};
  BOOST_REQUIRE(stat(file.path().c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 07777) == 0644u);
}

// Symlinks at the old fixed temporary name and at the pid file itself:
// neither target is written, and the pid file becomes a regular file.
BOOST_AUTO_TEST_CASE(SymlinksAreNeverFollowed) {
  TempDir dir;
  std::string decoy = dir.path + "/decoy";
  writeFile(decoy, "precious\n");
  std::string pidPath = dir.path + "/moltd.pid";
  BOOST_REQUIRE(symlink(decoy.c_str(), (pidPath + ".tmp").c_str()) == 0);
  BOOST_REQUIRE(symlink(decoy.c_str(), pidPath.c_str()) == 0);
  PidFile file(pidPath);
  BOOST_TEST(!file.read().has_value());  // not read through the symlink
  file.write(77);
  BOOST_TEST(contentsOf(decoy) == "precious\n");
  struct stat st {};
  BOOST_REQUIRE(lstat(pidPath.c_str(), &st) == 0);
  BOOST_TEST(S_ISREG(st.st_mode));
  BOOST_TEST(contentsOf(pidPath) == "77\n");
}

BOOST_AUTO_TEST_CASE(CreatesAMissingLastDirectoryOnly) {
  TempDir dir;
  PidFile file(dir.path + "/run/moltd.pid");
  file.write(5);
  BOOST_TEST(file.read().value_or(0) == 5);
  PidFile deeper(dir.path + "/a/b/moltd.pid");
  BOOST_CHECK_THROW(deeper.write(5), std::system_error);
  BOOST_CHECK_THROW(deeper.checkWritable(), std::system_error);
}

BOOST_AUTO_TEST_CASE(UnsafeDirectoryIsRefusedWithTheReason) {
  TempDir dir;
  std::string open = dir.path + "/open";
  BOOST_REQUIRE(mkdir(open.c_str(), 0700) == 0);
  BOOST_REQUIRE(chmod(open.c_str(), 0777) == 0);
  PidFile file(open + "/moltd.pid");
  try {
    file.write(1);
    BOOST_FAIL("a world-writable directory was accepted");
  } catch (const std::runtime_error& e) {
    BOOST_TEST(std::string(e.what()).find("writable by anyone (mode 0777)") != std::string::npos,
               e.what());
  }
  BOOST_CHECK_THROW(file.checkWritable(), std::runtime_error);
  BOOST_TEST(entries(open).empty());
}

// Above the directory the rule is the same, except that a sticky directory
// others may write is fine when root or we own it.
BOOST_AUTO_TEST_CASE(AncestorRuleForEveryModeAndOwner) {
  const uid_t self = 1000;
  for (uid_t owner : {uid_t{0}, self, uid_t{1001}}) {
    for (mode_t perms = 0; perms <= 07777; ++perms) {
      for (mode_t type : {mode_t{S_IFDIR}, mode_t{S_IFREG}}) {
        std::string problem = PidFile::ancestorProblem(type | perms, owner, self);
        bool trusted = type == S_IFDIR && (owner == 0 || owner == self) &&
                       ((perms & (S_IWGRP | S_IWOTH)) == 0 || (perms & S_ISVTX) != 0);
        BOOST_TEST(problem.empty() == trusted,
                   "mode " << std::oct << (type | perms) << std::dec << " owner " << owner << ": '"
                           << problem << "'");
      }
    }
  }
}

// A directory of our own, mode 0755, below one that anyone may write: anyone
// could rename ours away and put another (or a symlink to one) in its place.
BOOST_AUTO_TEST_CASE(UnsafeAncestorIsRefusedWithTheReason) {
  TempDir dir;
  std::string open = dir.path + "/open";
  BOOST_REQUIRE(mkdir(open.c_str(), 0700) == 0);
  BOOST_REQUIRE(chmod(open.c_str(), 0777) == 0);
  BOOST_REQUIRE(mkdir((open + "/run").c_str(), 0755) == 0);
  PidFile file(open + "/run/moltd.pid");
  try {
    file.write(1);
    BOOST_FAIL("a directory below a world-writable one was accepted");
  } catch (const std::runtime_error& e) {
    BOOST_TEST(std::string(e.what()).find(open + " above it is writable by anyone (mode 0777)") !=
                   std::string::npos,
               e.what());
  }
  BOOST_CHECK_THROW(file.checkWritable(), std::runtime_error);
  BOOST_TEST(entries(open + "/run").empty());
  // Reached through a symlink, the directory's own ancestors are checked.
  std::string link = dir.path + "/link";
  BOOST_REQUIRE(symlink((open + "/run").c_str(), link.c_str()) == 0);
  BOOST_CHECK_THROW(PidFile(link + "/moltd.pid").write(1), std::runtime_error);
  // The same below a sticky one (as /tmp is): accepted.
  BOOST_REQUIRE(chmod(open.c_str(), 01777) == 0);
  file.write(7);
  BOOST_TEST(contentsOf(open + "/run/moltd.pid") == "7\n");
}

BOOST_AUTO_TEST_CASE(CheckWritableLeavesNothingBehind) {
  TempDir dir;
  PidFile existing(dir.path + "/moltd.pid");
  existing.checkWritable();
  BOOST_TEST(entries(dir.path).empty());
  PidFile missing(dir.path + "/run/moltd.pid");
  missing.checkWritable();
  BOOST_TEST(entries(dir.path).empty());
  BOOST_CHECK_THROW(PidFile("/proc/nope/moltd.pid").checkWritable(), std::system_error);
  BOOST_CHECK_THROW(PidFile(dir.path + "/missing/deeper/moltd.pid").checkWritable(),
                    std::system_error);
}

BOOST_AUTO_TEST_CASE(HoldsOnlyItsOwnRegularFileWithItsPid) {
  TempDir dir;
  PidFile file(dir.path + "/moltd.pid");
  BOOST_TEST(!file.holds(100));  // missing
  file.write(100);
  BOOST_TEST(file.holds(100));
  BOOST_TEST(!file.holds(101));  // another process's pid
  for (const char* text : {"", "junk\n", "100 101\n", "-100\n"}) {
    writeFile(file.path(), text);
    BOOST_TEST(!file.holds(100), "a file that reads '" << text << "'");
  }
  // A symlink to a file that records the pid is not ours.
  BOOST_REQUIRE(unlink(file.path().c_str()) == 0);
  std::string target = dir.path + "/elsewhere";
  writeFile(target, "100\n");
  BOOST_REQUIRE(symlink(target.c_str(), file.path().c_str()) == 0);
  BOOST_TEST(!file.holds(100));
}

BOOST_AUTO_TEST_CASE(RemovesOnlyItsOwnPidFile) {
  TempDir dir;
  PidFile file(dir.path + "/moltd.pid");
  file.write(100);
  BOOST_TEST(!file.removeIfOurs(101));  // another process's pid
  BOOST_TEST(file.read().value_or(0) == 100);
  BOOST_TEST(file.removeIfOurs(100));
  BOOST_TEST(!file.read().has_value());
  BOOST_TEST(!file.removeIfOurs(100));  // already gone

  // A symlink to a file that records our pid is left alone, and so is its target.
  std::string target = dir.path + "/elsewhere";
  writeFile(target, "100\n");
  BOOST_REQUIRE(symlink(target.c_str(), file.path().c_str()) == 0);
  BOOST_TEST(!file.removeIfOurs(100));
  BOOST_TEST(contentsOf(target) == "100\n");
  struct stat st {};
  BOOST_TEST(lstat(file.path().c_str(), &st) == 0);
}

BOOST_AUTO_TEST_CASE(ReadRefusesWhatIsNotAPid) {
  TempDir dir;
  PidFile file(dir.path + "/moltd.pid");
  for (const char* text : {"", "\n", "abc\n", "12x\n", "0\n", "-5\n", "12\n13\n", "1234567890\n"}) {
    writeFile(file.path(), text);
    BOOST_TEST(!file.read().has_value(), "'" << text << "' read as a pid");
  }
  writeFile(file.path(), "123");
  BOOST_TEST(file.read().value_or(0) == 123);
  BOOST_REQUIRE(unlink(file.path().c_str()) == 0);
  BOOST_REQUIRE(mkfifo(file.path().c_str(), 0600) == 0);
  BOOST_TEST(!file.read().has_value());  // a fifo is not waited on
}

BOOST_AUTO_TEST_SUITE_END()
