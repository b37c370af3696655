// Chunked upload bodies, cut into reads of varying size: the decoded bytes
// and the verdict never depend on how the body arrived (a chunk line or
// trailers near their bounds included), a body that ends
// early is refused, and no chunk size, extension or trailer crashes it.
#include <cstdint>
#include <string>
#include <string_view>

#include "feed_in_reads.h"

namespace {

constexpr std::string_view kHeader =
    "PUT /v1/bucket/key HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

fuzz::Verdict decode(std::string_view chunked, size_t step) {
  server::Request request;
  server::HeaderLimits limits;
  // Small enough that trailers past it fit in an input.
  limits.maxHeaderBytes = 8 * 1024;
  fuzz::CollectBody sink;
  server::RequestParser parser(request, limits, &sink);
  server::RequestProblem problem;
  if (parser.feed(kHeader, problem) != kHeader.size() || !parser.is_header_done() ||
      !request.chunked)
    __builtin_trap();
  fuzz::Verdict out = fuzz::feedInReads(parser, sink, chunked, step);
  if (!out.done && out.status == 0) __builtin_trap();  // EOF must settle it
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  auto [step, body] = fuzz::cutInput(data, size, 32);
  fuzz::Verdict whole = decode(body, body.size() + 1);
  fuzz::Verdict pieces = decode(body, step);
  if (whole.status != pieces.status || whole.done != pieces.done) __builtin_trap();
  if (whole.done && whole.body != pieces.body) __builtin_trap();
  if (whole.status != 0 && whole.status != 400 && whole.status != 431) __builtin_trap();
  return 0;
}
