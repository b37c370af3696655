#include "reload/config_check_line.h"

#include <cctype>

namespace reload {

namespace {

constexpr const char* kOk = " configuration ok: sha256:";
constexpr size_t kMaxVersion = 64;

bool isVersion(const std::string& text) {
  if (text.empty() || text.size() > kMaxVersion) return false;
  for (unsigned char c : text)
    if (!std::isalnum(c) && c != '.' && c != '-' && c != '+' && c != '_' && c != '~') return false;
  return true;
}

}  // namespace

std::string formatConfigCheckLine(const std::string& service, const std::string& version,
                                  const std::string& digest) {
  return service + " " + version + kOk + digest;
}

std::string configCheckLineProblem(const std::string& service, const std::string& output,
                                   const std::string& digest, std::string& version) {
  const std::string program = service + " ";
  const std::string ok = kOk;
  bool sawLine = false;
  std::string otherDigest;
  size_t pos = 0;
  while (pos < output.size()) {
    size_t end = output.find('\n', pos);
    if (end == std::string::npos) end = output.size();
    std::string line = output.substr(pos, end - pos);
    pos = end + 1;
    if (line.rfind(program, 0) != 0) continue;
    size_t at = line.find(ok, program.size());
    if (at == std::string::npos) continue;
    std::string named = line.substr(program.size(), at - program.size());
    if (!isVersion(named)) continue;
    sawLine = true;
    std::string checked = line.substr(at + ok.size());
    if (checked == digest) {
      version = named;
      return "";
    }
    otherDigest = checked;
  }
  if (sawLine)
    return "it checked another configuration (sha256:" + otherDigest.substr(0, 64) +
           ", not sha256:" + digest + "); the file changed during the check";
  return "it exited 0 without the line \"" + program + "<version>" + ok +
         "<digest>\": not a " + service + " that checked the configuration";
}

}  // namespace reload
