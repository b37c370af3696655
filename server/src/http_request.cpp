#include "http_request.h"

#include <boost/beast/http/error.hpp>

#include <strings.h>

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

void Request::clear() {
  method.clear();
  target.clear();
  version = 11;
  fields.clear();
  keepAlive = true;
  contentLength.reset();
  chunked = false;
  expectContinue = false;
}

bool isPlainChunked(std::string_view value) { return equalsNoCase(trimBlanks(value), "chunked"); }

std::vector<std::string> transferEncodingValues(std::string_view block) {
  std::vector<std::string> values;
  constexpr std::string_view kName = "transfer-encoding:";
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

size_t RequestParser::feed(std::string_view data, RequestProblem& problem) {
  size_t used = 0;
  const bool headerWasDone = is_header_done();
  while (used < data.size() && !is_done()) {
    boost::beast::error_code ec;
    size_t n = put(boost::asio::const_buffer(data.data() + used, data.size() - used), ec);
    used += n;
    if (ec == http::error::need_more) break;
    if (ec) {
      if (fieldProblem_.status != 0) {
        problem = fieldProblem_;
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
        if (!is_header_done())
          for (const auto& te : transferEncodingValues(data))
            if (!isPlainChunked(te)) problem = {501, "transfer coding '" + te + "' is not supported"};
      } else if (ec == http::error::bad_chunk || ec == http::error::bad_chunk_extension) {
        problem = {400, "malformed chunked body: invalid chunk size or chunk data longer than its size"};
      } else {
        problem = {400, (is_header_done() ? "malformed request body: " : "malformed request: ") +
                            ec.message()};
      }
      return used;
    }
    if (n == 0) break;  // the sink is full
    if (!headerWasDone && is_header_done()) break;  // the caller decides what the body is for
  }
  return used;
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
                                    boost::beast::error_code&) {
  request_.method.assign(methodText.data(), methodText.size());
  request_.target.assign(target.data(), target.size());
  request_.version = version;
}

void RequestParser::on_field_impl(http::field name, boost::beast::string_view nameText,
                                  boost::beast::string_view value, boost::beast::error_code& ec) {
  if (is_header_done()) return;  // a chunked trailer: nothing in it is used
  if (request_.fields.size() >= limits_.maxFields) {
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
  if (name == http::field::transfer_encoding) transferEncodings_.emplace_back(view(value));
  if (name == http::field::expect && equalsNoCase(trimBlanks(view(value)), "100-continue"))
    request_.expectContinue = true;
  request_.fields.emplace_back(std::string(view(nameText)), std::string(view(value)));
}

void RequestParser::on_header_impl(boost::beast::error_code& ec) {
  for (const auto& te : transferEncodings_) {
    if (transferEncodings_.size() > 1 || !isPlainChunked(te)) {
      fieldProblem_ = {501, "transfer coding '" + te + "' is not supported"};
      ec = http::error::bad_transfer_encoding;
      return;
    }
  }
  request_.keepAlive = keep_alive();
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
                                         boost::beast::error_code&) {
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
