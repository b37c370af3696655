#include "version.h"

namespace server {
const char* moltVersion() { return MOLT_VERSION; }
}  // namespace server
