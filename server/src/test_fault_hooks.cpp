#include "test_fault_hooks.h"

namespace server {

TestFaultHooks testFaultHooks;

}  // namespace server
