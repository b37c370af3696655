// What the request fuzzers share: a body sink that keeps every byte, and a
// driver that feeds the parser its input cut into reads, as a socket would
// deliver them.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "http_request.h"

namespace fuzz {

struct CollectBody : server::BodySink {
  std::string body;
  size_t takeBody(std::string_view data) override {
    body.append(data.data(), data.size());
    return data.size();
  }
};

// A fuzzer's input: its first byte picks the read size (1 to `most`), the
// rest is what is read.
struct CutInput {
  size_t step;
  std::string_view input;
};
inline CutInput cutInput(const uint8_t* data, size_t size, size_t most) {
  return {1 + data[0] % most, std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1)};
}

struct Verdict {
  std::string body;  // what the parser gave the sink
  int status = 0;    // the refusal, or 0
  bool done = false;  // the request was read whole and accepted
};

// Feeds `input` in reads of `step` bytes until the parser is done, refuses,
// or the input runs out; a read the parser takes nothing of is doubled (it
// needs more at once, as the connection's leftover buffer would give it).
// Then tells a parser still waiting that the stream ended. `sink` is the
// parser's body sink.
inline Verdict feedInReads(server::RequestParser& parser, const CollectBody& sink,
                           std::string_view input, size_t step) {
  server::RequestProblem problem;
  size_t at = 0;
  while (at < input.size() && problem.status == 0 && !parser.is_done()) {
    size_t chunk = std::min(step, input.size() - at);
    size_t used = parser.feed(input.substr(at, chunk), problem);
    if (used > chunk) __builtin_trap();
    if (used == 0 && problem.status == 0 && !parser.is_done()) {
      if (chunk == input.size() - at) break;  // needs more than there is
      step *= 2;
      continue;
    }
    at += used;
  }
  if (problem.status == 0 && !parser.is_done()) parser.feedEof(problem);
  return Verdict{sink.body, problem.status, parser.is_done() && problem.status == 0};
}

}  // namespace fuzz
