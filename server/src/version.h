#pragma once

namespace server {
// The version this binary reports (--version, /status, Server header). Kept in
// its own translation unit so a test build can differ only in this string.
const char* moltVersion();
}  // namespace server
