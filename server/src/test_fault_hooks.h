// Points inside request handling where the test binary moltd-faulty can
// make a request fail on purpose (test_faults.cpp sets them; moltd never
// does, so they stay empty there). Each gets the request's target.
#pragma once

#include <string_view>

namespace server {

struct TestFaultHooks {
  void (*routing)(std::string_view target) = nullptr;         // as routing begins
  void (*diskCompletion)(std::string_view target) = nullptr;  // as a disk task's end runs on the loop
};

extern TestFaultHooks testFaultHooks;

}  // namespace server
