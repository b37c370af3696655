#include "reload/notify.h"


#include <cstring>

#include "reload/log.h"
#include "reload/process.h"
#include "reload/systemd.h"

namespace reload::notify {
namespace {

void send(const std::string& message) {
  static bool warned = false;
  int rc = systemd::notify(message);
  if (rc < 0 && !warned) {
    warned = true;
    MOLT_LOG(kWarning) << "sd_notify failed: " << std::strerror(-rc);
  }
}

std::string oneLine(std::string text) {
  for (char& c : text)
    if (c == '\n') c = ' ';
  return text;
}

}  // namespace

void ready(const std::string& status) { send("READY=1\nSTATUS=" + oneLine(status)); }

void reloading(const std::string& status) {
  send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonicMicros()) +
       "\nSTATUS=" + oneLine(status));
}

void stopping(const std::string& status) { send("STOPPING=1\nSTATUS=" + oneLine(status)); }

void status(const std::string& text) { send("STATUS=" + oneLine(text)); }

}  // namespace reload::notify
