// Request framing as clients send it, byte by byte or all at once: the first
// input byte picks how the rest is cut into reads. Whatever the cut, the
// parser reaches the same verdict: the same request line and body bytes for
// a request it accepts, a refusal for one it refuses (which of several faults
// it names first may depend on the cut). A request it accepts never has both
// a length and chunked framing, and a refusal carries one of the statuses
// moltd answers.
//
// The same input is then the start of a request whose body is a whole
// second request, framed by a length or as chunks, on a connection that the
// server either answers without reading bodies (as every refusal does) or
// reads to their end. Whatever the header, the cut or the answer, the
// request inside the body is never parsed as a request: a connection carries
// a next request only when the parser says this one was read whole.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>
#include <algorithm>
#include <cstdio>

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

constexpr std::string_view kSmuggled = "DELETE /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

// Requests the connection parses from `stream`, in order, answering each
// without reading its body (`refuse`) or after reading it to its end; it
// goes on only while RequestParser::requestReadWhole() allows it.
std::vector<std::string> targetsOnConnection(std::string_view stream, size_t step, bool refuse) {
  std::vector<std::string> targets;
  while (!stream.empty() && targets.size() < 16) {
    server::Request request;
    server::HeaderLimits limits;
    fuzz::CollectBody sink;
    server::RequestParser parser(request, limits, &sink);
    server::RequestProblem problem;
    // The header, then (unless refused) the body, in reads of `step`; a
    // read the parser takes nothing of is kept and joined with the next, as
    // the connection does.
    auto feedUntil = [&](auto enough) {
      size_t at = 0, window = step;
      while (at < stream.size() && !problem.status && !enough()) {
        size_t offered = std::min(window, stream.size() - at);
        size_t n = parser.feed(stream.substr(at, offered), problem);
        if (n > offered) __builtin_trap();
        at += n;
        if (n == 0 && !problem.status && !enough()) {
          if (offered == stream.size() - at) break;  // needs more than there is
          window += step;
        } else {
          window = step;
        }
      }
      stream.remove_prefix(at);
    };
    feedUntil([&] { return parser.is_header_done(); });
    if (problem.status || !parser.is_header_done()) break;  // refused or cut: the connection ends
    targets.push_back(request.target);
    if (!refuse) {
      feedUntil([&] { return parser.is_done(); });
      if (problem.status) break;
    }
    if (!parser.requestReadWhole()) break;
  }
  return targets;
}

void checkBodyIsNeverARequest(uint8_t mode, std::string_view input, size_t step) {
  // The header as fuzzed, up to where it would end; the framing is added.
  std::string stream(input.substr(0, input.find("\r\n\r\n") == std::string_view::npos
                                         ? input.size()
                                         : input.find("\r\n\r\n") + 2));
  if (!stream.empty() && stream.back() != '\n') stream += "\r\n";
  if (mode & 0x80) {
    stream += "Transfer-Encoding: chunked\r\n\r\n";
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", kSmuggled.size());
    stream += size;
    stream += kSmuggled;
    stream += "\r\n0\r\n\r\n";
  } else {
    stream += "Content-Length: " + std::to_string(kSmuggled.size()) + "\r\n\r\n";
    stream += kSmuggled;
  }
  for (const auto& target : targetsOnConnection(stream, step, (mode & 0x40) != 0))
    if (target == "/smuggled") __builtin_trap();
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
  checkBodyIsNeverARequest(data[0], input, step);
  return 0;
}
