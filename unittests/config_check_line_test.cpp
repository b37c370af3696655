#include <boost/test/unit_test.hpp>
#include <string>

#include "reload/config_check_line.h"

using reload::configCheckLineProblem;
using reload::formatConfigCheckLine;

namespace {

const std::string kDigest(64, 'a');

std::string problemOf(const std::string& output, std::string* version = nullptr) {
  std::string named;
  std::string problem = configCheckLineProblem("moltd", output, kDigest, named);
  if (version) *version = named;
  return problem;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ConfigCheckLineTest)

BOOST_AUTO_TEST_CASE(TheLineItselfProvesTheCheck) {
  std::string version;
  BOOST_TEST(problemOf(formatConfigCheckLine("moltd", "1.4.0", kDigest) + "\n", &version) == "");
  BOOST_TEST(version == "1.4.0");
  // Warnings before or after it, with or without a final newline.
  BOOST_TEST(problemOf("warning: x: unknown key\n" + formatConfigCheckLine("moltd", "2.0-rc1+g1", kDigest) +
                       "\nwarning: y\n", &version) == "");
  BOOST_TEST(version == "2.0-rc1+g1");
  BOOST_TEST(problemOf(formatConfigCheckLine("moltd", "1", kDigest)) == "");
}

BOOST_AUTO_TEST_CASE(AnythingElseIsRefusedWithTheReason) {
  for (const std::string& output :
       {std::string(""), std::string("\n"), std::string("/etc/molt/moltd.conf: OK\n"),
        std::string("configuration ok\n"), "moltd  configuration ok: sha256:" + kDigest + "\n",
        "moltd 1.0 configuration ok: " + kDigest + "\n",
        "xmoltd 1.0 configuration ok: sha256:" + kDigest + "\n",
        " moltd 1.0 configuration ok: sha256:" + kDigest + "\n",
        "moltd 1 0 configuration ok: sha256:" + kDigest + "\n",
        "moltd 1.0/x configuration ok: sha256:" + kDigest + "\n",
        "moltd " + std::string(65, '1') + " configuration ok: sha256:" + kDigest + "\n"}) {
    std::string problem = problemOf(output);
    BOOST_TEST(problem.find("without the line") != std::string::npos, "'" << output << "': " << problem);
  }
}

BOOST_AUTO_TEST_CASE(AnotherDigestIsAnotherConfiguration) {
  for (const std::string& other : {std::string(64, 'b'), kDigest + "a", kDigest.substr(1),
                                  std::string(""), kDigest + " "}) {
    std::string problem = problemOf(formatConfigCheckLine("moltd", "1.0", other) + "\n");
    BOOST_TEST(problem.find("checked another configuration") != std::string::npos, problem);
  }
  // One line for the right digest among wrong ones is enough: the file was
  // checked as it is.
  BOOST_TEST(problemOf(formatConfigCheckLine("moltd", "1.0", std::string(64, 'b')) + "\n" +
                       formatConfigCheckLine("moltd", "1.0", kDigest) + "\n") == "");
}

BOOST_AUTO_TEST_SUITE_END()
