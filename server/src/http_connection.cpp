#include "http_connection.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <boost/algorithm/string/predicate.hpp>

#include <cmath>
#include <cstdint>
#include <optional>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "disk_pool.h"
#include "test_fault_hooks.h"
#include "md5.h"
#include "object_versions.h"
#include "open_file_cache.h"
#include "object_key.h"
#include "reload/json.h"
#include "reload/log.h"
#include "reload/process.h"

namespace server {

namespace {

// Every connection reads through this buffer and keeps only what is left
// over, so an idle connection holds no buffer at all. One loop per process.
char scratch[64 * 1024];

constexpr uint64_t kSmallObject = 64 * 1024;        // sent with its headers in one write
// sendfile() reads the file on the loop's thread: a window the page cache
// does not hold is read in by the pool first, while the one before it is sent.
constexpr uint64_t kSendWindow = 2 << 20;
constexpr int kWindowsAhead = 2;
constexpr size_t kUploadBuffer = 256 * 1024;        // per buffer; two per upload
// The most of a body's end that the loop hashes and the commit writes with
// the metadata (a larger end takes a write step on the pool first).
constexpr size_t kCommitTailLimit = 16 * 1024;
constexpr uint64_t kMaxLingerBytes = 64ULL << 20;   // dropped after an early answer
constexpr int64_t kMaxLingerMs = 30000;

std::string peerName(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "-";
  char host[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (addr.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "local";
}

bool methodIs(const std::string& method, const char* name) { return method == name; }

int64_t wallClockMicroseconds() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);  // cannot fail with a valid clock and pointer
  return int64_t{now.tv_sec} * 1000000 + now.tv_nsec / 1000;
}

// "2026-12-02T21:50:22.123456Z", as listings have always shown it.
std::string iso8601Microseconds(int64_t microseconds) {
  int64_t seconds = microseconds / 1000000;
  int64_t fraction = microseconds % 1000000;
  if (fraction < 0) {
    fraction += 1000000;
    --seconds;
  }
  time_t when = static_cast<time_t>(seconds);
  tm parts{};
  if (gmtime_r(&when, &parts) == nullptr) return "";
  char text[64];
  size_t used = strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &parts);
  std::snprintf(text + used, sizeof text - used, ".%06lldZ", static_cast<long long>(fraction));
  return text;
}

// RFC 9112 3.2.2: a server accepts a target in absolute form
// ("http://host/v1/b/k"); what it names is the path and query after the
// authority.
// A view into `target`, or into `joined` for a query without a path.
std::string_view originForm(const std::string& target, std::string& joined) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() < scheme.size() ||
        !boost::iequals(std::string_view(target).substr(0, scheme.size()), scheme))
      continue;
    auto pathStart = target.find_first_of("/?", scheme.size());
    if (pathStart == std::string::npos) return "/";
    std::string_view rest = std::string_view(target).substr(pathStart);
    if (rest.front() != '?') return rest;
    joined.assign("/");
    joined.append(rest);
    return joined;
  }
  return target;
}

// Scratch strings a connection keeps between requests so that the next one
// of the same shape allocates nothing; past this they are given back, so an
// idle connection stays small.
constexpr size_t kKeptScratchBytes = 256;

void releaseIfLarge(std::string& kept) {
  if (kept.capacity() > kKeptScratchBytes) std::string().swap(kept);
}

}  // namespace

// Shared by the connection and each of its steps on the pool (or in a
// volume's group commit): a step keeps alive what it works on however the
// connection ends meanwhile. One step at a time is out, and while it is,
// the loop neither reads nor lets go of what the step uses.
struct Connection::UploadState {
  std::shared_ptr<Upload> upload;
  Md5 md5;
  std::string filling;  // taken from the socket, not yet handed to the pool
  std::string flying;   // being written by the pool
  bool writing = false;
  bool storing = false;    // beginUpload or the commit is under way
  bool finishing = false;  // the body is complete; commit once written
  bool tooLarge = false;
  bool createAtCommit = false;  // the temp file is created by the commit's step
  uint64_t announced = 0;       // Content-Length, 0 when chunked
  // Answered already, or the connection is gone: the upload is dropped (its
  // temp file removed, unless the commit placed it) once its step is back.
  bool abandoned = false;
  ObjectPath path;
  uint64_t total = 0;
  // Written by a pool thread while a step runs; the loop reads them only in
  // that step's completion (the pool's hand-back orders the two).
  int errorStatus = 0;
  std::string error;

  bool stepOut() const { return writing || storing; }

  // Runs a store step (on the pool); its error becomes the answer.
  template <typename Step>
  void attempt(Step step) {
    try {
      step();
    } catch (const StoreError& e) {
      errorStatus = e.status();
      error = e.what();
    } catch (const std::exception& e) {
      errorStatus = 500;
      error = e.what();
    }
  }
};

Connection::Connection(WorkerShared& shared, ConnectionOwner& owner, int fd, bool refuse)
    : reload::Timer(shared.loop), shared_(shared), owner_(owner), fd_(fd), refused_(refuse) {}

Connection::~Connection() {
  if (fd_ >= 0) ::close(fd_);
  // A connection closed while its upload was being written is destroyed
  // once the write is back: its temp file is still removed on the pool.
  try {
    dropUpload();
  } catch (const std::exception& e) {
    MOLT_LOG(kError) << "cannot hand an abandoned upload to the disk pool: " << e.what();
  }
}

void Connection::start() {
  if (shared_.accessLog.enabled()) peer_ = peerName(fd_);
  if (refused_) {
    closeAfter_ = true;
    lingerAfter_ = true;
    beginResponse(503);
    addHeader("Retry-After", "1");
    std::string body = "this worker is at max_connections; try again\n";
    addHeader("Content-Type", "text/plain; charset=utf-8");
    endHeaders(body.size());
    outBuf_ += body;
    startSending();
  } else {
    armHeaderOrIdleTimer();
  }
  guarded([this] { advance(); });
  if (phase_ != Phase::kClosed && !watched_) watch();
}

void Connection::watch() {
  // Edge-triggered: what the socket already holds is reported at once,
  // so nothing that came before this call is missed.
  shared_.loop.add(fd_, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, this);
  watched_ = true;
}

void Connection::setNoDelay() {
  if (noDelay_) return;
  noDelay_ = true;
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // fails harmlessly on Unix sockets
}

void Connection::onEvents(uint32_t events) {
  if (phase_ == Phase::kClosed) return;
  if (events & EPOLLERR) return close();
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) readReady_ = true;
  if (events & (EPOLLRDHUP | EPOLLHUP)) peerShutWrite_ = true;
  if (events & (EPOLLOUT | EPOLLHUP)) writeReady_ = true;
  guarded([this] { advance(); });
}

void Connection::advance() {
  for (;;) {
    bool progressed = false;
    switch (phase_) {
      case Phase::kHeader: progressed = stepHeader(); break;
      case Phase::kBody: progressed = stepBody(); break;
      case Phase::kRespond: progressed = stepRespond(); break;
      case Phase::kSendFile: progressed = stepSendFile(); break;
      case Phase::kLinger: progressed = stepLinger(); break;
      case Phase::kWaitDisk:
      case Phase::kClosed: break;
    }
    if (!progressed) break;
  }
  if (!watched_ && phase_ != Phase::kClosed) watch();
}

ssize_t Connection::readSome(char*& data) {
  if (!readReady_) return -1;
  ssize_t n = recv(fd_, scratch, sizeof scratch, 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) {
      readReady_ = false;
      return -1;
    }
    close();  // reset by the peer
    return -1;
  }
  // A short read drained the socket; an edge will report more. Not so once
  // the peer has shut its side: the end of stream must still be read.
  if (static_cast<size_t>(n) < sizeof scratch && n > 0 && !peerShutWrite_) readReady_ = false;
  data = scratch;
  return n;
}

// ----------------------------------------------------------------- header

void Connection::armHeaderOrIdleTimer() {
  if (inBuf_.empty() && !(parser_ && parser_->got_some())) {
    headerTimerArmed_ = false;
    int64_t wait = requestsServed_ > 0 || shared_.drain.draining() ? shared_.keepaliveTimeoutMs
                                                                   : shared_.headerTimeoutMs;
    arm(shared_.loop.nowMs() + wait);
  } else if (!headerTimerArmed_) {
    // The whole header must arrive within the deadline, however it trickles.
    headerTimerArmed_ = true;
    arm(shared_.loop.nowMs() + shared_.headerTimeoutMs);
  }
}

Connection::Fed Connection::feedSome(RequestProblem& problem, bool mayRead) {
  // Made when the first bytes of a request come: an idle connection has none.
  auto parser = [this]() -> RequestParser& {
    if (!parser_) parser_.emplace(request_, shared_.headerLimits, nullptr);
    return *parser_;
  };
  if (!inBuf_.empty()) {
    size_t used = parser().feed(inBuf_, problem);
    inBuf_.erase(0, used);
    if (used > 0 || problem.status) return Fed::kFed;
  }
  if (!mayRead) return Fed::kWaiting;
  char* data = nullptr;
  ssize_t n = readSome(data);
  if (n < 0) return Fed::kWaiting;
  if (n == 0) {
    peerClosed_ = true;
    return Fed::kEnd;
  }
  if (!inBuf_.empty()) {  // the parser needs what is left joined with what came
    inBuf_.append(data, static_cast<size_t>(n));
    return Fed::kFed;
  }
  size_t used = parser().feed(std::string_view(data, static_cast<size_t>(n)), problem);
  if (used < static_cast<size_t>(n)) inBuf_.append(data + used, static_cast<size_t>(n) - used);
  return Fed::kFed;
}

bool Connection::stepHeader() {
  RequestProblem problem;
  switch (feedSome(problem, true)) {
    case Fed::kWaiting:
      if (phase_ == Phase::kHeader) armHeaderOrIdleTimer();  // not when an error closed it
      return false;
    case Fed::kEnd:
      if (inBuf_.empty() && !(parser_ && parser_->got_some())) {
        close();  // a clean end between requests
        return false;
      }
      respondProblem({400, "connection closed inside the request header"});
      return true;
    case Fed::kFed: break;
  }
  if (problem.status) {
    respondProblem(problem);
  } else if (parser_->is_header_done()) {
    dispatch();
  } else if (inBuf_.size() > shared_.headerLimits.maxHeaderBytes + sizeof scratch) {
    respondProblem({431, "request header is larger than " +
                             std::to_string(shared_.headerLimits.maxHeaderBytes) + " bytes"});
  } else {
    armHeaderOrIdleTimer();
  }
  return true;
}

// --------------------------------------------------------------- dispatch

void Connection::dispatch() {
  headerTimerArmed_ = false;
  cancel();
  if (shared_.accessLog.enabled()) startedSeconds_ = reload::monotonicSeconds();
  closeAfter_ = !request_.keepAlive;
  headOnly_ = methodIs(request_.method, "HEAD");
  std::string_view target = originForm(request_.target, targetScratch_);
  auto q = target.find('?');
  std::string_view rawPath = target.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  route(rawPath, query);
}

void Connection::route(std::string_view rawPath, std::string_view query) {
  if (testFaultHooks.routing) testFaultHooks.routing(request_.target);
  const std::string& method = request_.method;
  std::string_view decoded = rawPath;
  if (rawPath.find('%') != std::string_view::npos) {
    if (!percentDecodeInto(rawPath, decodedPath_)) return sendText(400, "malformed %-escape in path");
    decoded = decodedPath_;
  }
  if (decoded == "/healthcheck") {
    if (!methodIs(method, "GET") && !methodIs(method, "HEAD")) {
      beginResponse(405);
      addHeader("Allow", "GET, HEAD");
      return sendText(405, "use GET or HEAD");
    }
    const auto& flag = shared_.config.healthcheckDisableFile;
    if (flag.empty()) return sendText(200, "OK");
    // A stat() may wait on a slow disk: the pool does it.
    auto disabled = std::make_shared<bool>(false);
    return runOnDisk(
        [disabled, flag] {
          struct stat st {};
          *disabled = stat(flag.c_str(), &st) == 0;
        },
        [this, disabled] { *disabled ? sendText(503, "DISABLED BY FILE") : sendText(200, "OK"); });
  }
  if (!parseObjectPathInto(decoded, objectPath_))
    return sendText(404, "no such resource; objects live under /v1/{bucket}/{key}");
  const ObjectPath& path = objectPath_;
  if (auto problem = bucketProblem(path.bucket); !problem.empty()) return sendText(400, problem);
  if (path.key.empty()) {
    if (methodIs(method, "GET") || methodIs(method, "HEAD")) return listBucket(path.bucket, std::string(query));
    beginResponse(405);
    addHeader("Allow", "GET, HEAD");
    return sendText(405, "a bucket supports GET and HEAD");
  }
  if (auto problem = keyProblem(path.key); !problem.empty()) return sendText(400, problem);
  if (methodIs(method, "PUT")) return putObject(path);
  if (methodIs(method, "GET") || methodIs(method, "HEAD")) return getObject(path);
  if (methodIs(method, "DELETE")) return deleteObject(path);
  beginResponse(405);
  addHeader("Allow", "GET, HEAD, PUT, DELETE");
  sendText(405, "method " + method + " is not supported on objects");
}

bool Connection::refuseIfReadOnly() {
  if (!shared_.readOnly) return false;
  beginResponse(503);
  addHeader("Retry-After", "60");
  sendText(503, "server is in read-only mode; writes are refused, reads are served");
  return true;
}

// A task counts as pending from the moment it is the pool's; one the pool
// refused (it threw) never comes back, so it is not counted.
void Connection::submitDisk(std::function<void()> work, std::function<void()> done,
                            StepEnded stepEnded) {
  auto back = diskDone(std::move(done));
  auto failed = diskFailed(std::move(stepEnded));
  ++pendingDisk_;
  try {
    shared_.pool->submit(std::move(work), std::move(back), std::move(failed));
  } catch (...) {
    --pendingDisk_;
    throw;
  }
}

void Connection::submitDiskDeferred(std::function<void(DiskPool::Finish)> work,
                                    std::function<void()> done, StepEnded stepEnded) {
  auto back = diskDone(std::move(done));
  auto failed = diskFailed(std::move(stepEnded));
  ++pendingDisk_;
  try {
    shared_.pool->submitDeferred(std::move(work), std::move(back), std::move(failed));
  } catch (...) {
    --pendingDisk_;
    throw;
  }
}

std::function<void()> Connection::diskDone(std::function<void()> done) {
  return [this, next = std::move(done)] {
    --pendingDisk_;
    if (phase_ == Phase::kClosed) return closedTaskBack();
    guarded([&] {
      if (testFaultHooks.diskCompletion) testFaultHooks.diskCompletion(request_.target);
      next();
      advance();
    });
  };
}

DiskPool::Failed Connection::diskFailed(StepEnded stepEnded) {
  // A store step that threw (the pool logged it): this request ends with
  // that answer, or, mid-answer, with the connection.
  return [this, stepEnded = std::move(stepEnded)](int status, const std::string& text) {
    --pendingDisk_;
    if (phase_ == Phase::kClosed) {
      if (stepEnded) guarded([&] { stepEnded(); });
      return closedTaskBack();
    }
    guarded([&] {
      // An upload answered already: its temp file goes with it, and the
      // request served now is not this step's.
      if (stepEnded && !stepEnded()) return advance();
      abandonUpload();
      if (phase_ != Phase::kWaitDisk) return cut();
      closeAfter_ = true;
      if (status == 507)
        sendStoreError(status, text);
      else
        sendText(status, text);
      advance();
    });
  };
}

void Connection::closedTaskBack() {
  if (pendingDisk_ > 0) return;
  // Nothing of the connection is on the pool any more: an upload its
  // client left is dropped now (on the pool), and then the connection.
  if (upload_) {
    MOLT_LOG(kDebug) << "dropping the upload of " << upload_->path.bucket << "/"
                     << upload_->path.key.substr(0, 256) << ": its connection closed";
    guarded([this] { dropUpload(); });
  }
  owner_.connectionClosed(this);
}

template <typename Step>
void Connection::guarded(Step step) noexcept {
  try {
    step();
    return;
  } catch (const std::exception& e) {
    requestFailed(e.what());
  } catch (...) {
    requestFailed("an exception that is not a std::exception");
  }
}

void Connection::requestFailed(const char* what) noexcept {
  // One request's failure ends that request and its connection, never the
  // worker and the other connections on it.
  try {
    MOLT_LOG(kError) << "request " << request_.method << " " << request_.target.substr(0, 256)
                     << " failed: " << what;
    if (phase_ == Phase::kClosed) return;
    bool answerStarted = (responseStarted_ && outSent_ > 0) || phase_ == Phase::kSendFile ||
                         phase_ == Phase::kLinger;
    if (answerStarted) return close();  // the client sees the answer cut short
    abandonUpload();
    file_.reset();
    closeAfter_ = true;
    responseStarted_ = false;
    outBuf_.clear();
    outSent_ = 0;
    body_.reset();
    bodyData_ = nullptr;
    bodyLeft_ = 0;
    sendText(500, "internal error; see the server log");
    advance();
  } catch (...) {
    close();
  }
}

void Connection::runOnDisk(std::function<void()> work, std::function<void()> done,
                           StepEnded stepEnded) {
  phase_ = Phase::kWaitDisk;
  submitDisk(std::move(work), std::move(done), std::move(stepEnded));
}

// -------------------------------------------------------------------- PUT

ObjectMeta Connection::metaFromHeader(const ObjectPath& path) const {
  ObjectMeta meta;
  meta.key = path.key;
  if (const auto* type = request_.find("Content-Type")) meta.contentType = *type;
  for (const auto& [name, value] : request_.fields)
    if (name.size() > 14 && boost::iequals(std::string_view(name).substr(0, 14), "X-Object-Meta-"))
      meta.userMeta.emplace_back(name.substr(14), value);
  return meta;
}

void Connection::putObject(const ObjectPath& path) {
  if (refuseIfReadOnly()) return;
  const uint64_t limit = shared_.config.storage.maxObjectSize;
  if (!request_.chunked && !request_.contentLength) {
    return sendText(411, "PUT needs Content-Length or chunked transfer encoding");
  }
  if (!request_.chunked && *request_.contentLength > limit) {
    return sendText(413, "object is larger than max_object_size (" + std::to_string(limit) + " bytes)");
  }
  {
    // The metadata is whole with the header: one too large to store is
    // refused now, not after the body. Size, ETag and time at their widest.
    ObjectMeta widest = metaFromHeader(path);
    widest.size = UINT64_MAX;
    widest.etag = std::string(32, 'f');
    widest.timestamp = 9999999999.99999;
    if (encodeMeta(widest).size() > kMaxEncodedMetaBytes)
      return sendText(400, "object metadata is larger than " + std::to_string(kMaxEncodedMetaBytes) +
                               " bytes once encoded");
  }
  whenWritePreconditionsHold(path, [this, path] { beginPut(path); });
}

// As Swift's object server does, the preconditions are evaluated against
// the object as it is when the request arrives (before any body is taken,
// so a client that waits for 100 Continue sends nothing for a 412). Two
// conditional writes of one key that race may both pass.
void Connection::whenWritePreconditionsHold(const ObjectPath& path, std::function<void()> proceed) {
  if (!request_.find("If-Match") && !request_.find("If-None-Match") &&
      !request_.find("If-Unmodified-Since"))
    return proceed();
  auto decide = [this, proceed = std::move(proceed)](const std::optional<ObjectMeta>& current) {
    if (const char* failed = failedWritePrecondition(current)) return sendText(412, failed);
    proceed();
  };
  // On the pool always: conditional writes are rare, and one path is one
  // path to test.
  auto current = std::make_shared<std::optional<ObjectMeta>>();
  runOnDisk(
      [current, &store = shared_.store, path] {
        if (auto object = store.open(path.bucket, path.key)) *current = std::move(object->meta);
      },
      [current, decide] { decide(*current); });
}

const char* Connection::failedWritePrecondition(const std::optional<ObjectMeta>& current) const {
  if (auto ifMatch = request_.list("If-Match")) {
    if (!current) return "If-Match names an object that does not exist";
    if (!etagListMatches(*ifMatch, current->etag, true)) return "If-Match does not match the object's ETag";
  } else if (const std::string* ifUnmodified = request_.find("If-Unmodified-Since")) {
    auto since = parseHttpDate(*ifUnmodified);
    if (current && since && *since < static_cast<int64_t>(std::floor(current->timestamp)))
      return "the object was modified after If-Unmodified-Since";
  }
  if (auto ifNoneMatch = request_.list("If-None-Match"))
    if (current && etagListMatches(*ifNoneMatch, current->etag))
      return "If-None-Match matches the object";
  return nullptr;
}

void Connection::beginPut(const ObjectPath& path) {
  upload_ = std::make_shared<UploadState>();
  upload_->path = path;
  uint64_t announced = request_.chunked ? 0 : *request_.contentLength;
  upload_->announced = announced;
  if (!request_.chunked && announced <= kCommitTailLimit && !request_.expectContinue) {
    // A small body is kept on the loop whole: its file is created in the
    // commit's step, so the PUT takes one pool step, not three. A client
    // that asked whether to send waits for the early step's answer instead.
    upload_->createAtCommit = true;
    return startUploadBody();
  }
  upload_->storing = true;
  std::shared_ptr<UploadState> state = upload_;
  runOnDisk(
      [state, &store = shared_.store, path, announced] {
        state->attempt([&] { state->upload = store.beginUpload(path.bucket, path.key, announced); });
      },
      [this, state] {
        state->storing = false;
        if (!stillServes(state)) return;
        if (state->errorStatus) return sendStoreError(state->errorStatus, state->error);
        startUploadBody();
      },
      [this, state] {
        state->storing = false;
        return stillServes(state);
      });
}

void Connection::startUploadBody() {
  phase_ = Phase::kBody;
  parser_->setSink(this);
  parser_->setMaxBodyBytes(shared_.config.storage.maxObjectSize);
  upload_->filling.reserve(upload_->createAtCommit ? upload_->announced : kUploadBuffer);
  if (request_.expectContinue && inBuf_.empty() && !parser_->is_done())
    outBuf_ = "HTTP/1.1 100 Continue\r\n\r\n";
  progressMark_ = 0;
  arm(shared_.loop.nowMs() + shared_.clientTimeoutMs);
  if (parser_->is_done()) finishUpload();
}

size_t Connection::takeBody(std::string_view body) {
  auto& up = *upload_;
  if (up.tooLarge || up.abandoned) return 0;
  if (up.total + body.size() > shared_.config.storage.maxObjectSize) {
    up.tooLarge = true;
    return 0;
  }
  size_t room = kUploadBuffer - up.filling.size();
  size_t n = std::min(room, body.size());
  up.filling.append(body.data(), n);
  up.total += n;
  bytesReceived_ += n;
  if (up.filling.size() == kUploadBuffer && !up.writing) submitUploadWrite();
  return n;
}

void Connection::submitUploadWrite() {
  std::shared_ptr<UploadState> state = upload_;
  state->flying.swap(state->filling);
  state->filling.clear();
  state->filling.reserve(kUploadBuffer);
  state->writing = true;
  submitDisk(
      [state] {
        state->attempt([&] {
          state->md5.update(state->flying.data(), state->flying.size());
          state->upload->write(state->flying.data(), state->flying.size());
        });
      },
      [this, state] {
        state->writing = false;
        state->flying.clear();
        if (!stillServes(state)) return;
        if (state->errorStatus) {
          uploadFailed(state->errorStatus, state->error);
        } else {
          if (state->filling.size() == kUploadBuffer) submitUploadWrite();
          if (state->finishing) finishUpload();
        }
      },
      [this, state] {
        state->writing = false;
        state->flying.clear();
        return stillServes(state);
      });
}

bool Connection::stillServes(const std::shared_ptr<UploadState>& state) {
  if (upload_ == state && !state->abandoned) return true;
  // Answered while the step was out (or a step of an upload left behind).
  if (upload_ == state) dropUpload();
  else releaseUpload(*state);
  return false;
}

void Connection::abandonUpload() {
  // A step on the pool still uses the upload: it is dropped once the step
  // is back (stillServes, or closedTaskBack once the connection is gone).
  if (!upload_) return;
  if (upload_->stepOut()) upload_->abandoned = true;
  else dropUpload();
}

void Connection::dropUpload() {
  if (upload_) releaseUpload(*upload_);
  upload_.reset();
}

void Connection::releaseUpload(UploadState& state) {
  // An upload not committed unlinks its temp file as it goes: on the pool,
  // never on the loop. One committed only closes its descriptor.
  if (!state.upload) return;
  std::shared_ptr<Upload> upload(std::move(state.upload));
  if (upload->committed()) return;
  // Moved in: were the loop left a copy, the pool could end its own first
  // and the loop's would unlink.
  shared_.pool->submit([upload = std::move(upload)]() mutable { upload.reset(); }, {});
}

void Connection::uploadFailed(int status, std::string message) {
  abandonUpload();
  sendStoreError(status, message);
}

bool Connection::bodyFed(const RequestProblem& problem) {
  if (problem.status) {
    abandonUpload();
    respondProblem(problem);
    return true;
  }
  if (upload_->tooLarge) {
    uploadFailed(413, "object is larger than max_object_size (" +
                          std::to_string(shared_.config.storage.maxObjectSize) + " bytes)");
    return true;
  }
  if (parser_->is_done()) {
    finishUpload();
    return true;
  }
  return false;
}

bool Connection::stepBody() {
  if (!outBuf_.empty() && writeReady_) {  // 100 Continue
    setNoDelay();  // the final answer follows it
    ssize_t n = send(fd_, outBuf_.data() + outSent_, outBuf_.size() - outSent_, MSG_NOSIGNAL);
    if (n > 0) {
      outSent_ += static_cast<size_t>(n);
      socketBytesWritten_ += static_cast<uint64_t>(n);
    }
    else if (errno == EAGAIN) writeReady_ = false;
    if (outSent_ == outBuf_.size()) {
      outBuf_.clear();
      outSent_ = 0;
    }
  }
  RequestProblem problem;
  // Both upload buffers full: the pool's completion resumes reading.
  bool sinkFull = upload_->filling.size() == kUploadBuffer;
  switch (feedSome(problem, !sinkFull)) {
    case Fed::kWaiting: return false;
    case Fed::kEnd:
      parser_->feedEof(problem);
      if (!problem.status) problem = {400, "connection closed inside the request body"};
      break;
    case Fed::kFed: break;
  }
  bodyFed(problem);
  return true;
}

void Connection::finishUpload() {
  auto& up = *upload_;
  cancel();
  // A short last piece (a small object's whole body) goes with the
  // metadata in the commit's one write: no pool step of its own.
  if (up.writing || up.filling.size() > kCommitTailLimit) {
    up.finishing = true;
    phase_ = Phase::kWaitDisk;
    if (!up.writing) submitUploadWrite();
    return;
  }
  up.finishing = false;
  up.md5.update(up.filling.data(), up.filling.size());
  ObjectMeta meta = metaFromHeader(up.path);
  meta.size = up.total;
  meta.etag = up.md5.hexDigest();
  if (const auto* expected = request_.find("ETag")) {
    std::string tag = *expected;
    if (tag.size() >= 2 && tag.front() == '"' && tag.back() == '"') tag = tag.substr(1, tag.size() - 2);
    if (!boost::iequals(tag, meta.etag)) {
      abandonUpload();
      return sendText(422, "body MD5 " + meta.etag + " does not match ETag " + tag);
    }
  }
  meta.timestamp = static_cast<double>(wallClockMicroseconds()) / 1e6;
  std::shared_ptr<UploadState> state = upload_;
  // Marked before any file is touched and bumped as soon as the store
  // returns, on the pool, whatever the outcome and whether or not the
  // client is still there: a reader's cached copy is never used past it.
  std::shared_ptr<VersionWrite> mark =
      shared_.versions.beginWrite(versionSlot(up.path.bucket, up.path.key));
  phase_ = Phase::kWaitDisk;
  state->storing = true;
  DiskPool* pool = shared_.pool;
  // The wait for the group commit holds no pool thread: the commit's end
  // comes from the thread that leads the volume's batch, and what follows it
  // (older copies on other volumes, which may be slow or hung) goes back to
  // the pool, off that leader.
  submitDiskDeferred(
      [state, meta, mark, pool, &store = shared_.store](DiskPool::Finish finish) {
        auto afterPlaced = [state, meta, mark, pool, finish](std::exception_ptr failure) {
          auto rest = [state, meta, mark, finish, failure] {
            if (failure) state->attempt([&] { std::rethrow_exception(failure); });
            else state->attempt([&] { state->upload->removeOlderCopies(meta); });
            mark->end();
            finish(nullptr);
          };
          if (failure || !state->upload->othersMayHoldCopies()) return rest();
          try {
            pool->submit(rest, {});
          } catch (...) {
            rest();
          }
        };
        bool handedIn = false;
        state->attempt([&] {
          if (!state->upload)
            state->upload = store.beginUpload(state->path.bucket, state->path.key, state->announced);
          state->upload->commitAsync(meta, state->filling, afterPlaced);
          handedIn = true;
        });
        if (!handedIn) {
          mark->end();
          finish(nullptr);
        }
      },
      [this, state, meta] {
        state->storing = false;
        if (!stillServes(state)) return;
        int status = state->errorStatus;
        std::string error = state->error;
        dropUpload();  // a failed one's temp file is removed on the pool
        if (status) return sendStoreError(status, error);
        beginResponse(201);
        addHeader("ETag", quoteEtag(meta.etag));
        addHeader("Last-Modified", httpDate(meta.timestamp));
        addHeader("Content-Type", "text/plain; charset=utf-8");
        endHeaders(0);
        startSending();
      },
      [this, state] {
        state->storing = false;
        return stillServes(state);
      });
}

// -------------------------------------------------------------------- GET

void Connection::getObject(const ObjectPath& path) {
  const size_t slot = versionSlot(path.bucket, path.key);
  if (shared_.cacheUsable()) {
    if (auto hit = shared_.cache.find(path.bucket, path.key, slot)) return answerGet(hit);
  }
  // Taken before the object is opened: a write answered after this shows
  // as another stamp, and what is opened now is then never used again.
  const VersionStamp before = shared_.versions.stamp(slot);
  const uint64_t listVersion = shared_.store.volumeListVersion();
  std::optional<OpenObject> found;
  auto attempt = shared_.store.tryOpenCached(path.bucket, path.key, found, !headOnly_);
  if (attempt == ObjectStore::Attempt::kFound) {
    auto object = describeObject(std::move(*found));
    object->slot = slot;
    // Read whole unless a HEAD or too large for that: a descriptor is kept
    // only for the large.
    if (shared_.mayKeep(listVersion))
      shared_.cache.keep(path.bucket, path.key, object, before, !headOnly_);
    return answerGet(object);
  }
  if (attempt == ObjectStore::Attempt::kMissing) return sendText(404, "no such object");
  auto result = std::make_shared<std::optional<OpenObject>>();
  runOnDisk([result, &store = shared_.store, path] { *result = store.open(path.bucket, path.key); },
            [this, result, path, slot, before, listVersion] {
              if (!*result) return sendText(404, "no such object");
              auto object = describeObject(std::move(**result));
              object->slot = slot;
              if (shared_.mayKeep(listVersion))
                shared_.cache.keep(path.bucket, path.key, object, before,
                                   object->meta.size > ObjectStore::kWholeReadLimit);
              answerGet(object);
            });
}

void Connection::answerGet(std::shared_ptr<const CachedObject> object) {
  const ObjectMeta& meta = object->meta;
  auto common = [&](int status) {
    beginResponse(status);
    outBuf_ += object->headers;
  };
  // RFC 9110 13.2.2: the preconditions in their order; a date is compared
  // with Last-Modified, which is the timestamp to the second.
  const int64_t lastModified = static_cast<int64_t>(std::floor(meta.timestamp));
  auto dateField = [this](const char* name) -> std::optional<int64_t> {
    const std::string* value = request_.find(name);
    return value ? parseHttpDate(*value) : std::nullopt;
  };
  const auto ifMatch = request_.list("If-Match");
  if (ifMatch ? !etagListMatches(*ifMatch, meta.etag, true)
              : dateField("If-Unmodified-Since").value_or(INT64_MAX) < lastModified) {
    common(412);
    return sendText(412, ifMatch ? "If-Match does not match the object's ETag"
                                 : "the object was modified after If-Unmodified-Since");
  }
  const auto ifNoneMatch = request_.list("If-None-Match");
  if (ifNoneMatch ? etagListMatches(*ifNoneMatch, meta.etag)
                  : dateField("If-Modified-Since").value_or(INT64_MIN) >= lastModified) {
    common(304);
    endHeaders(0);
    return startSending();
  }
  uint64_t offset = 0, length = meta.size;
  int status = 200;
  std::string contentRange;
  const std::string* rangeHeader = request_.find("Range");
  // RFC 9110 13.1.5: If-Range makes the Range apply only to the object it
  // names, by a strong ETag or by exactly its Last-Modified; for any other
  // (a changed object, a weak tag, a date that is not the one) the answer
  // is the whole object, so that a client resuming a download never joins
  // pieces of two objects.
  if (const std::string* ifRange = rangeHeader ? request_.find("If-Range") : nullptr) {
    std::string_view validator(*ifRange);
    while (!validator.empty() && (validator.front() == ' ' || validator.front() == '\t'))
      validator.remove_prefix(1);
    bool same = !validator.empty() && validator.front() == '"'
                    ? etagListMatches(std::string(validator), meta.etag, true) &&
                          validator.find(',') == std::string_view::npos
                    : !validator.empty() && validator.substr(0, 2) != "W/" &&
                          parseHttpDate(validator) == lastModified;
    if (!same) rangeHeader = nullptr;
  }
  if (rangeHeader) {
    ByteRange range;
    switch (parseRange(*rangeHeader, meta.size, range)) {
      case RangeResult::kUnsatisfiable:
        common(416);
        addHeader("Content-Range", "bytes */" + std::to_string(meta.size));
        return sendText(416, "range is outside the object's " + std::to_string(meta.size) + " bytes");
      case RangeResult::kSatisfiable:
        offset = range.first;
        length = range.last - range.first + 1;
        status = 206;
        contentRange = "bytes " + std::to_string(range.first) + "-" + std::to_string(range.last) +
                       "/" + std::to_string(meta.size);
        break;
      case RangeResult::kNone: break;
    }
  }
  common(status);
  if (!contentRange.empty()) addHeader("Content-Range", contentRange);
  outBuf_ += object->contentTypeHeader;
  endHeaders(length);
  if (headOnly_ || length == 0) return startSending();
  if (object->body) {
    // Kept in memory: goes out with the headers in one sendmsg, uncopied.
    body_ = object->body;
    bodyData_ = body_->data() + offset;
    bodyLeft_ = static_cast<size_t>(length);
    bodyBytesSent_ = length;
    return startSending();
  }
  const int fd = object->file->get();
  if (length <= kSmallObject) {
    // Small bodies go out with the headers in one write.
    size_t head = outBuf_.size();
    outBuf_.resize(head + length);
    iovec iov{outBuf_.data() + head, length};
    ssize_t n = preadv2(fd, &iov, 1, static_cast<off_t>(offset), RWF_NOWAIT);
    if (n == static_cast<ssize_t>(length)) {
      bodyBytesSent_ = length;
      return startSending();
    }
    // A read without waiting may stop short where the page cache does:
    // the pool reads it all.
    if (n < 0 && errno != EAGAIN && errno != EOPNOTSUPP) {
      closeAfter_ = true;
      outBuf_.clear();
      return sendStoreError(500, "cannot read an object on " + object->volume + ": " + std::strerror(errno));
    }
    auto got = std::make_shared<ssize_t>(0);
    // The pool reads into a buffer of its own, the answer built so far,
    // given back when the read is.
    auto answer = std::make_shared<std::string>(std::move(outBuf_));
    outBuf_.clear();
    runOnDisk(
        [object, got, answer, head, length, offset] {
          *got = pread(object->file->get(), answer->data() + head, length, static_cast<off_t>(offset));
        },
        [this, got, answer, length] {
          outBuf_ = std::move(*answer);
          if (*got != static_cast<ssize_t>(length)) {
            closeAfter_ = true;
            outBuf_.clear();
            return sendStoreError(500, "short read of an object");
          }
          bodyBytesSent_ = length;
          startSending();
        });
    return;
  }
  file_ = object->file;
  fileOffset_ = static_cast<off_t>(offset);
  fileReadyTo_ = fileOffset_;
  fileLeft_ = length;
  startSending();
}

void Connection::planFileWindows() {
  const off_t end = fileOffset_ + static_cast<off_t>(fileLeft_);
  const off_t horizon = fileOffset_ + static_cast<off_t>(kWindowsAhead * kSendWindow);
  while (!fileReading_ && fileReadyTo_ < end && fileReadyTo_ < horizon) {
    const off_t from = fileReadyTo_;
    const uint64_t length = std::min<uint64_t>(kSendWindow, static_cast<uint64_t>(end - from));
    if (pageCacheHolds(file_->get(), from, length)) {
      fileReadyTo_ += static_cast<off_t>(length);
      continue;
    }
    fileReading_ = true;
    submitDisk([file = file_, from, length] { readIntoPageCache(file->get(), from, length); },
               [this, length] {
                 fileReading_ = false;
                 fileReadyTo_ += static_cast<off_t>(length);
                 ++fileWindowsRead_;
               });
  }
}

bool Connection::stepSendFile() {
  while (fileLeft_ > 0) {
    planFileWindows();
    if (fileOffset_ >= fileReadyTo_) return false;  // the pool's read resumes it
    if (!writeReady_) {
      armProgressTimer();
      return false;
    }
    ssize_t n = sendfile(fd_, file_->get(), &fileOffset_,
                         static_cast<size_t>(fileReadyTo_ - fileOffset_));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      writeReady_ = false;
      armProgressTimer();
      return false;
    }
    if (n <= 0) {
      // The client went away or the file shrank: the response cannot be
      // completed, so the connection cannot be reused.
      logRequest();
      close();
      return false;
    }
    fileLeft_ -= static_cast<uint64_t>(n);
    bodyBytesSent_ += static_cast<uint64_t>(n);
    socketBytesWritten_ += static_cast<uint64_t>(n);
  }
  if (fileWindowsRead_ > 0)
    MOLT_LOG(kDebug) << "the pool read " << fileWindowsRead_
                     << " windows of a body into the page cache before they were sent";
  fileWindowsRead_ = 0;
  file_.reset();
  responseDone();
  return true;
}

// ------------------------------------------------------- DELETE, listing

void Connection::deleteObject(const ObjectPath& path) {
  if (refuseIfReadOnly()) return;
  whenWritePreconditionsHold(path, [this, path] { removeObject(path); });
}

void Connection::removeObject(const ObjectPath& path) {
  auto removed = std::make_shared<bool>(false);
  std::shared_ptr<VersionWrite> mark = shared_.versions.beginWrite(versionSlot(path.bucket, path.key));
  runOnDisk([removed, &store = shared_.store, path, mark] {
              try {
                *removed = store.remove(path.bucket, path.key);
              } catch (...) {
                mark->end();  // before the 500: some copies may be gone
                throw;
              }
              mark->end();
            },
            [this, removed] {
              if (!*removed) return sendText(404, "no such object");
              beginResponse(204);
              endHeaders(0);
              startSending();
            });
}

void Connection::listBucket(const std::string& bucket, const std::string& query) {
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
    if (!value) return sendText(400, "malformed %-escape in query");
    if (name == "prefix") {
      prefix = *value;
    } else if (name == "marker") {
      marker = *value;
    } else if (name == "limit") {
      if (value->empty() || value->size() > 9 || value->find_first_not_of("0123456789") != std::string::npos)
        return sendText(400, "limit must be a whole number");
      size_t asked = std::stoul(*value);
      if (asked > shared_.config.listingLimit)
        return sendText(412, "limit may be at most " + std::to_string(shared_.config.listingLimit));
      limit = asked;
    }
  }
  auto body = std::make_shared<std::string>();
  runOnDisk(
      [body, &store = shared_.store, bucket, prefix, marker, limit] {
        reload::JsonArray items;
        for (const auto& meta : store.list(bucket, prefix, marker, limit)) {
          reload::JsonObject o;
          o.add("name", meta.key);
          o.add("bytes", meta.size);
          o.add("hash", meta.etag);
          o.add("content_type", meta.contentType);
          o.add("last_modified",
                iso8601Microseconds(static_cast<int64_t>(meta.timestamp * 1e6)));
          items.push(o);
        }
        *body = items.str() + "\n";
      },
      [this, body] {
        beginResponse(200);
        addHeader("Content-Type", "application/json; charset=utf-8");
        endHeaders(body->size());
        if (!headOnly_) {
          outBuf_ += *body;
          bodyBytesSent_ = body->size();
        }
        startSending();
      });
}

// --------------------------------------------------------------- answers

void Connection::beginResponse(int status) {
  if (responseStarted_) return;  // headers added before sendText() stay
  responseStarted_ = true;
  status_ = status;
  outBuf_.clear();
  outSent_ = 0;
  outBuf_ += "HTTP/1.1 ";
  outBuf_ += std::to_string(status);
  outBuf_ += ' ';
  outBuf_ += reasonPhrase(status);
  outBuf_ += "\r\n";
  outBuf_ += shared_.dateHeader();
  outBuf_ += shared_.serverHeader;
  outBuf_ += "X-Molt-Generation: ";
  outBuf_ += std::to_string(shared_.generation);
  outBuf_ += "\r\n";
}

void Connection::addHeader(const std::string& name, const std::string& value) {
  outBuf_ += name;
  outBuf_ += ": ";
  outBuf_ += value;
  outBuf_ += "\r\n";
}

void Connection::endHeaders(uint64_t contentLength) {
  // A drain can start while a request is being served: decide keep-alive
  // when the response goes out, not when the request came in.
  if (shared_.drain.draining()) closeAfter_ = true;
  // The one rule for every answer, whatever the method or the status: a
  // connection carries another request only after this one was framed to
  // its end. Any byte of a body left unread would be parsed as the next
  // request, so the connection closes, and what the client still sends
  // for this request is read and dropped.
  if (!(parser_ && parser_->requestReadWhole())) {
    closeAfter_ = true;
    lingerAfter_ = true;
  }
  // RFC 9110 8.6 and 15.4.5: no length on a 204; a 304 sends none either
  // rather than a length that is not the 200's.
  if (status_ != 204 && status_ != 304) {
    outBuf_ += "Content-Length: ";
    outBuf_ += std::to_string(contentLength);
    outBuf_ += "\r\n";
  }
  if (closeAfter_) outBuf_ += "Connection: close\r\n";
  else if (request_.version == 10) outBuf_ += "Connection: keep-alive\r\n";
  outBuf_ += "\r\n";
}

void Connection::sendText(int status, const std::string& text) {
  if (responseStarted_ && status_ != status) {
    responseStarted_ = false;  // an answer replaces a half-built one
  }
  beginResponse(status);
  std::string body = text + "\n";
  addHeader("Content-Type", "text/plain; charset=utf-8");
  endHeaders(body.size());
  if (!headOnly_) {
    outBuf_ += body;
    bodyBytesSent_ = body.size();
  }
  startSending();
}

void Connection::sendStoreError(int status, const std::string& detail) {
  // What failed inside (paths, system and index messages) is for the log,
  // not for the client. A refusal (4xx) says what the client can act on;
  // a full volume (507) is said without naming the volume.
  if (status != 500 && status != 507) return sendText(status, detail);
  MOLT_LOG(kError) << request_.method << " " << request_.target.substr(0, 256) << ": " << status
                   << ": " << detail;
  sendText(status, status == 507 ? "no volume has room for this object; see the server log"
                                 : "internal error; see the server log");
}

void Connection::respondProblem(const RequestProblem& problem) {
  closeAfter_ = true;
  headOnly_ = methodIs(request_.method, "HEAD");
  MOLT_LOG(kDebug) << "request refused with " << problem.status << ": " << problem.reason;
  responseStarted_ = false;
  sendText(problem.status, problem.reason);
}

void Connection::startSending() {
  phase_ = Phase::kRespond;
  cancel();
  // Counted when the answer is decided (added to the shared counters at
  // the end of this turn of the loop).
  if (!refused_ && !counted_) {
    counted_ = true;
    if (status_ >= 100 && status_ < 600) shared_.count(kStatus1xx + static_cast<size_t>(status_ / 100 - 1), 1);
    shared_.count(kBytesReceived, bytesReceived_);
    const std::string& m = request_.method;
    shared_.count(m == "GET" ? kMethodGet : m == "HEAD" ? kMethodHead : m == "PUT" ? kMethodPut
                  : m == "DELETE" ? kMethodDelete : kMethodOther, 1);
  }
}

bool Connection::stepRespond() {
  if (requestsServed_ > 0 || file_) setNoDelay();
  while (outSent_ < outBuf_.size() || bodyLeft_ > 0) {
    if (!writeReady_) {
      armProgressTimer();
      return false;
    }
    // The headers and a body kept in memory in one call, neither copied.
    iovec iov[2];
    int count = 0;
    if (outSent_ < outBuf_.size()) iov[count++] = {outBuf_.data() + outSent_, outBuf_.size() - outSent_};
    if (bodyLeft_ > 0) iov[count++] = {const_cast<char*>(bodyData_), bodyLeft_};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(count);
    ssize_t n = sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      writeReady_ = false;
      setNoDelay();
      armProgressTimer();
      return false;
    }
    if (n < 0) {
      logRequest();
      close();
      return false;
    }
    auto sent = static_cast<size_t>(n);
    if (sent < iov[0].iov_len + (count > 1 ? iov[1].iov_len : 0)) setNoDelay();
    socketBytesWritten_ += sent;
    size_t fromHead = std::min(sent, outBuf_.size() - outSent_);
    outSent_ += fromHead;
    bodyData_ += sent - fromHead;
    bodyLeft_ -= sent - fromHead;
  }
  outBuf_.clear();
  outSent_ = 0;
  body_.reset();
  bodyData_ = nullptr;
  if (file_) {
    phase_ = Phase::kSendFile;
    return true;
  }
  responseDone();
  return true;
}

uint64_t Connection::bytesTakenByPeer() const {
  // What was written less what the kernel still holds for the peer (not
  // sent, or not acknowledged): a slow reader's progress shows here long
  // before the send buffer has room for another write.
  int queued = 0;
  if (ioctl(fd_, SIOCOUTQ, &queued) != 0 || queued < 0) return socketBytesWritten_;
  return socketBytesWritten_ - std::min<uint64_t>(socketBytesWritten_, static_cast<uint64_t>(queued));
}

void Connection::armProgressTimer() {
  if (!armed()) {
    progressMark_ = bytesTakenByPeer();
    arm(shared_.loop.nowMs() + shared_.clientTimeoutMs);
  }
}

void Connection::logRequest() {
  if (refused_ || status_ == 0) return;
  shared_.count(kBytesSent, bodyBytesSent_);
  if (!shared_.accessLog.enabled()) return;
  double ms = startedSeconds_ > 0 ? (reload::monotonicSeconds() - startedSeconds_) * 1000 : 0;
  char line[256];
  std::string uri = request_.target.substr(0, 2048);
  std::snprintf(line, sizeof line, " %d %llu %.3f gen=%llu\n", status_,
                static_cast<unsigned long long>(bodyBytesSent_), ms,
                static_cast<unsigned long long>(shared_.generation));
  bool queued = shared_.accessLog.write(peer_ + " [" + reload::log::utcTimestamp(6) + "] \"" +
                                       (request_.method.empty() ? "-" : request_.method) + " " + uri + " " +
                                       request_.versionText() + "\"" + line);
  if (!queued) shared_.count(kAccessLogLinesDropped, 1);
}

void Connection::responseDone() {
  logRequest();
  ++requestsServed_;
  if (closeAfter_ || peerClosed_) {
    if (lingerAfter_ || !inBuf_.empty() || readReady_) return startLinger();
    return close();
  }
  parser_.reset();
  request_.clear();
  // No step of the upload is out after an answer that keeps the connection;
  // were one, it would drop the upload when back (stillServes).
  abandonUpload();
  upload_.reset();
  responseStarted_ = false;
  counted_ = false;
  headOnly_ = false;
  lingerAfter_ = false;
  status_ = 0;
  bodyBytesSent_ = 0;
  bytesReceived_ = 0;
  fileOffset_ = 0;
  startedSeconds_ = 0;
  phase_ = Phase::kHeader;
  if (inBuf_.empty() && inBuf_.capacity() > 0) std::string().swap(inBuf_);
  releaseIfLarge(targetScratch_);
  releaseIfLarge(decodedPath_);
  releaseIfLarge(objectPath_.bucket);
  releaseIfLarge(objectPath_.key);
  armHeaderOrIdleTimer();
}

void Connection::startLinger() {
  // The answer is out; the client may still be sending what it meant for
  // the request. Closing now could reset the connection before the client
  // has read the answer, so read and drop for a bounded time and size.
  phase_ = Phase::kLinger;
  inBuf_.clear();
  if (shutdown(fd_, SHUT_WR) != 0) return close();
  arm(shared_.loop.nowMs() + std::min<int64_t>(shared_.clientTimeoutMs, kMaxLingerMs));
}

bool Connection::stepLinger() {
  for (;;) {
    char* data = nullptr;
    ssize_t n = readSome(data);
    if (n < 0) return false;
    if (n == 0) {
      close();
      return false;
    }
    lingerDropped_ += static_cast<uint64_t>(n);
    if (lingerDropped_ > kMaxLingerBytes) {
      close();
      return false;
    }
  }
}

// ----------------------------------------------------------------- timers

void Connection::onTimer() {
  guarded([this] { timerFired(); });
}

void Connection::timerFired() {
  switch (phase_) {
    case Phase::kHeader:
      if (inBuf_.empty() && !(parser_ && parser_->got_some())) return close();  // idle
      // Headers that trickle in past the deadline: slowloris.
      respondProblem({408, "the request header did not arrive within client_header_timeout"});
      return advance();
    case Phase::kBody: {
      uint64_t got = parser_->bodyBytes() - progressMark_;
      double window = static_cast<double>(shared_.clientTimeoutMs) / 1000.0;
      bool waitingForDisk = upload_ && upload_->writing && upload_->filling.size() == kUploadBuffer;
      if (!waitingForDisk &&
          (got == 0 || static_cast<double>(got) < static_cast<double>(shared_.minBodyRate) * window)) {
        abandonUpload();
        respondProblem({408, got == 0 ? "client_timeout passed while reading the request body"
                                      : "request body arrived slower than client_body_min_rate"});
        return advance();
      }
      progressMark_ = parser_->bodyBytes();
      return arm(shared_.loop.nowMs() + shared_.clientTimeoutMs);
    }
    case Phase::kRespond:
    case Phase::kSendFile: {
      // Only a reader that took nothing for client_timeout is cut.
      uint64_t taken = bytesTakenByPeer();
      if (taken == progressMark_ && !fileReading_) {
        // A reader that takes nothing for client_timeout is cut, with a
        // reset: what the kernel still holds for it is dropped, not sent.
        struct linger abort {};
        abort.l_onoff = 1;
        setsockopt(fd_, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
        logRequest();
        return close();
      }
      progressMark_ = taken;
      return arm(shared_.loop.nowMs() + shared_.clientTimeoutMs);
    }
    case Phase::kLinger: return close();
    case Phase::kWaitDisk:
    case Phase::kClosed: return;
  }
}

void Connection::drainStarted() {
  if (phase_ == Phase::kHeader && inBuf_.empty() && !(parser_ && parser_->got_some())) {
    int64_t latest = shared_.loop.nowMs() + shared_.keepaliveTimeoutMs;
    if (!armed() || deadline() > latest) arm(latest);
  }
}

void Connection::cut() { close(); }

void Connection::close() {
  if (phase_ == Phase::kClosed) return;
  phase_ = Phase::kClosed;
  cancel();
  ::close(fd_);  // leaves the epoll set too: no other descriptor shares the socket
  fd_ = -1;
  file_.reset();
  body_.reset();
  bodyLeft_ = 0;
  abandonUpload();
  if (pendingDisk_ == 0) owner_.connectionClosed(this);
}

}  // namespace server
