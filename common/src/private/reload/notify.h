// systemd's notify protocol (sd_notify). Harmless without systemd: every call
// is then a no-op. Only the master calls these; children unset NOTIFY_SOCKET.
#pragma once

#include <string>

namespace reload::notify {

void ready(const std::string& status);
void reloading(const std::string& status);
void stopping(const std::string& status);
// STATUS= alone: a state that is neither a reload's start nor its end.
void status(const std::string& status);

}  // namespace reload::notify
