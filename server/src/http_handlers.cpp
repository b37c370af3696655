#include "http_handlers.h"

#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <Poco/DateTimeFormat.h>
#include <Poco/DateTimeFormatter.h>
#include <Poco/DigestEngine.h>
#include <Poco/Exception.h>
#include <Poco/MD5Engine.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerRequestImpl.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/HTTPServerSession.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Timestamp.h>

#include <chrono>
#include <cstring>
#include <sstream>
#include <vector>

#include "object_key.h"
#include "reload/json.h"
#include "reload/log.h"

namespace server {

using Poco::Net::HTTPResponse;
using Poco::Net::HTTPServerRequest;
using Poco::Net::HTTPServerResponse;

RangeResult parseRange(const std::string& header, uint64_t size, ByteRange& range) {
  if (header.rfind("bytes=", 0) != 0) return RangeResult::kNone;
  std::string spec = header.substr(6);
  if (spec.find(',') != std::string::npos) return RangeResult::kNone;
  auto dash = spec.find('-');
  if (dash == std::string::npos) return RangeResult::kNone;
  std::string a = spec.substr(0, dash), b = spec.substr(dash + 1);
  auto digits = [](const std::string& s) {
    return !s.empty() && s.size() <= 19 && s.find_first_not_of("0123456789") == std::string::npos;
  };
  if (a.empty()) {  // suffix: the last N bytes
    if (!digits(b)) return RangeResult::kNone;
    uint64_t n = std::stoull(b);
    if (n == 0 || size == 0) return RangeResult::kUnsatisfiable;
    range.first = n >= size ? 0 : size - n;
    range.last = size - 1;
    return RangeResult::kSatisfiable;
  }
  if (!digits(a) || (!b.empty() && !digits(b))) return RangeResult::kNone;
  uint64_t first = std::stoull(a);
  uint64_t last = b.empty() ? (size == 0 ? 0 : size - 1) : std::stoull(b);
  if (!b.empty() && last < first) return RangeResult::kNone;  // invalid: ignore, per RFC
  if (first >= size) return RangeResult::kUnsatisfiable;
  range.first = first;
  range.last = std::min(last, size - 1);
  return RangeResult::kSatisfiable;
}

bool etagListMatches(const std::string& header, const std::string& etag) {
  std::istringstream in(header);
  std::string item;
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item == "*") return true;
    if (item.rfind("W/", 0) == 0) item = item.substr(2);
    if (item.size() >= 2 && item.front() == '"' && item.back() == '"')
      item = item.substr(1, item.size() - 2);
    if (item == etag) return true;
  }
  return false;
}

AccessLog::AccessLog(const std::string& path) {
  if (path != "off") fd_ = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (path != "off" && fd_ < 0)
    MOLT_LOG(kError) << "cannot open access log " << path << ": " << std::strerror(errno);
}

AccessLog::~AccessLog() {
  if (fd_ >= 0) close(fd_);
}

void AccessLog::write(const std::string& line) const {
  if (fd_ < 0) return;
  if (::write(fd_, line.data(), line.size()) < 0) {
    // Losing an access-log line must not fail the request.
  }
}

WorkerShared::WorkerShared(const ObjectServerConfig& cfg, uint64_t gen)
    : config(cfg), store(cfg.storage), generation(gen), accessLog(cfg.accessLog) {}

namespace {

// Poco 1.11's chunked input stream reports a body cut short by EOF, or a
// chunk size it cannot parse, as a normal end: a truncated upload would be
// stored as complete. Uploads are therefore decoded here, strictly, from the
// session Poco reads the request from.
class ChunkedBody {
 public:
  explicit ChunkedBody(Poco::Net::HTTPSession& session) : session_(session) {}

  // Returns 0 only after the terminating chunk and its trailer. Throws
  // StoreError(400) for malformed or truncated bodies.
  size_t read(char* buf, size_t size) {
    if (done_) return 0;
    if (left_ == 0) {
      if (!first_) expectLineEnd();
      first_ = false;
      left_ = chunkSize();
      if (left_ == 0) {
        skipTrailer();
        done_ = true;
        return 0;
      }
    }
    auto want = static_cast<std::streamsize>(std::min<uint64_t>(left_, size));
    int n = sessionRead(buf, want);
    if (n <= 0) throw StoreError(400, "chunked body ended inside a chunk");
    left_ -= static_cast<uint64_t>(n);
    return static_cast<size_t>(n);
  }

 private:
  // Protected in Poco; reached through a pointer to member, which is legal
  // for a derived class and needs no cast of the session object.
  struct Access : Poco::Net::HTTPSession {
    static int nextByte(Poco::Net::HTTPSession& s) {
      int (Poco::Net::HTTPSession::*fn)() = &Access::get;
      return (s.*fn)();
    }
    static int readInto(Poco::Net::HTTPSession& s, char* buf, std::streamsize n) {
      int (Poco::Net::HTTPSession::*fn)(char*, std::streamsize) = &Access::read;
      return (s.*fn)(buf, n);
    }
  };
  int sessionGet() { return Access::nextByte(session_); }
  int sessionRead(char* buf, std::streamsize n) { return Access::readInto(session_, buf, n); }

  std::string line() {
    std::string text;
    for (;;) {
      int ch = sessionGet();
      if (ch < 0) throw StoreError(400, "chunked body ended before its last chunk");
      if (ch == '\n') break;
      if (text.size() > 4096) throw StoreError(400, "chunk header line too long");
      text += static_cast<char>(ch);
    }
    if (!text.empty() && text.back() == '\r') text.pop_back();
    return text;
  }
  uint64_t chunkSize() {
    std::string text = line();
    std::string hex = text.substr(0, text.find(';'));
    while (!hex.empty() && (hex.back() == ' ' || hex.back() == '\t')) hex.pop_back();
    if (hex.empty() || hex.size() > 15 || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
      throw StoreError(400, "invalid chunk size '" + text.substr(0, 40) + "'");
    return std::stoull(hex, nullptr, 16);
  }
  void expectLineEnd() {
    if (!line().empty()) throw StoreError(400, "chunk data longer than its size");
  }
  void skipTrailer() {
    for (int i = 0; i < 100; ++i)
      if (line().empty()) return;
    throw StoreError(400, "chunked trailer too long");
  }

  Poco::Net::HTTPSession& session_;
  uint64_t left_ = 0;
  bool first_ = true;
  bool done_ = false;
};

class ObjectHandler : public Poco::Net::HTTPRequestHandler {
 public:
  explicit ObjectHandler(WorkerShared& shared) : shared_(shared) {}
  void handleRequest(HTTPServerRequest& req, HTTPServerResponse& resp) override;

 private:
  void route(HTTPServerRequest& req, HTTPServerResponse& resp);
  void putObject(HTTPServerRequest& req, HTTPServerResponse& resp, const ObjectPath& path);
  void getObject(HTTPServerRequest& req, HTTPServerResponse& resp, const ObjectPath& path);
  void deleteObject(HTTPServerRequest& req, HTTPServerResponse& resp, const ObjectPath& path);
  void listBucket(HTTPServerRequest& req, HTTPServerResponse& resp, const std::string& bucket,
                  const std::string& query);
  void sendText(HTTPServerResponse& resp, HTTPResponse::HTTPStatus status,
                const std::string& text);
  // A drain can start while a request is being served: decide keep-alive
  // when the response goes out, not when the request came in.
  void beforeSend(HTTPServerResponse& resp) {
    if (shared_.drain.draining()) resp.setKeepAlive(false);
  }
  void sendBody(HTTPServerRequest& req, HTTPServerResponse& resp, const OpenObject& obj,
                uint64_t offset, uint64_t length);
  bool refuseIfReadOnly(HTTPServerRequest& req, HTTPServerResponse& resp);
  // After an error answered before the request body was read: read and drop
  // what the client is still sending (bounded), so that closing the
  // connection does not reset it before the client has read our answer.
  void discardBody(HTTPServerRequest& req);

  WorkerShared& shared_;
  uint64_t bytesSent_ = 0;
  uint64_t bytesReceived_ = 0;
};

std::string quoteEtag(const std::string& etag) { return "\"" + etag + "\""; }

std::string httpDate(double epoch) {
  Poco::Timestamp ts(static_cast<Poco::Timestamp::TimeVal>(epoch * 1e6));
  return Poco::DateTimeFormatter::format(ts, Poco::DateTimeFormat::HTTP_FORMAT);
}

void ObjectHandler::handleRequest(HTTPServerRequest& req, HTTPServerResponse& resp) {
  auto started = std::chrono::steady_clock::now();
  if (shared_.drain.draining()) resp.setKeepAlive(false);
  resp.set("X-Molt-Generation", std::to_string(shared_.generation));
  try {
    route(req, resp);
  } catch (const StoreError& e) {
    if (!resp.sent()) {
      resp.setKeepAlive(false);
      sendText(resp, static_cast<HTTPResponse::HTTPStatus>(e.status()), e.what());
    }
    MOLT_LOG(kWarning) << req.getMethod() << " " << req.getURI() << ": " << e.what();
  } catch (const Poco::TimeoutException&) {
    if (!resp.sent()) {
      resp.setKeepAlive(false);
      sendText(resp, HTTPResponse::HTTP_REQUEST_TIMEOUT, "client_timeout passed while reading the request body");
    }
  } catch (const Poco::Net::MessageException& e) {
    if (!resp.sent()) {
      resp.setKeepAlive(false);
      sendText(resp, HTTPResponse::HTTP_BAD_REQUEST, "malformed request body: " + e.message());
    }
  } catch (const Poco::Exception& e) {
    if (!resp.sent()) {
      resp.setKeepAlive(false);
      sendText(resp, HTTPResponse::HTTP_BAD_REQUEST, "request failed: " + e.displayText());
    }
  } catch (const std::exception& e) {
    MOLT_LOG(kError) << req.getMethod() << " " << req.getURI() << ": " << e.what();
    if (!resp.sent()) {
      resp.setKeepAlive(false);
      sendText(resp, HTTPResponse::HTTP_INTERNAL_SERVER_ERROR, "internal error");
    }
  }
  if (auto* c = shared_.counters) {
    int status = static_cast<int>(resp.getStatus());
    if (status >= 100 && status < 600) c->add(kStatus1xx + static_cast<size_t>(status / 100 - 1), 1);
    c->add(kBytesSent, bytesSent_);
    c->add(kBytesReceived, bytesReceived_);
    const std::string& m = req.getMethod();
    c->add(m == "GET" ? kMethodGet : m == "HEAD" ? kMethodHead : m == "PUT" ? kMethodPut
           : m == "DELETE" ? kMethodDelete : kMethodOther, 1);
  }
  if (!shared_.accessLog.enabled()) return;
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  char line[256];
  std::string uri = req.getURI().substr(0, 2048);
  std::snprintf(line, sizeof line, " %d %llu %.3f gen=%llu\n", static_cast<int>(resp.getStatus()),
                static_cast<unsigned long long>(bytesSent_), ms,
                static_cast<unsigned long long>(shared_.generation));
  shared_.accessLog.write(req.clientAddress().toString() + " [" +
                          Poco::DateTimeFormatter::format(Poco::Timestamp(), Poco::DateTimeFormat::ISO8601_FRAC_FORMAT) +
                          "] \"" + req.getMethod() + " " + uri + " " + req.getVersion() + "\"" + line);
}

void ObjectHandler::sendText(HTTPServerResponse& resp, HTTPResponse::HTTPStatus status,
                             const std::string& text) {
  resp.setStatusAndReason(status);
  resp.setContentType("text/plain; charset=utf-8");
  std::string body = text + "\n";
  resp.setContentLength64(static_cast<Poco::UInt64>(body.size()));
  bytesSent_ = body.size();
  beforeSend(resp);
  resp.sendBuffer(body.data(), body.size());
}

void ObjectHandler::discardBody(HTTPServerRequest& req) {
  constexpr uint64_t kMaxDiscard = 64ULL << 20;
  try {
    std::istream& body = req.stream();
    char buf[65536];
    uint64_t dropped = 0;
    while (body && dropped < kMaxDiscard) {
      body.read(buf, sizeof buf);
      dropped += static_cast<uint64_t>(body.gcount());
      if (body.gcount() == 0) break;
    }
  } catch (const Poco::Exception&) {
    // The client went away or stalled past client_timeout; nothing to save.
  }
}

bool ObjectHandler::refuseIfReadOnly(HTTPServerRequest& req, HTTPServerResponse& resp) {
  if (!shared_.readOnly.load()) return false;
  resp.set("Retry-After", "60");
  resp.setKeepAlive(false);  // the request body, if any, is not stored
  sendText(resp, HTTPResponse::HTTP_SERVICE_UNAVAILABLE,
           "server is in read-only mode; writes are refused, reads are served");
  discardBody(req);
  return true;
}

void ObjectHandler::route(HTTPServerRequest& req, HTTPServerResponse& resp) {
  const std::string& uri = req.getURI();
  auto q = uri.find('?');
  std::string rawPath = uri.substr(0, q);
  std::string query = q == std::string::npos ? "" : uri.substr(q + 1);
  auto decoded = percentDecode(rawPath);
  if (!decoded) return sendText(resp, HTTPResponse::HTTP_BAD_REQUEST, "malformed %-escape in path");
  const std::string& method = req.getMethod();
  if (*decoded == "/healthcheck") {
    if (method != "GET" && method != "HEAD") {
      resp.set("Allow", "GET, HEAD");
      return sendText(resp, HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "use GET or HEAD");
    }
    const auto& flag = shared_.config.healthcheckDisableFile;
    struct stat st {};
    if (!flag.empty() && stat(flag.c_str(), &st) == 0)
      return sendText(resp, HTTPResponse::HTTP_SERVICE_UNAVAILABLE, "DISABLED BY FILE");
    return sendText(resp, HTTPResponse::HTTP_OK, "OK");
  }
  auto path = parseObjectPath(*decoded);
  if (!path) return sendText(resp, HTTPResponse::HTTP_NOT_FOUND, "no such resource; objects live under /v1/{bucket}/{key}");
  if (auto problem = bucketProblem(path->bucket); !problem.empty())
    return sendText(resp, HTTPResponse::HTTP_BAD_REQUEST, problem);
  if (path->key.empty()) {
    if (method == "GET" || method == "HEAD") return listBucket(req, resp, path->bucket, query);
    resp.set("Allow", "GET, HEAD");
    return sendText(resp, HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "a bucket supports GET and HEAD");
  }
  if (auto problem = keyProblem(path->key); !problem.empty())
    return sendText(resp, HTTPResponse::HTTP_BAD_REQUEST, problem);
  if (method == "PUT") return putObject(req, resp, *path);
  if (method == "GET" || method == "HEAD") return getObject(req, resp, *path);
  if (method == "DELETE") return deleteObject(req, resp, *path);
  resp.set("Allow", "GET, HEAD, PUT, DELETE");
  sendText(resp, HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "method " + method + " is not supported on objects");
}

void ObjectHandler::putObject(HTTPServerRequest& req, HTTPServerResponse& resp,
                              const ObjectPath& path) {
  if (refuseIfReadOnly(req, resp)) return;
  const uint64_t limit = shared_.config.storage.maxObjectSize;
  bool chunked = req.getChunkedTransferEncoding();
  if (!chunked && !req.hasContentLength()) {
    resp.setKeepAlive(false);
    return sendText(resp, HTTPResponse::HTTP_LENGTH_REQUIRED, "PUT needs Content-Length or chunked transfer encoding");
  }
  if (!chunked && static_cast<uint64_t>(req.getContentLength64()) > limit) {
    resp.setKeepAlive(false);
    sendText(resp, HTTPResponse::HTTP_REQUESTENTITYTOOLARGE,
             "object is larger than max_object_size (" + std::to_string(limit) + " bytes)");
    return discardBody(req);
  }
  std::unique_ptr<Upload> upload;
  try {
    upload = shared_.store.beginUpload(path.bucket, path.key,
                                       chunked ? 0 : static_cast<uint64_t>(req.getContentLength64()));
  } catch (const StoreError& e) {
    resp.setKeepAlive(false);
    sendText(resp, static_cast<HTTPResponse::HTTPStatus>(e.status()), e.what());
    return discardBody(req);
  }
  Poco::MD5Engine md5;
  std::vector<char> buffer(256 * 1024);
  std::optional<ChunkedBody> chunks;
  if (chunked) chunks.emplace(static_cast<Poco::Net::HTTPServerRequestImpl&>(req).session());
  std::istream& body = req.stream();
  auto readBody = [&](char* to, size_t size) -> size_t {
    if (chunks) return chunks->read(to, size);
    body.read(to, static_cast<std::streamsize>(size));
    return static_cast<size_t>(body.gcount());
  };
  uint64_t total = 0;
  for (;;) {
    size_t n = readBody(buffer.data(), buffer.size());
    if (n == 0) break;
    total += n;
    bytesReceived_ = total;
    if (total > limit) {
      resp.setKeepAlive(false);
      sendText(resp, HTTPResponse::HTTP_REQUESTENTITYTOOLARGE,
               "object is larger than max_object_size (" + std::to_string(limit) + " bytes)");
      return discardBody(req);
    }
    md5.update(buffer.data(), n);
    try {
      upload->write(buffer.data(), n);
    } catch (const StoreError& e) {
      upload.reset();  // removes the temp file before we answer
      resp.setKeepAlive(false);
      sendText(resp, static_cast<HTTPResponse::HTTPStatus>(e.status()), e.what());
      return discardBody(req);
    }
  }
  if (!chunked && total != static_cast<uint64_t>(req.getContentLength64())) {
    resp.setKeepAlive(false);
    return sendText(resp, HTTPResponse::HTTP_BAD_REQUEST,
                    "body ended after " + std::to_string(total) + " of " +
                        std::to_string(req.getContentLength64()) + " bytes");
  }
  ObjectMeta meta;
  meta.key = path.key;
  meta.size = total;
  meta.etag = Poco::DigestEngine::digestToHex(md5.digest());
  if (req.has("ETag")) {
    std::string expected = req.get("ETag");
    if (expected.size() >= 2 && expected.front() == '"' && expected.back() == '"')
      expected = expected.substr(1, expected.size() - 2);
    if (Poco::icompare(expected, meta.etag) != 0)
      return sendText(resp, HTTPResponse::HTTP_UNPROCESSABLE_ENTITY,
                      "body MD5 " + meta.etag + " does not match ETag " + expected);
  }
  if (req.has("Content-Type")) meta.contentType = req.getContentType();
  for (const auto& [name, value] : req) {
    if (name.size() > 14 && Poco::icompare(name.substr(0, 14), "X-Object-Meta-") == 0)
      meta.userMeta.emplace_back(name.substr(14), value);
  }
  meta.timestamp = static_cast<double>(Poco::Timestamp().epochMicroseconds()) / 1e6;
  upload->commit(meta);
  resp.set("ETag", quoteEtag(meta.etag));
  resp.set("Last-Modified", httpDate(meta.timestamp));
  resp.setStatusAndReason(HTTPResponse::HTTP_CREATED);
  resp.setContentType("text/plain; charset=utf-8");
  resp.setContentLength(0);
  beforeSend(resp);
  resp.send();
}

void ObjectHandler::getObject(HTTPServerRequest& req, HTTPServerResponse& resp,
                              const ObjectPath& path) {
  auto obj = shared_.store.open(path.bucket, path.key);
  if (!obj) return sendText(resp, HTTPResponse::HTTP_NOT_FOUND, "no such object");
  const ObjectMeta& meta = obj->meta;
  resp.set("ETag", quoteEtag(meta.etag));
  resp.set("Last-Modified", httpDate(meta.timestamp));
  char ts[32];
  std::snprintf(ts, sizeof ts, "%.5f", meta.timestamp);
  resp.set("X-Timestamp", ts);
  resp.set("Accept-Ranges", "bytes");
  for (const auto& [name, value] : meta.userMeta) resp.set("X-Object-Meta-" + name, value);
  if (req.has("If-Match") && !etagListMatches(req.get("If-Match"), meta.etag))
    return sendText(resp, HTTPResponse::HTTP_PRECONDITION_FAILED, "If-Match does not match the object's ETag");
  if (req.has("If-None-Match") && etagListMatches(req.get("If-None-Match"), meta.etag)) {
    resp.setStatusAndReason(HTTPResponse::HTTP_NOT_MODIFIED);
    resp.setContentLength(0);
    beforeSend(resp);
    resp.send();
    return;
  }
  resp.setContentType(meta.contentType);
  uint64_t offset = 0, length = meta.size;
  if (req.has("Range")) {
    ByteRange range;
    switch (parseRange(req.get("Range"), meta.size, range)) {
      case RangeResult::kUnsatisfiable:
        resp.set("Content-Range", "bytes */" + std::to_string(meta.size));
        return sendText(resp, HTTPResponse::HTTP_REQUESTED_RANGE_NOT_SATISFIABLE,
                        "range is outside the object's " + std::to_string(meta.size) + " bytes");
      case RangeResult::kSatisfiable:
        offset = range.first;
        length = range.last - range.first + 1;
        resp.setStatusAndReason(HTTPResponse::HTTP_PARTIAL_CONTENT);
        resp.set("Content-Range", "bytes " + std::to_string(range.first) + "-" +
                                      std::to_string(range.last) + "/" + std::to_string(meta.size));
        break;
      case RangeResult::kNone: break;
    }
  }
  resp.setContentLength64(static_cast<Poco::UInt64>(length));
  sendBody(req, resp, *obj, offset, length);
}

void ObjectHandler::sendBody(HTTPServerRequest& req, HTTPServerResponse& resp,
                             const OpenObject& obj, uint64_t offset, uint64_t length) {
  beforeSend(resp);
  constexpr uint64_t kSmallObject = 64 * 1024;
  if (req.getMethod() != "HEAD" && length > 0 && length <= kSmallObject) {
    // Small bodies go out with the headers in one write.
    char body[kSmallObject];
    ssize_t n = pread(obj.fd.get(), body, length, static_cast<off_t>(offset));
    if (n != static_cast<ssize_t>(length))
      throw StoreError(500, "short read of " + obj.volume + ": " + std::strerror(errno));
    bytesSent_ = length;
    resp.sendBuffer(body, length);
    return;
  }
  std::ostream& out = resp.send();
  if (req.getMethod() == "HEAD" || length == 0) return;
  out.flush();
  if (!out) return;
  // The headers are on the wire; the body goes straight from the page cache.
  int sock = static_cast<Poco::Net::HTTPServerRequestImpl&>(req).socket().impl()->sockfd();
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(shared_.clientTimeout);
  tv.tv_usec = static_cast<suseconds_t>((shared_.clientTimeout - static_cast<double>(tv.tv_sec)) * 1e6);
  setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  auto pos = static_cast<off_t>(offset);
  uint64_t left = length;
  while (left > 0) {
    ssize_t n = sendfile(sock, obj.fd.get(), &pos, std::min<uint64_t>(left, 1ULL << 30));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // The client went away or stopped reading for client_timeout: the
      // response cannot be completed, so the connection must not be reused.
      resp.setKeepAlive(false);
      throw Poco::Net::NetException(std::string("sendfile: ") + (n < 0 ? std::strerror(errno) : "file shrank"));
    }
    left -= static_cast<uint64_t>(n);
    bytesSent_ += static_cast<uint64_t>(n);
  }
}

void ObjectHandler::deleteObject(HTTPServerRequest& req, HTTPServerResponse& resp,
                                 const ObjectPath& path) {
  if (refuseIfReadOnly(req, resp)) return;
  if (!shared_.store.remove(path.bucket, path.key))
    return sendText(resp, HTTPResponse::HTTP_NOT_FOUND, "no such object");
  resp.setStatusAndReason(HTTPResponse::HTTP_NO_CONTENT);
  resp.setContentLength(0);
  beforeSend(resp);
  resp.send();
}

void ObjectHandler::listBucket(HTTPServerRequest& req, HTTPServerResponse& resp,
                               const std::string& bucket, const std::string& query) {
  std::string prefix, marker;
  size_t limit = shared_.config.listingLimit;
  std::istringstream params(query);
  std::string pair;
  while (std::getline(params, pair, '&')) {
    auto eq = pair.find('=');
    std::string name = pair.substr(0, eq);
    std::string raw = eq == std::string::npos ? "" : pair.substr(eq + 1);
    for (char& c : raw)
      if (c == '+') c = ' ';
    auto value = percentDecode(raw);
    if (!value) return sendText(resp, HTTPResponse::HTTP_BAD_REQUEST, "malformed %-escape in query");
    if (name == "prefix") prefix = *value;
    else if (name == "marker") marker = *value;
    else if (name == "limit") {
      if (value->empty() || value->size() > 9 || value->find_first_not_of("0123456789") != std::string::npos)
        return sendText(resp, HTTPResponse::HTTP_BAD_REQUEST, "limit must be a whole number");
      size_t asked = std::stoul(*value);
      if (asked > shared_.config.listingLimit)
        return sendText(resp, HTTPResponse::HTTP_PRECONDITION_FAILED,
                        "limit may be at most " + std::to_string(shared_.config.listingLimit));
      limit = asked;
    }
  }
  reload::JsonArray items;
  for (const auto& meta : shared_.store.list(bucket, prefix, marker, limit)) {
    reload::JsonObject o;
    o.add("name", meta.key);
    o.add("bytes", meta.size);
    o.add("hash", meta.etag);
    o.add("content_type", meta.contentType);
    o.add("last_modified", Poco::DateTimeFormatter::format(
                               Poco::Timestamp(static_cast<Poco::Timestamp::TimeVal>(meta.timestamp * 1e6)),
                               Poco::DateTimeFormat::ISO8601_FRAC_FORMAT));
    items.push(o);
  }
  std::string body = items.str() + "\n";
  resp.setContentType("application/json; charset=utf-8");
  resp.setContentLength64(static_cast<Poco::UInt64>(body.size()));
  bytesSent_ = body.size();
  beforeSend(resp);
  if (req.getMethod() == "HEAD") {
    resp.send();
    return;
  }
  resp.sendBuffer(body.data(), body.size());
}

}  // namespace

Poco::Net::HTTPRequestHandler* ObjectHandlerFactory::createRequestHandler(
    const Poco::Net::HTTPServerRequest& /*request*/) {
  return new ObjectHandler(shared_);
}

}  // namespace server
