// The last good record: its encoding, and the directory that holds it.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

#include "reload/handoff.h"
#include "reload/last_good.h"
#include "reload/master.h"

using namespace reload;

namespace {

LastGoodRecord sampleRecord() {
  LastGoodRecord r;
  r.service = "moltd";
  r.version = "1.2.3";
  r.executable = "/usr/sbin/moltd";
  r.configPath = "/etc/molt/moltd.conf";
  r.configDigest = "sha256:abc";
  r.binaryIdentity = "1:2:3:4";
  r.why = "generation 3 passed its seamless reload";
  r.writtenEpoch = 1700000000;
  ValidatedConfig v;
  v.contents = "[server]\nbind = 127.0.0.1:8080\n";
  v.resolved.emplace_back("127.0.0.1:8080", std::string("\x02\x00\x1f\x90\x7f\x00\x00\x01", 8));
  r.validated = encodeValidated(v);
  return r;
}

// A record whose checksum is right but whose body is `body`.
std::string withChecksum(const std::string& body) { return body + "sha256 " + sha256Hex(body) + "\n"; }

struct TempDir {
  TempDir() {
    char name[] = "/tmp/last-good-test.XXXXXX";
    BOOST_REQUIRE(mkdtemp(name) != nullptr);
    path = name;
    chmod(path.c_str(), 0700);
  }
  ~TempDir() { BOOST_CHECK(std::system(("rm -rf '" + path + "'").c_str()) == 0); }
  std::string path;
};

int makeBinary(const std::string& path, const std::string& bytes) {
  {
    std::ofstream out(path, std::ios::binary);
    out << bytes;
  }
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  BOOST_REQUIRE(fd >= 0);
  return fd;
}

ino_t inodeOf(const std::string& path) {
  struct stat st {};
  BOOST_REQUIRE(stat(path.c_str(), &st) == 0);
  return st.st_ino;
}

bool exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

BOOST_AUTO_TEST_SUITE(LastGoodTest)

BOOST_AUTO_TEST_CASE(a_record_decodes_to_what_was_encoded) {
  LastGoodRecord r = sampleRecord();
  LastGoodRecord back = decodeLastGood(encodeLastGood(r));
  BOOST_TEST(sameLastGood(r, back));
  BOOST_TEST(back.why == r.why);
  BOOST_TEST(back.writtenEpoch == r.writtenEpoch);
  BOOST_TEST(decodeValidated(back.validated).contents == decodeValidated(r.validated).contents);
  BOOST_TEST(encodeLastGood(r).rfind(std::string(kLastGoodFormat) + "\n", 0) == 0);
}

// Every truncation and every changed byte is refused: the rule, not a list.
BOOST_AUTO_TEST_CASE(every_truncated_or_damaged_record_is_refused) {
  const std::string bytes = encodeLastGood(sampleRecord());
  for (size_t length = 0; length < bytes.size(); ++length)
    BOOST_CHECK_THROW(decodeLastGood(bytes.substr(0, length)), std::invalid_argument);
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (unsigned char flip : {0x01, 0x20, 0x80}) {
      std::string damaged = bytes;
      damaged[i] = static_cast<char>(static_cast<unsigned char>(damaged[i]) ^ flip);
      BOOST_CHECK_THROW(decodeLastGood(damaged), std::invalid_argument);
    }
  }
  BOOST_CHECK_THROW(decodeLastGood(bytes + "x"), std::invalid_argument);
  BOOST_CHECK_THROW(decodeLastGood(bytes + bytes), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(foreign_input_is_refused_even_with_a_right_checksum) {
  const LastGoodRecord r = sampleRecord();
  const std::string good = encodeLastGood(r);
  const std::string body = good.substr(0, good.rfind("sha256 "));
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string text = body;
    auto at = text.find(from);
    BOOST_REQUIRE(at != std::string::npos);
    return withChecksum(text.replace(at, from.size(), to));
  };
  for (const std::string& foreign :
       {std::string(), std::string("hello\n"), std::string("\x7f" "ELF\x02\x01\x01", 7),
        r.validated, withChecksum(r.validated), withChecksum(""),
        // Another format, another layout, fields out of their place.
        replaced(kLastGoodFormat, "molt-last-good 2"), replaced("service moltd\n", ""),
        replaced("executable /usr/sbin/moltd", "executable usr/sbin/moltd"),
        replaced("config-path /etc", "config-path etc"), replaced("written 1700000000", "written -1"),
        replaced("validated ", "validated 9"), replaced("service moltd", "version moltd")})
    BOOST_CHECK_THROW(decodeLastGood(foreign), std::invalid_argument);
  BOOST_CHECK_NO_THROW(decodeLastGood(withChecksum(body)));
}

BOOST_AUTO_TEST_CASE(fields_that_cannot_be_recorded_are_refused) {
  for (int field = 0; field < 7; ++field) {
    LastGoodRecord r = sampleRecord();
    std::string* target[] = {&r.service, &r.version, &r.executable, &r.configPath,
                             &r.configDigest, &r.binaryIdentity, &r.why};
    *target[field] += "\nexecutable /tmp/evil";
    BOOST_CHECK_THROW(encodeLastGood(r), std::invalid_argument);
  }
  LastGoodRecord r = sampleRecord();
  r.executable = "moltd";
  BOOST_CHECK_THROW(encodeLastGood(r), std::invalid_argument);
  r = sampleRecord();
  r.configPath = "moltd.conf";
  BOOST_CHECK_THROW(encodeLastGood(r), std::invalid_argument);
  BOOST_CHECK_THROW(LastGoodDir("relative/dir"), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(the_directory_holds_one_record_taken_and_removed) {
  TempDir temp;
  const std::string dir = temp.path + "/last-good";
  const int binary = makeBinary(temp.path + "/moltd", std::string(300000, 'b') + "end");
  LastGoodDir records(dir);
  LastGoodRecord r = sampleRecord();
  BOOST_TEST((records.write(r, binary, "the seamless reload begun at T") ==
              LastGoodDir::WriteResult::kWritten));
  struct stat st {};
  BOOST_REQUIRE(stat(dir.c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 0777) == 0700u);
  BOOST_REQUIRE(stat((dir + "/record/binary").c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 0777) == 0700u);
  BOOST_REQUIRE(stat((dir + "/record/meta").c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 0777) == 0600u);
  BOOST_TEST(readFile(dir + "/record/binary") == readFile(temp.path + "/moltd"));
  BOOST_TEST(records.readReloadNote() == "the seamless reload begun at T");
  // The same binary and configuration: nothing is written again.
  BOOST_TEST((records.write(r, binary, "") == LastGoodDir::WriteResult::kCurrent));
  BOOST_TEST(records.readReloadNote() == "");
  // Another configuration: a new record, the binary linked, not copied.
  const ino_t copied = inodeOf(dir + "/record/binary");
  r.configDigest = "sha256:def";
  BOOST_TEST((records.write(r, binary, "") == LastGoodDir::WriteResult::kWritten));
  BOOST_TEST(inodeOf(dir + "/record/binary") == copied);
  BOOST_TEST(decodeLastGood(readFile(dir + "/record/meta")).configDigest == "sha256:def");
  // The start script takes it; the image it runs (that very file) records
  // itself by a link, and the taken record goes.
  BOOST_REQUIRE(rename((dir + "/record").c_str(), (dir + "/taken").c_str()) == 0);
  LastGoodRecord taken = records.readTaken();
  BOOST_TEST(taken.configDigest == "sha256:def");
  const int running = open((dir + "/taken/binary").c_str(), O_RDONLY | O_CLOEXEC);
  BOOST_REQUIRE(running >= 0);
  BOOST_TEST((records.write(r, running, "") == LastGoodDir::WriteResult::kWritten));
  BOOST_TEST(inodeOf(dir + "/record/binary") == copied);
  BOOST_TEST(!exists(dir + "/taken"));
  BOOST_CHECK_THROW(records.readTaken(), std::system_error);
  // After a failed write: the record goes, the note stays.
  BOOST_REQUIRE_NO_THROW(records.setReloadNote("reload 4 failed"));
  records.removeRecord();
  BOOST_TEST(!exists(dir + "/record"));
  BOOST_TEST(records.readReloadNote() == "reload 4 failed");
  BOOST_REQUIRE_NO_THROW(records.removeRecord());  // nothing left to remove
  BOOST_TEST((records.write(r, running, "") == LastGoodDir::WriteResult::kWritten));
  // A clean stop removes everything.
  records.removeAll();
  BOOST_TEST(!exists(dir + "/record"));
  BOOST_TEST(!exists(dir + "/reloading"));
  close(running);
  close(binary);
}

BOOST_AUTO_TEST_CASE(a_directory_others_can_write_is_refused) {
  TempDir temp;
  const std::string dir = temp.path + "/last-good";
  const int binary = makeBinary(temp.path + "/moltd", "binary");
  LastGoodDir records(dir);
  BOOST_REQUIRE(mkdir(dir.c_str(), 0700) == 0);
  BOOST_REQUIRE(chmod(dir.c_str(), 0770) == 0);
  BOOST_CHECK_THROW(records.write(sampleRecord(), binary, ""), std::runtime_error);
  BOOST_TEST(!exists(dir + "/record"));
  BOOST_REQUIRE(chmod(dir.c_str(), 0700) == 0);
  BOOST_REQUIRE_NO_THROW(records.write(sampleRecord(), binary, ""));
  // A taken record whose meta others may write is not used.
  BOOST_REQUIRE(rename((dir + "/record").c_str(), (dir + "/taken").c_str()) == 0);
  BOOST_REQUIRE(chmod((dir + "/taken/meta").c_str(), 0666) == 0);
  BOOST_CHECK_THROW(records.readTaken(), std::runtime_error);
  close(binary);
}

BOOST_AUTO_TEST_SUITE_END()
