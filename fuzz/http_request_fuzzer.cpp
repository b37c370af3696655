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

#include "feed_in_reads.h"

namespace {

struct Outcome {
  server::Request request;
  fuzz::Verdict verdict;
};

Outcome drive(std::string_view input, size_t step) {
  Outcome out;
  fuzz::CollectBody sink;
  server::HeaderLimits limits;
  server::RequestParser parser(out.request, limits, &sink);
  out.verdict = fuzz::feedInReads(parser, sink, input, step);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  auto [step, input] = fuzz::cutInput(data, size, 64);
  Outcome whole = drive(input, input.size() + 1);
  Outcome pieces = drive(input, step);
  const fuzz::Verdict& w = whole.verdict;
  const fuzz::Verdict& p = pieces.verdict;
  if ((w.status != 0) != (p.status != 0) || w.done != p.done) __builtin_trap();
  if (w.done) {
    if (whole.request.method != pieces.request.method ||
        whole.request.target != pieces.request.target || w.body != p.body)
      __builtin_trap();
    if (whole.request.chunked && whole.request.contentLength) __builtin_trap();
    if (whole.request.contentLength && w.body.size() != *whole.request.contentLength)
      __builtin_trap();
  }
  for (int status : {w.status, p.status}) {
    switch (status) {
      case 0: case 400: case 431: case 501: case 505: break;
      default: __builtin_trap();
    }
  }
  return 0;
}
