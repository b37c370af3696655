#include "program_config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <set>
#include <stdexcept>

namespace run {
namespace {

constexpr const char* kSystemdDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

bool isVariableName(const std::string& name) {
  if (name.empty() || !(std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_'))
    return false;
  for (unsigned char c : name)
    if (!std::isalnum(c) && c != '_') return false;
  return true;
}

int parsePort(const std::string& text) {
  if (text.empty() || text.size() > 5) throw std::invalid_argument("port '" + text + "' is not a number");
  for (unsigned char c : text)
    if (!std::isdigit(c)) throw std::invalid_argument("port '" + text + "' is not a number");
  int port = std::stoi(text);
  if (port < 1 || port > 65535) throw std::invalid_argument("port " + text + " is out of range");
  return port;
}

// "127.0.0.1:9000", "[::1]:9000", "localhost:9000" into `r`; the rest of
// `text` after the port is returned.
std::string parseHostPort(const std::string& text, Readiness& r) {
  std::string host;
  size_t portStart = 0;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      throw std::invalid_argument("'" + text + "' is not [v6]:port");
    host = text.substr(1, close - 1);
    portStart = close + 2;
  } else {
    size_t colon = text.find(':');
    if (colon == std::string::npos) throw std::invalid_argument("'" + text + "' has no port");
    host = text.substr(0, colon);
    portStart = colon + 1;
  }
  size_t portEnd = text.find('/', portStart);
  r.port = parsePort(text.substr(portStart, portEnd == std::string::npos ? std::string::npos
                                                                         : portEnd - portStart));
  if (host == "localhost") host = "127.0.0.1";
  r.host = host;
  std::memset(&r.address, 0, sizeof r.address);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&r.address);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&r.address);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(r.port));
    r.addressLength = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(r.port));
    r.addressLength = sizeof(sockaddr_in6);
  } else {
    // A probe runs for every worker of every reload: a name lookup there
    // could hang a reload, so only numeric addresses (and localhost) are taken.
    throw std::invalid_argument("'" + host + "' is not a numeric IPv4 or IPv6 address (or localhost)");
  }
  return portEnd == std::string::npos ? "" : text.substr(portEnd);
}

}  // namespace

Readiness Readiness::parse(const std::string& text) {
  Readiness r;
  if (text == "notify") return r;
  if (text.rfind("delay:", 0) == 0) {
    r.kind = Kind::kDelay;
    try {
      r.delaySeconds = reload::parseSeconds(text.substr(6));
    } catch (const std::exception&) {
      throw std::invalid_argument("'" + text.substr(6) + "' is not a number of seconds");
    }
    if (r.delaySeconds < 0 || r.delaySeconds > 3600)
      throw std::invalid_argument("the delay must be between 0 and 3600 seconds");
    return r;
  }
  if (text.rfind("tcp:", 0) == 0) {
    r.kind = Kind::kTcp;
    if (!parseHostPort(text.substr(4), r).empty())
      throw std::invalid_argument("'" + text + "': a tcp probe takes no path");
    return r;
  }
  if (text.rfind("http:", 0) == 0) {
    r.kind = Kind::kHttp;
    std::string path = parseHostPort(text.substr(5), r);
    r.path = path.empty() ? "/" : path;
    for (unsigned char c : r.path)
      if (c <= ' ' || c >= 127) throw std::invalid_argument("the probe path has a blank or control character");
    return r;
  }
  throw std::invalid_argument("'" + text +
                              "' is not notify, delay:SECONDS, tcp:HOST:PORT or http:HOST:PORT/PATH");
}

std::string Readiness::toString() const {
  std::string hostPort = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                         std::to_string(port);
  switch (kind) {
    case Kind::kNotify:
      return "notify";
    case Kind::kDelay: {
      char text[32];
      std::snprintf(text, sizeof text, "delay:%g", delaySeconds);
      return text;
    }
    case Kind::kTcp:
      return "tcp:" + hostPort;
    case Kind::kHttp:
      return "http:" + hostPort + path;
  }
  return "";
}

std::vector<std::string> splitWords(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  bool inWord = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == ' ' || c == '\t') {
      if (inWord) words.push_back(std::exchange(word, ""));
      inWord = false;
      continue;
    }
    inWord = true;
    if (c == '\'') {
      size_t close = text.find('\'', i + 1);
      if (close == std::string::npos)
        throw std::invalid_argument("a single quote at character " + std::to_string(i + 1) + " is not closed");
      word += text.substr(i + 1, close - i - 1);
      i = close;
    } else if (c == '"') {
      size_t j = i + 1;
      for (;; ++j) {
        if (j >= text.size())
          throw std::invalid_argument("a double quote at character " + std::to_string(i + 1) + " is not closed");
        if (text[j] == '"') break;
        if (text[j] == '\\' && j + 1 < text.size() && (text[j + 1] == '"' || text[j + 1] == '\\')) ++j;
        word += text[j];
      }
      i = j;
    } else if (c == '\\') {
      if (i + 1 >= text.size()) throw std::invalid_argument("the value ends with a backslash");
      word += text[++i];
    } else {
      word += c;
    }
  }
  if (inWord) words.push_back(word);
  return words;
}

int parseStopSignal(const std::string& text) {
  std::string name;
  for (unsigned char c : text) name += static_cast<char>(std::toupper(c));
  if (name.rfind("SIG", 0) == 0) name = name.substr(3);
  for (int sig = 1; sig < 32; ++sig) {
    const char* abbrev = sigabbrev_np(sig);
    if (abbrev == nullptr || name != abbrev) continue;
    switch (sig) {
      case SIGSTOP: case SIGCONT: case SIGCHLD: case SIGTSTP: case SIGTTIN: case SIGTTOU: case SIGURG:
        throw std::invalid_argument("SIG" + name + " does not stop a program");
      default:
        return sig;
    }
  }
  throw std::invalid_argument("'" + text + "' is not a signal name (SIGTERM, SIGQUIT, SIGINT, ...)");
}

std::string signalName(int signal) {
  const char* abbrev = sigabbrev_np(signal);
  return abbrev ? std::string("SIG") + abbrev : std::to_string(signal);
}

bool isReservedVariable(const std::string& name) {
  return name == "LISTEN_FDS" || name == "LISTEN_PID" || name == "LISTEN_FDNAMES" ||
         name == "NOTIFY_SOCKET" || name.rfind("MOLT_", 0) == 0;
}

std::shared_ptr<const ProgramConfig> parseProgramConfig(reload::IniConfig& ini) {
  auto c = std::make_shared<ProgramConfig>();
  std::string command = ini.getString("program", "command", "");
  try {
    c->argv = splitWords(command);
  } catch (const std::invalid_argument& e) {
    ini.fail("program", "command", e.what());
  }
  if (command.empty() || (c->argv.empty() && ini.errors().empty()))
    ini.fail("program", "command", "set the program to run (a path and its arguments)");
  else if (!c->argv.empty() && c->argv[0].empty())
    ini.fail("program", "command", "the command's first word is empty");

  std::set<std::string> seen;
  try {
    for (const auto& word : splitWords(ini.getString("program", "environment", ""))) {
      size_t eq = word.find('=');
      std::string name = word.substr(0, eq);
      if (eq == std::string::npos || !isVariableName(name)) {
        ini.fail("program", "environment", "'" + word + "' is not NAME=VALUE");
      } else if (isReservedVariable(name)) {
        ini.fail("program", "environment", name + " is set by molt-run itself");
      } else if (!seen.insert(name).second) {
        ini.fail("program", "environment", name + " is given twice");
      } else {
        c->environment.emplace_back(name, word.substr(eq + 1));
      }
    }
  } catch (const std::invalid_argument& e) {
    ini.fail("program", "environment", e.what());
  }
  std::vector<std::string> inherit = {"PATH", "LANG", "LC_ALL", "TZ"};
  auto listed = ini.getList("program", "inherit_environment");
  if (ini.has("program", "inherit_environment")) inherit = listed;
  std::set<std::string> inherited;
  for (auto name : inherit) {
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.pop_back();
    while (!name.empty() && (name.front() == ' ' || name.front() == '\t')) name.erase(0, 1);
    if (!isVariableName(name))
      ini.fail("program", "inherit_environment", "'" + name + "' is not a variable name");
    else if (isReservedVariable(name))
      ini.fail("program", "inherit_environment", name + " is set by molt-run itself");
    else if (inherited.insert(name).second)
      c->inheritEnvironment.push_back(name);
  }

  c->workingDirectory = ini.getString("program", "working_directory", "/");
  if (c->workingDirectory.empty() || c->workingDirectory[0] != '/')
    ini.fail("program", "working_directory", "'" + c->workingDirectory + "' is not an absolute path");

  try {
    c->ready = Readiness::parse(ini.getString("program", "ready", "notify"));
  } catch (const std::invalid_argument& e) {
    ini.fail("program", "ready", e.what());
  }
  try {
    c->stopSignal = parseStopSignal(ini.getString("program", "stop_signal", "SIGTERM"));
  } catch (const std::invalid_argument& e) {
    ini.fail("program", "stop_signal", e.what());
  }
  return c;
}

std::string programSearchPath(const ProgramConfig& config, const char* inheritedPath) {
  for (const auto& [name, value] : config.environment)
    if (name == "PATH") return value;
  for (const auto& name : config.inheritEnvironment)
    if (name == "PATH" && inheritedPath != nullptr) return inheritedPath;
  return kSystemdDefaultPath;
}

std::string resolveProgram(const std::string& command, const std::string& searchPath,
                           const std::string& workingDirectory, std::string& why) {
  auto executable = [&why](const std::string& path) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
      why = path + ": " + std::strerror(errno);
      return false;
    }
    if (!S_ISREG(st.st_mode)) {
      why = path + " is not a regular file";
      return false;
    }
    if (access(path.c_str(), X_OK) != 0) {
      why = path + " is not executable: " + std::strerror(errno);
      return false;
    }
    return true;
  };
  if (command.find('/') != std::string::npos) {
    std::string path = command[0] == '/' ? command
                       : workingDirectory + (workingDirectory.back() == '/' ? "" : "/") + command;
    return executable(path) ? path : "";
  }
  size_t start = 0;
  while (start <= searchPath.size()) {
    size_t end = searchPath.find(':', start);
    if (end == std::string::npos) end = searchPath.size();
    std::string dir = searchPath.substr(start, end - start);
    start = end + 1;
    if (dir.empty() || dir[0] != '/') continue;  // a relative PATH entry would depend on the cwd
    std::string path = dir + "/" + command;
    if (access(path.c_str(), F_OK) == 0 && executable(path)) return path;
  }
  why = "'" + command + "' is not found in PATH=" + searchPath;
  return "";
}

}  // namespace run
