#include "http_request.h"

#include <boost/beast/http/error.hpp>

#include <strings.h>

#include <algorithm>
#include <functional>
#include <limits>

namespace server {

namespace http = boost::beast::http;

namespace {

bool equalsNoCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

std::string_view trimBlanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string_view view(boost::beast::string_view s) { return {s.data(), s.size()}; }

}  // namespace

const std::string* Request::find(std::string_view name) const {
  for (const auto& field : fields)
    if (equalsNoCase(field.first, name)) return &field.second;
  return nullptr;
}

std::optional<std::string> Request::list(std::string_view name) const {
  std::optional<std::string> joined;
  for (const auto& field : fields) {
    if (!equalsNoCase(field.first, name)) continue;
    if (joined)
      joined->append(", ").append(field.second);
    else
      joined = field.second;
  }
  return joined;
}

void Request::addField(std::string_view name, std::string_view value) {
  if (spareFields_.empty()) {
    fields.emplace_back(std::string(name), std::string(value));
    return;
  }
  auto field = std::move(spareFields_.back());
  spareFields_.pop_back();
  field.first.assign(name.data(), name.size());
  field.second.assign(value.data(), value.size());
  fields.push_back(std::move(field));
}

void Request::clear() {
  method.clear();
  target.clear();
  version = 11;
  // Only a few small fields are kept, so that what an idle connection holds
  // stays small whatever its last request carried.
  constexpr size_t kSpareFields = 16;
  constexpr size_t kSpareCapacity = 256;
  for (auto& field : fields)
    if (spareFields_.size() < kSpareFields && field.first.capacity() <= kSpareCapacity &&
        field.second.capacity() <= kSpareCapacity)
      spareFields_.push_back(std::move(field));
  fields.clear();
  keepAlive = true;
  contentLength.reset();
  chunked = false;
  expectContinue = false;
}

bool isPlainChunked(std::string_view value) { return equalsNoCase(trimBlanks(value), "chunked"); }

// The values of every `name:` line of a header block (name lower case,
// with its colon).
std::vector<std::string> fieldValues(std::string_view block, std::string_view kName) {
  std::vector<std::string> values;
  size_t pos = block.find("\r\n");  // skip the request line
  while (pos != std::string_view::npos && pos + 2 < block.size()) {
    size_t start = pos + 2;
    size_t end = block.find("\r\n", start);
    std::string_view line = block.substr(start, end == std::string_view::npos ? end : end - start);
    if (line.empty()) break;
    if (line.size() >= kName.size() && equalsNoCase(line.substr(0, kName.size()), kName))
      values.emplace_back(trimBlanks(line.substr(kName.size())));
    pos = end;
  }
  return values;
}

bool namesOtherHttpVersion(std::string_view block) {
  std::string_view line = block.substr(0, block.find("\r\n"));
  size_t space = line.rfind(' ');
  if (space == std::string_view::npos) return false;
  std::string_view version = line.substr(space + 1);
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  return version.size() == 8 && version.compare(0, 5, "HTTP/") == 0 && digit(version[5]) &&
         version[6] == '.' && digit(version[7]) && version != "HTTP/1.0" && version != "HTTP/1.1";
}

RequestParser::RequestParser(Request& request, const HeaderLimits& limits, BodySink* sink)
    : request_(request), limits_(limits), sink_(sink) {
  header_limit(limits.maxHeaderBytes);
  // max_object_size is enforced by the server, with a 413. (Beast 1.74's
  // boost::none here would compare as a limit of zero.)
  body_limit(std::numeric_limits<uint64_t>::max());
}

namespace {

bool isTokenChar(char c) {
  auto u = static_cast<unsigned char>(c);
  if ((u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// What Beast takes in a request target: visible bytes, and any byte >= 0x80.
bool isTargetChar(char c) {
  auto u = static_cast<unsigned char>(c);
  return u > 0x20 && u != 0x7f;
}

}  // namespace

bool requestLineCanBeValid(std::string_view s) {
  size_t i = 0;
  for (auto part : {isTokenChar, isTargetChar}) {
    size_t begin = i;
    while (i < s.size() && part(s[i])) ++i;
    if (i == s.size()) return true;
    if (i == begin || s[i] != ' ') return false;
    ++i;
  }
  constexpr std::string_view kVersion = "HTTP/#.#\r\n";
  for (size_t k = 0; k < kVersion.size() && i < s.size(); ++k, ++i) {
    bool fits = kVersion[k] == '#' ? (s[i] >= '0' && s[i] <= '9') : s[i] == kVersion[k];
    if (!fits) return false;
  }
  return true;
}

namespace {

constexpr const char* kFoldProblem = "a header field line is folded onto the next (obs-fold)";

// Whether a header's bytes, up to the empty line that ends it, hold a line
// that begins with a space or a tab.
bool foldIn(std::string_view header) {
  header = header.substr(0, header.find("\r\n\r\n"));
  for (size_t eol = header.find("\r\n"); eol != std::string_view::npos; eol = header.find("\r\n", eol + 2))
    if (eol + 2 < header.size() && (header[eol + 2] == ' ' || header[eol + 2] == '\t')) return true;
  return false;
}

bool isUnreservedOrSubDelim(char c) {
  auto u = static_cast<unsigned char>(c);
  if ((u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z')) return true;
  return std::string_view("-._~!$&'()*+,;=").find(c) != std::string_view::npos;
}

bool isHexDigit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

}  // namespace

bool isValidHostValue(std::string_view value) {
  if (value.empty()) return true;  // RFC 9112 3.2: a target without an authority
  std::string_view host = value, port;
  if (value.front() == '[') {
    size_t close = value.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    // An IPv6 address, with an RFC 6874 zone ("%25" and at least one byte
    // more), or IPvFuture.
    std::string_view literal = value.substr(1, close - 1);
    size_t zone = literal.find('%');
    if (zone != std::string_view::npos) {
      if (literal.substr(zone, 3) != "%25" || literal.size() == zone + 3) return false;
      for (char c : literal.substr(zone + 3))
        if (!isUnreservedOrSubDelim(c) || c == ':') return false;
      literal = literal.substr(0, zone);
    }
    for (char c : literal)
      if (!isUnreservedOrSubDelim(c) && c != ':') return false;
    std::string_view after = value.substr(close + 1);
    if (!after.empty() && after.front() != ':') return false;
    port = after.empty() ? after : after.substr(1);
  } else {
    size_t colon = value.find(':');
    if (colon != std::string_view::npos) {
      host = value.substr(0, colon);
      port = value.substr(colon + 1);
    }
    // RFC 9110 4.2.1: an http URI with an empty host is invalid.
    if (host.empty()) return false;
    for (size_t i = 0; i < host.size(); ++i) {
      if (host[i] == '%') {
        if (i + 2 >= host.size() || !isHexDigit(host[i + 1]) || !isHexDigit(host[i + 2]))
          return false;
        i += 2;
      } else if (!isUnreservedOrSubDelim(host[i])) {
        return false;
      }
    }
  }
  return port.find_first_not_of("0123456789") == std::string_view::npos;
}

namespace {

// RFC 9112 7.1.1: no control byte but HTAB belongs in a chunk line, quoted
// or not. Beast takes a lone LF (and NUL, DEL) inside a quoted extension,
// where a hop that ends lines at a lone LF would frame the body otherwise.
bool holdsControlByte(std::string_view line) {
  for (unsigned char c : line)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return true;
  return false;
}

// Whether a chunk line's extensions leave a quoted string open at its end.
bool quoteLeftOpen(std::string_view line) {
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    if (quoted && line[i] == '\\') ++i;  // quoted-pair
    else if (line[i] == '"') quoted = !quoted;
  }
  return quoted;
}

}  // namespace

RequestParser::FramingBound RequestParser::framingBound(std::string_view pending) const {
  if (!is_header_done() || !request_.chunked || insideChunk()) return {};
  // Between chunks the parser takes nothing until it holds a whole chunk
  // line (after the CRLF that ends the chunk before it), or, after the last
  // chunk, the whole trailer section. It is handed no more than the longest
  // of these that is allowed, so that its verdict is the same however the
  // bytes were cut into reads.
  size_t from = pending.substr(0, 2) == "\r\n" ? 2 : 0;
  size_t lineBound = from + limits_.maxChunkLineBytes + 2;
  size_t eol = pending.substr(0, lineBound).find("\r\n", from);
  if (eol == std::string_view::npos) {
    std::string_view partial = pending.substr(from, lineBound - from);
    if (!partial.empty() && partial.back() == '\r') partial.remove_suffix(1);  // its LF may follow
    if (holdsControlByte(partial)) return {0, FramingBound::kMalformedChunkLine};
    return {lineBound, FramingBound::kChunkLine};
  }
  std::string_view line = pending.substr(from, eol - from);
  if (holdsControlByte(line)) return {0, FramingBound::kMalformedChunkLine};
  std::string_view size = line.substr(0, line.find_first_not_of("0123456789abcdefABCDEF"));
  bool lastChunk = !size.empty() && size.find_first_not_of('0') == std::string_view::npos;
  // A line that the parser does not take whole, once it holds it to its
  // CRLF, can never be taken: Beast reads a quoted string left open at the
  // CRLF on into what follows (no CR or LF may be quoted), and keeps it all.
  if (!lastChunk || quoteLeftOpen(line)) return {eol + 2, FramingBound::kWholeChunkLine};
  return {eol + 2 + limits_.maxHeaderBytes, FramingBound::kTrailers};
}

size_t RequestParser::feed(std::string_view data, RequestProblem& problem) {
  size_t used = 0;
  const bool headerWasDone = is_header_done();
  // RFC 9112 2.2: one empty line before the request line is ignored (a
  // client may send a CRLF after a body); a lone CR waits for its LF.
  if (!got_some() && !skippedEmptyLine_) {
    if (data.substr(0, 2) == "\r\n") {
      skippedEmptyLine_ = true;
      used = 2;
      data = data.substr(2);
      if (data.empty()) return used;
    } else if (data == "\r") {
      return 0;
    }
  }
  const size_t skipped = used;
  used = 0;
  while (used < data.size() && !is_done()) {
    boost::beast::error_code ec;
    std::string_view rest = data.substr(used);
    FramingBound bound = framingBound(rest);
    if (bound.part == FramingBound::kMalformedChunkLine) {
      problem = {400, "malformed chunk size line"};
      failed_ = true;
      return skipped + used;
    }
    headerInput_ = rest.substr(0, std::min(rest.size(), bound.bytes));
    size_t n = put(boost::asio::const_buffer(rest.data(), std::min(rest.size(), bound.bytes)), ec);
    used += n;
    if (ec == http::error::need_more) {
      if (!is_header_done()) {
        // The parser takes the request line once it is whole, then each
        // field line: until then, `rest` is the request from its first byte.
        if (request_.method.empty() && !requestLineCanBeValid(rest))
          problem = {400, "malformed request line"};
      } else if (n == 0 && rest.size() >= bound.bytes) {
        // It holds all it may of a chunk line or of the trailers, and still
        // needs more: the part is longer than its bound.
        if (bound.part == FramingBound::kChunkLine)
          problem = {400, "chunk size line is longer than " + std::to_string(limits_.maxChunkLineBytes) +
                              " bytes"};
        else if (bound.part == FramingBound::kWholeChunkLine)
          problem = {400, "malformed chunk size line"};
        else
          problem = {431, "chunked trailers are larger than " + std::to_string(limits_.maxHeaderBytes) +
                              " bytes"};
      }
      if (problem.status) {
        failed_ = true;
        return skipped + used;
      }
      break;
    }
    if (ec) {
      failed_ = true;
      if (fieldProblem_.status != 0) {
        problem = fieldProblem_;
      } else if (ec == http::error::header_limit && !is_header_done() && foldIn(headerInput_)) {
        // Beast unfolds into a buffer of 4 KiB, and a longer fold overflows
        // it before the field is reported.
        problem = {400, kFoldProblem};
      } else if (ec == http::error::header_limit) {
        problem = {431, "request header is larger than " + std::to_string(limits_.maxHeaderBytes) +
                            " bytes"};
      } else if (ec == http::error::bad_version && namesOtherHttpVersion(data)) {
        problem = {505, "this server speaks HTTP/1.0 and HTTP/1.1 only"};
      } else if (ec == http::error::bad_transfer_encoding ||
                 ec == http::error::bad_content_length) {
        problem = {400, ec == http::error::bad_content_length
                            ? "invalid or conflicting Content-Length"
                            : "Transfer-Encoding together with Content-Length"};
        if (!is_header_done()) {
          auto codings = fieldValues(data, "transfer-encoding:");
          for (const auto& te : codings)
            if (!isPlainChunked(te)) problem = {501, "transfer coding '" + te + "' is not supported"};
          // chunked on two lines is chunked applied twice, as on one line.
          if (ec == http::error::bad_transfer_encoding && problem.status == 400 && codings.size() > 1 &&
              fieldValues(data, "content-length:").empty()) {
            std::string all;
            for (const auto& te : codings) all += (all.empty() ? "" : ", ") + te;
            problem = {501, "transfer coding '" + all + "' is not supported"};
          }
        }
      } else if (ec == http::error::bad_chunk || ec == http::error::bad_chunk_extension) {
        problem = {400, "malformed chunked body: invalid chunk size or chunk data longer than its size"};
      } else {
        problem = {400, (is_header_done() ? "malformed request body: " : "malformed request: ") +
                            ec.message()};
      }
      return skipped + used;
    }
    if (n == 0) break;  // the sink is full
    if (!headerWasDone && is_header_done()) break;  // the caller decides what the body is for
  }
  return skipped + used;
}

void RequestParser::feedEof(RequestProblem& problem) {
  if (!got_some() || is_done()) return;
  boost::beast::error_code ec;
  put_eof(ec);
  if (!ec) return;
  if (!is_header_done()) {
    problem = {400, "connection closed inside the request header"};
  } else if (request_.chunked) {
    problem = {400, insideChunk() ? "chunked body ended inside a chunk"
                                  : "chunked body ended before its last chunk"};
  } else {
    problem = {400, "body ended after " + std::to_string(bodyBytes_) + " of " +
                        std::to_string(request_.contentLength.value_or(0)) + " bytes"};
  }
}

void RequestParser::on_request_impl(http::verb, boost::beast::string_view methodText,
                                    boost::beast::string_view target, int version,
                                    boost::beast::error_code& ec) {
  request_.method.assign(methodText.data(), methodText.size());
  request_.target.assign(target.data(), target.size());
  request_.version = version;
  std::string_view text = view(target);
  // RFC 9112 3.2: no form of request target carries a fragment; a '#' here
  // is a client's mistake, not part of a key.
  if (text.find('#') != std::string_view::npos) {
    fieldProblem_ = {400, "a request target with a fragment ('#')"};
  } else {
    for (std::string_view scheme : {"http://", "https://"}) {
      if (text.size() < scheme.size() || !equalsNoCase(text.substr(0, scheme.size()), scheme)) continue;
      // RFC 9110 4.2.1 and 4.2.4: an empty host is invalid, and userinfo
      // is treated as an error.
      std::string_view authority = text.substr(scheme.size());
      authority = authority.substr(0, authority.find_first_of("/?"));
      if (authority.empty() || !isValidHostValue(authority))
        fieldProblem_ = {400, "the request target's authority is not a valid host"};
    }
  }
  if (fieldProblem_.status != 0) ec = http::error::bad_target;
}

void RequestParser::on_field_impl(http::field name, boost::beast::string_view nameText,
                                  boost::beast::string_view value, boost::beast::error_code& ec) {
  // RFC 9112 5.2: folding is refused rather than unfolded: a hop in front
  // that reads the folded line as a field of its own (or drops it) would
  // frame the message otherwise. Beast hands a folded value from a buffer
  // of its own, or, when the first line is empty, from after the CRLF. In
  // chunked trailers too: a hop may pass them on as fields.
  {
    std::less<const char*> before;
    const char* nameEnd = nameText.data() + nameText.size();
    const char* inputEnd = headerInput_.data() + headerInput_.size();
    bool inInput = !before(value.data(), nameEnd) && !before(inputEnd, value.data() + value.size());
    if (!inInput || std::string_view(nameEnd, static_cast<size_t>(value.data() - nameEnd)).find('\r') !=
                        std::string_view::npos) {
      fieldProblem_ = {400, kFoldProblem};
      ec = http::error::bad_value;
      return;
    }
  }
  if (is_header_done()) return;  // a chunked trailer: nothing in it is used
  if (nameText.size() > limits_.maxFieldBytes) {
    fieldProblem_ = {431, "a header field name is longer than " +
                              std::to_string(limits_.maxFieldBytes) + " bytes"};
  } else if (request_.fields.size() >= limits_.maxFields) {
    fieldProblem_ = {400, "more than " + std::to_string(limits_.maxFields) + " header fields"};
  } else if (value.size() > limits_.maxFieldBytes) {
    fieldProblem_ = {400, "header field " + std::string(view(nameText)) + " is longer than " +
                              std::to_string(limits_.maxFieldBytes) + " bytes"};
  } else if (nameText.size() > 14 && equalsNoCase(view(nameText).substr(0, 14), "X-Object-Meta-")) {
    for (unsigned char c : value)
      if ((c < 0x20 && c != '\t') || c == 0x7f) {
        fieldProblem_ = {400, "header field " + std::string(view(nameText)) +
                                  " contains a control character"};
        break;
      }
  }
  if (fieldProblem_.status != 0) {
    ec = http::error::bad_value;
    return;
  }
  if (name == http::field::host) {
    ++hostFields_;
    if (!isValidHostValue(view(value))) {
      fieldProblem_ = {400, "the Host header field is not a valid host"};
      ec = http::error::bad_value;
      return;
    }
  }
  if (name == http::field::transfer_encoding) transferEncodings_.emplace_back(view(value));
  // RFC 9110 10.1.1: HTTP/1.0 knows no 1xx; its expectation is ignored.
  if (name == http::field::expect && request_.version >= 11 &&
      equalsNoCase(trimBlanks(view(value)), "100-continue"))
    request_.expectContinue = true;
  request_.addField(view(nameText), view(value));
}

void RequestParser::on_header_impl(boost::beast::error_code& ec) {
  // RFC 9112 3.2: an HTTP/1.1 request without Host, or any request with
  // more than one, is refused.
  if (hostFields_ > 1 || (hostFields_ == 0 && request_.version >= 11)) {
    fieldProblem_ = {400, hostFields_ > 1 ? "more than one Host header field"
                                          : "an HTTP/1.1 request without a Host header field"};
    ec = http::error::bad_value;
    return;
  }
  for (const auto& te : transferEncodings_) {
    if (transferEncodings_.size() > 1 || !isPlainChunked(te)) {
      fieldProblem_ = {501, "transfer coding '" + te + "' is not supported"};
      ec = http::error::bad_transfer_encoding;
      return;
    }
  }
  // RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding is framed as
  // if faulty, and its connection closes after it. An HTTP/1.0 hop in
  // front may not know the coding and would frame the body as requests.
  request_.keepAlive = keep_alive() && !(request_.version < 11 && !transferEncodings_.empty());
  request_.chunked = chunked();
  if (auto length = content_length()) request_.contentLength = *length;
}

void RequestParser::on_body_init_impl(const boost::optional<uint64_t>&, boost::beast::error_code&) {}

size_t RequestParser::on_body_impl(boost::beast::string_view body, boost::beast::error_code&) {
  size_t taken = sink_ ? sink_->takeBody(view(body)) : body.size();
  bodyBytes_ += taken;
  return taken;
}

void RequestParser::on_chunk_header_impl(uint64_t size, boost::beast::string_view,
                                         boost::beast::error_code& ec) {
  if (maxBodyBytes_ != UINT64_MAX && size > maxBodyBytes_ - std::min(bodyBytes_, maxBodyBytes_)) {
    fieldProblem_ = {413, "object is larger than max_object_size (" +
                              std::to_string(maxBodyBytes_) + " bytes)"};
    ec = http::error::body_limit;
    return;
  }
  chunkLeft_ = size;
}

size_t RequestParser::on_chunk_body_impl(uint64_t remain, boost::beast::string_view body,
                                         boost::beast::error_code&) {
  size_t taken = sink_ ? sink_->takeBody(view(body)) : body.size();
  bodyBytes_ += taken;
  chunkLeft_ = remain - taken;
  return taken;
}

void RequestParser::on_finish_impl(boost::beast::error_code&) { chunkLeft_ = 0; }

}  // namespace server
