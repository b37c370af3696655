// Chunked upload bodies, cut into reads of varying size: the decoded bytes
// and the verdict never depend on how the body arrived, a body that ends
// early is refused, and no chunk size, extension or trailer crashes it.
#include <cstdint>
#include <string>
#include <string_view>

#include "http_request.h"

namespace {

constexpr std::string_view kHeader =
    "PUT /v1/bucket/key HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

struct Collect : server::BodySink {
  std::string body;
  size_t takeBody(std::string_view data) override {
    body.append(data.data(), data.size());
    return data.size();
  }
};

struct Outcome {
  std::string body;
  int status = 0;
  bool done = false;
};

Outcome decode(std::string_view chunked, size_t step) {
  Outcome out;
  server::Request request;
  server::HeaderLimits limits;
  Collect sink;
  server::RequestParser parser(request, limits, &sink);
  server::RequestProblem problem;
  if (parser.feed(kHeader, problem) != kHeader.size() || !parser.is_header_done() ||
      !request.chunked)
    __builtin_trap();
  size_t at = 0;
  while (at < chunked.size() && problem.status == 0 && !parser.is_done()) {
    size_t chunk = std::min(step, chunked.size() - at);
    size_t used = parser.feed(chunked.substr(at, chunk), problem);
    if (used == 0 && problem.status == 0 && !parser.is_done()) {
      if (chunk == chunked.size() - at) break;
      step *= 2;
      continue;
    }
    at += used;
  }
  if (problem.status == 0 && !parser.is_done()) parser.feedEof(problem);
  out.body = sink.body;
  out.status = problem.status;
  out.done = parser.is_done() && problem.status == 0;
  if (!out.done && out.status == 0) __builtin_trap();  // EOF must settle it
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  size_t step = 1 + data[0] % 32;
  std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  Outcome whole = decode(body, body.size() + 1);
  Outcome pieces = decode(body, step);
  if (whole.status != pieces.status || whole.done != pieces.done) __builtin_trap();
  if (whole.done && whole.body != pieces.body) __builtin_trap();
  if (whole.status != 0 && whole.status != 400) __builtin_trap();
  return 0;
}
