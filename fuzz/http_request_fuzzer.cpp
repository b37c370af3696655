// Request framing as clients send it, byte by byte or all at once: the first
// input byte picks how the rest is cut into reads. Whatever the cut, the
// parser reaches the same verdict: the same request line and body bytes for
// a request it accepts, a refusal for one it refuses (which of several faults
// it names first may depend on the cut). A request it accepts never has both
// a length and chunked framing, and a refusal carries one of the statuses
// moltd answers.
#include <cstdint>
#include <string>
#include <string_view>

#include "http_request.h"

namespace {

struct Collect : server::BodySink {
  std::string body;
  size_t takeBody(std::string_view data) override {
    body.append(data.data(), data.size());
    return data.size();
  }
};

struct Outcome {
  server::Request request;
  std::string body;
  int status = 0;
  bool done = false;
};

Outcome drive(std::string_view input, size_t step) {
  Outcome out;
  Collect sink;
  server::HeaderLimits limits;
  server::RequestParser parser(out.request, limits, &sink);
  server::RequestProblem problem;
  size_t at = 0;
  while (at < input.size() && problem.status == 0 && !parser.is_done()) {
    size_t chunk = std::min(step, input.size() - at);
    size_t used = parser.feed(input.substr(at, chunk), problem);
    if (used > chunk) __builtin_trap();
    if (used == 0 && problem.status == 0 && !parser.is_done()) {
      if (chunk == input.size() - at) break;  // needs more than there is
      step = step * 2;  // a bigger read, as the socket would deliver
      continue;
    }
    at += used;
  }
  if (problem.status == 0 && !parser.is_done()) parser.feedEof(problem);
  out.body = sink.body;
  out.status = problem.status;
  out.done = parser.is_done() && problem.status == 0;
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  size_t step = 1 + data[0] % 64;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  Outcome whole = drive(input, input.size() + 1);
  Outcome pieces = drive(input, step);
  if ((whole.status != 0) != (pieces.status != 0) || whole.done != pieces.done) __builtin_trap();
  if (whole.done) {
    if (whole.request.method != pieces.request.method ||
        whole.request.target != pieces.request.target || whole.body != pieces.body)
      __builtin_trap();
    if (whole.request.chunked && whole.request.contentLength) __builtin_trap();
    if (whole.request.contentLength && whole.body.size() != *whole.request.contentLength)
      __builtin_trap();
  }
  for (int status : {whole.status, pieces.status}) {
    switch (status) {
      case 0: case 400: case 431: case 501: case 505: break;
      default: __builtin_trap();
    }
  }
  return 0;
}
