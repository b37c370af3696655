#include <signal.h>
#include <unistd.h>

#include <cstdlib>

#include <boost/test/unit_test.hpp>
#include <random>
#include <string>
#include <vector>

#include "program_config.h"

using run::splitWords;

namespace {

// One of the three quotings molt-run(8) documents, chosen by `style`.
std::string quote(const std::string& word, int style) {
  std::string out;
  switch (style % 3) {
    case 0:  // backslashes before every special character
      for (char c : word) {
        if (c == ' ' || c == '\t' || c == '\'' || c == '"' || c == '\\') out += '\\';
        out += c;
      }
      return word.empty() ? "''" : out;
    case 1: {  // single quotes; a single quote itself goes outside them
      out = "'";
      for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
      return out + "'";
    }
    default:  // double quotes with \" and \\ inside
      out = "\"";
      for (char c : word) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
      }
      return out + "\"";
  }
}

std::shared_ptr<const run::ProgramConfig> parse(const std::string& program, std::vector<std::string>& errors) {
  reload::IniConfig ini("/etc/molt/test.conf", "[program]\n" + program);
  auto config = run::parseProgramConfig(ini);
  errors = ini.errors();
  return config;
}

bool mentions(const std::vector<std::string>& errors, const std::string& text) {
  for (const auto& e : errors)
    if (e.find(text) != std::string::npos) return true;
  return false;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ProgramConfigTest)

BOOST_AUTO_TEST_CASE(EveryQuotedWordListSplitsBackToItself) {
  const std::string alphabet = "ab $*;|&~=\t'\"\\#%:,x";
  std::mt19937 random(17);
  for (int round = 0; round < 3000; ++round) {
    std::vector<std::string> words(1 + random() % 5);
    for (auto& w : words) {
      size_t length = random() % 6;
      for (size_t i = 0; i < length; ++i) w += alphabet[random() % alphabet.size()];
    }
    std::string line;
    for (size_t i = 0; i < words.size(); ++i)
      line += (i ? std::string(1 + random() % 3, ' ') : "") + quote(words[i], static_cast<int>(random()));
    BOOST_TEST_CONTEXT("line: " << line) { BOOST_TEST(splitWords(line) == words); }
  }
}

BOOST_AUTO_TEST_CASE(NothingIsExpanded) {
  BOOST_TEST(splitWords("/bin/echo $HOME * ~ a;b") ==
             (std::vector<std::string>{"/bin/echo", "$HOME", "*", "~", "a;b"}));
  BOOST_TEST(splitWords("  ").empty());
}

BOOST_AUTO_TEST_CASE(UnclosedQuotesAndATrailingBackslashAreErrors) {
  for (const char* bad : {"a 'b", "a \"b", "\"a\\\"", "a\\", "'", "\""})
    BOOST_CHECK_THROW(splitWords(bad), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(EverySignalNameInEverySpelling) {
  for (int sig = 1; sig < 32; ++sig) {
    const char* abbrev = sigabbrev_np(sig);
    if (abbrev == nullptr) continue;
    bool refused = sig == SIGSTOP || sig == SIGCONT || sig == SIGCHLD || sig == SIGTSTP ||
                   sig == SIGTTIN || sig == SIGTTOU || sig == SIGURG;
    std::string name = abbrev;
    std::string lower;
    for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const std::string& spelling : {name, "SIG" + name, "sig" + lower, lower}) {
      BOOST_TEST_CONTEXT(spelling) {
        if (refused) BOOST_CHECK_THROW(run::parseStopSignal(spelling), std::invalid_argument);
        else BOOST_TEST(run::parseStopSignal(spelling) == sig);
      }
    }
  }
  for (const char* bad : {"", "15", "SIGNOPE", "SIG", "TERM "})
    BOOST_CHECK_THROW(run::parseStopSignal(bad), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(ReadinessForms) {
  using K = run::Readiness::Kind;
  BOOST_TEST(static_cast<int>(run::Readiness::parse("notify").kind) == static_cast<int>(K::kNotify));
  auto delay = run::Readiness::parse("delay:2.5");
  BOOST_TEST(delay.delaySeconds == 2.5);
  auto tcp = run::Readiness::parse("tcp:127.0.0.1:9000");
  BOOST_TEST(tcp.port == 9000);
  BOOST_TEST(tcp.addressLength > 0u);
  BOOST_TEST(run::Readiness::parse("tcp:localhost:9000").host == "127.0.0.1");
  auto http = run::Readiness::parse("http:[::1]:8080/healthz?full=1");
  BOOST_TEST(http.host == "::1");
  BOOST_TEST(http.path == "/healthz?full=1");
  BOOST_TEST(http.toString() == "http:[::1]:8080/healthz?full=1");
  BOOST_TEST(run::Readiness::parse("http:127.0.0.1:80").path == "/");
  for (const char* bad : {"", "ready", "delay:", "delay:-1", "delay:x", "tcp:127.0.0.1", "tcp:127.0.0.1:0",
                          "tcp:127.0.0.1:65536", "tcp:example.com:80", "tcp:127.0.0.1:80/x",
                          "http:[::1:80/", "http:127.0.0.1:80/a b", "udp:127.0.0.1:53"})
    BOOST_CHECK_THROW(run::Readiness::parse(bad), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(ProgramSection) {
  std::vector<std::string> errors;
  auto c = parse("command = /usr/bin/gunicorn --workers 2 'app:make_app(\"x y\")'\n"
                 "environment = PYTHONPATH=/srv/app \"GREETING=hello world\"\n"
                 "inherit_environment = PATH, TERM\n"
                 "working_directory = /srv/app\nready = delay:1\nstop_signal = quit\n",
                 errors);
  BOOST_TEST(errors.empty());
  BOOST_TEST(c->argv == (std::vector<std::string>{"/usr/bin/gunicorn", "--workers", "2", "app:make_app(\"x y\")"}));
  BOOST_TEST(c->environment.size() == 2u);
  BOOST_TEST(c->environment[1].second == "hello world");
  BOOST_TEST(c->inheritEnvironment == (std::vector<std::string>{"PATH", "TERM"}));
  BOOST_TEST(c->stopSignal == SIGQUIT);

  auto defaults = parse("command = app\n", errors);
  BOOST_TEST(errors.empty());
  BOOST_TEST(defaults->inheritEnvironment == (std::vector<std::string>{"PATH", "LANG", "LC_ALL", "TZ"}));
  BOOST_TEST(defaults->workingDirectory == "/");
  BOOST_TEST(defaults->stopSignal == SIGTERM);
  BOOST_TEST(defaults->ready.toString() == "notify");
}

BOOST_AUTO_TEST_CASE(EveryReservedVariableIsRefusedInBothKeys) {
  for (const std::string name : {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                                 "MOLT_RUN_GENERATION", "MOLT_RUN_SLOT", "MOLT_HANDOFF"}) {
    std::vector<std::string> errors;
    parse("command = app\nenvironment = " + name + "=1\n", errors);
    BOOST_TEST(mentions(errors, "[program] environment: " + name + " is set by molt-run itself"));
    parse("command = app\ninherit_environment = PATH, " + name + "\n", errors);
    BOOST_TEST(mentions(errors, "[program] inherit_environment: " + name + " is set by molt-run itself"));
  }
}

BOOST_AUTO_TEST_CASE(BadValuesNameTheKey) {
  struct Case {
    const char* lines;
    const char* error;
  } cases[] = {
      {"", "[program] command: set the program to run"},
      {"command = \n", "[program] command: set the program to run"},
      {"command = 'app\n", "[program] command: a single quote"},
      {"command = app\nenvironment = A=1 A=2\n", "A is given twice"},
      {"command = app\nenvironment = 1A=x\n", "'1A=x' is not NAME=VALUE"},
      {"command = app\nenvironment = NOVALUE\n", "'NOVALUE' is not NAME=VALUE"},
      {"command = app\ninherit_environment = A-B\n", "'A-B' is not a variable name"},
      {"command = app\nworking_directory = srv\n", "[program] working_directory: 'srv' is not an absolute path"},
      {"command = app\nready = sometime\n", "[program] ready: 'sometime' is not notify"},
      {"command = app\nstop_signal = SIGSTOP\n", "[program] stop_signal: SIGSTOP does not stop a program"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> errors;
    parse(c.lines, errors);
    BOOST_TEST_CONTEXT(c.lines) { BOOST_TEST(mentions(errors, c.error)); }
  }
}

BOOST_AUTO_TEST_CASE(ProgramLookup) {
  std::string why;
  BOOST_TEST(run::resolveProgram("sh", "/nonexistent:/bin", "/", why) == "/bin/sh");
  BOOST_TEST(run::resolveProgram("sh", "relative:/nonexistent", "/", why).empty());
  BOOST_TEST(why.find("not found in PATH") != std::string::npos);
  char plain[] = "/tmp/molt-run-test-XXXXXX";
  int fd = mkstemp(plain);
  BOOST_REQUIRE(fd >= 0);
  close(fd);
  BOOST_TEST(run::resolveProgram(plain, "", "/", why).empty());
  unlink(plain);
  BOOST_TEST(why.find("not executable") != std::string::npos);
  BOOST_TEST(run::resolveProgram("/etc", "", "/", why).empty());
  BOOST_TEST(why.find("not a regular file") != std::string::npos);
  BOOST_TEST(run::resolveProgram("bin/sh", "", "/", why) == "/bin/sh");
  run::ProgramConfig config;
  BOOST_TEST(run::programSearchPath(config, "/opt/bin") == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  config.inheritEnvironment = {"PATH"};
  BOOST_TEST(run::programSearchPath(config, "/opt/bin") == "/opt/bin");
  config.environment = {{"PATH", "/x"}};
  BOOST_TEST(run::programSearchPath(config, "/opt/bin") == "/x");
}

BOOST_AUTO_TEST_SUITE_END()
