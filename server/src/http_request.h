// An HTTP/1.1 request as the event loop sees it, framed by Boost.Beast's
// incremental parser. The parser never owns body bytes: it hands them to a
// BodySink as they are framed (Content-Length or strict chunked decoding),
// and the sink may take fewer than offered to apply back-pressure.
#pragma once

#include <boost/beast/http/basic_parser.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace server {

class BodySink {
 public:
  virtual ~BodySink() = default;
  // Takes up to body.size() bytes; returns how many it took.
  virtual size_t takeBody(std::string_view body) = 0;
};

// Limits applied while a request is framed. Every part of the framing is
// bounded, so that no connection holds more than these plus one read.
struct HeaderLimits {
  uint32_t maxHeaderBytes = 64 * 1024;  // whole header block, and a chunked body's trailers: 431
  size_t maxFieldBytes = 8 * 1024;      // one field's value: 400 past it; its name: 431
  size_t maxFields = 100;
  size_t maxChunkLineBytes = 4096;      // a chunk's size line with its extensions: 400
};

// What is wrong with a request's header, and the status that says so.
struct RequestProblem {
  int status = 0;  // 0: none
  std::string reason;
};

struct Request {
  std::string method;
  std::string target;
  int version = 11;  // 10 or 11
  std::vector<std::pair<std::string, std::string>> fields;
  bool keepAlive = true;
  std::optional<uint64_t> contentLength;
  bool chunked = false;
  bool expectContinue = false;

  // The first field named `name` (case-insensitive), or nullptr.
  const std::string* find(std::string_view name) const;
  // Every line of a list field (RFC 9110 5.3: If-Match sent as two lines is
  // one list), joined with ", "; nullopt when there is none.
  std::optional<std::string> list(std::string_view name) const;
  bool hasBody() const { return chunked || (contentLength && *contentLength > 0); }
  const char* versionText() const { return version == 10 ? "HTTP/1.0" : "HTTP/1.1"; }
  // Appends a field, in the storage of one that clear() set aside when there
  // is one: a connection's next request of the same shape allocates nothing.
  void addField(std::string_view name, std::string_view value);
  // Empties the request; a few small fields' strings are kept for addField().
  void clear();

 private:
  std::vector<std::pair<std::string, std::string>> spareFields_;
};

class RequestParser : public boost::beast::http::basic_parser<true> {
 public:
  RequestParser(Request& request, const HeaderLimits& limits, BodySink* sink);

  // Feeds bytes; returns how many were consumed. Returns right after the
  // header is complete, so the caller can choose the body's sink first.
  // Sets `problem` when the request cannot be served (a bad header, an
  // unsupported framing, a malformed body).
  size_t feed(std::string_view data, RequestProblem& problem);
  // The peer closed its side: completes a body that ends at EOF, or reports
  // a truncated one.
  void feedEof(RequestProblem& problem);
  void setSink(BodySink* sink) { sink_ = sink; }
  // A chunk that would take the body past `bytes` is refused (413) as soon
  // as its size line is read.
  void setMaxBodyBytes(uint64_t bytes) { maxBodyBytes_ = bytes; }
  // Whether the body, if any, is inside a chunk's data right now.
  bool insideChunk() const { return chunkLeft_ > 0; }
  uint64_t bodyBytes() const { return bodyBytes_; }
  // Whether the connection may carry another request: only once this one
  // was framed to its end without a fault. A body left unread, or a framing
  // that went wrong, would have its bytes taken for the next request.
  bool requestReadWhole() const { return is_done() && !failed_; }

 private:
  void on_request_impl(boost::beast::http::verb method, boost::beast::string_view methodText,
                       boost::beast::string_view target, int version,
                       boost::beast::error_code& ec) override;
  void on_response_impl(int, boost::beast::string_view, int, boost::beast::error_code&) override {}
  void on_field_impl(boost::beast::http::field name, boost::beast::string_view nameText,
                     boost::beast::string_view value, boost::beast::error_code& ec) override;
  void on_header_impl(boost::beast::error_code& ec) override;
  void on_body_init_impl(const boost::optional<uint64_t>& length,
                         boost::beast::error_code& ec) override;
  size_t on_body_impl(boost::beast::string_view body, boost::beast::error_code& ec) override;
  void on_chunk_header_impl(uint64_t size, boost::beast::string_view extensions,
                            boost::beast::error_code& ec) override;
  size_t on_chunk_body_impl(uint64_t remain, boost::beast::string_view body,
                            boost::beast::error_code& ec) override;
  void on_finish_impl(boost::beast::error_code& ec) override;

  Request& request_;
  const HeaderLimits& limits_;
  BodySink* sink_;
  // How many of the `pending` bytes the parser may be handed at most, and
  // the part of the framing that bound is for.
  struct FramingBound {
    // kWholeChunkLine: a chunk line up to its first CRLF, which ends it
    // (no CR or LF is allowed inside a chunk extension, quoted or not).
    // kMalformedChunkLine: the line holds a byte no chunk line may hold.
    enum Part { kNone, kChunkLine, kWholeChunkLine, kMalformedChunkLine, kTrailers };
    size_t bytes = SIZE_MAX;
    Part part = kNone;
  };
  FramingBound framingBound(std::string_view pending) const;

  RequestProblem fieldProblem_;
  bool failed_ = false;
  bool skippedEmptyLine_ = false;
  int hostFields_ = 0;
  // The bytes the parser is handed now: a field Beast reports lies in them
  // unless Beast unfolded it into a buffer of its own.
  std::string_view headerInput_;
  std::vector<std::string> transferEncodings_;
  uint64_t chunkLeft_ = 0;
  uint64_t maxBodyBytes_ = UINT64_MAX;
  uint64_t bodyBytes_ = 0;
};

// Whether a Transfer-Encoding value is exactly the one coding moltd
// supports, "chunked" (case-insensitive, surrounding blanks allowed).
bool isPlainChunked(std::string_view value);

// The values of every Transfer-Encoding field in a raw header block.
std::vector<std::string> transferEncodingValues(std::string_view headerBlock);

// Whether a request line names an HTTP version this server does not speak
// (HTTP/2.0, HTTP/9.9) rather than being malformed.
bool namesOtherHttpVersion(std::string_view headerBlock);

// Whether the first bytes of a request can still grow into a valid request
// line (method SP target SP HTTP/d.d CRLF). Bytes that cannot are refused
// at once rather than when the header timeout passes.
bool requestLineCanBeValid(std::string_view start);

// Whether a Host field value, or the authority of an absolute-form target,
// is `host [":" port]` by RFC 3986 (an IP literal in brackets, an IPv4
// address or a registered name), or empty.
bool isValidHostValue(std::string_view value);


}  // namespace server
