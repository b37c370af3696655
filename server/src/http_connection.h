// One client connection on a worker's event loop: reads and frames requests
// (Beast's parser), answers them in order, streams uploads to the disk pool
// with back-pressure, sends bodies without blocking the loop, and enforces
// the slow-client deadlines with timers.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "disk_pool.h"
#include "http_handlers.h"
#include "reload/event_loop.h"
#include "http_request.h"
#include "object_key.h"

namespace server {

class Connection;

class ConnectionOwner {
 public:
  virtual ~ConnectionOwner() = default;
  // The connection's socket is closed; it may still wait for disk work.
  virtual void connectionClosed(Connection* connection) = 0;
};

class Connection : public reload::EventHandler, public reload::Timer, public BodySink {
 public:
  // `refuse`: the worker is at max_connections; answer 503 and close.
  Connection(WorkerShared& shared, ConnectionOwner& owner, int fd, bool refuse);
  ~Connection() override;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start();
  void onEvents(uint32_t events) override;
  void onTimer() override;
  size_t takeBody(std::string_view body) override;

  // The worker drains: an idle connection may stay at most keepalive_timeout.
  void drainStarted();
  // Closes at once (graceful_timeout passed).
  void cut();
  bool closed() const { return phase_ == Phase::kClosed; }
  bool waitingForDisk() const { return pendingDisk_ > 0; }
  bool refused() const { return refused_; }

 private:
  enum class Phase { kHeader, kBody, kWaitDisk, kRespond, kSendFile, kLinger, kClosed };
  struct UploadState;

  void advance();
  bool stepHeader();
  bool stepBody();
  bool stepRespond();
  bool stepSendFile();
  bool stepLinger();
  // Reads once into the loop's scratch buffer; returns bytes, 0 at EOF, -1
  // when nothing is ready (or the connection was closed on an error).
  ssize_t readSome(char*& data);
  enum class Fed { kFed, kWaiting, kEnd };
  // Feeds the parser what earlier reads left, or else reads once (when
  // `mayRead`) and feeds that, keeping what the parser does not take.
  // kFed: bytes were taken or kept, or the parser found a problem; kWaiting:
  // nothing to read now (or the connection closed on an error); kEnd: the
  // peer ended the stream.
  Fed feedSome(RequestProblem& problem, bool mayRead);

  void dispatch();
  void route(std::string_view rawPath, std::string_view query);
  void putObject(const ObjectPath& path);
  void beginPut(const ObjectPath& path);
  // RFC 9110 13.1 for PUT and DELETE (If-Match, If-None-Match,
  // If-Unmodified-Since): 412, or `proceed` once they hold.
  void whenWritePreconditionsHold(const ObjectPath& path, std::function<void()> proceed);
  const char* failedWritePrecondition(const std::optional<ObjectMeta>& current) const;
  // The metadata the request's header gives an object at `path`.
  ObjectMeta metaFromHeader(const ObjectPath& path) const;
  void getObject(const ObjectPath& path);
  void answerGet(std::shared_ptr<const CachedObject> object);
  void deleteObject(const ObjectPath& path);
  void removeObject(const ObjectPath& path);
  void listBucket(const std::string& bucket, const std::string& query);
  bool refuseIfReadOnly();

  void startUploadBody();
  void submitUploadWrite();
  void finishUpload();
  void uploadFailed(int status, std::string message);
  // Ends the upload: at once, or once its step on the pool is back.
  void abandonUpload();
  // Lets go of the upload; its temp file is removed on the pool.
  void dropUpload();
  void releaseUpload(UploadState& state);
  // Called when a step of `state` is back: whether the request still waits
  // for it; if not, the upload is dropped.
  bool stillServes(const std::shared_ptr<UploadState>& state);
  // Runs a step of the connection; an exception from it ends this request
  // (500 if nothing of the answer went out yet, logged) and its connection.
  template <typename Step>
  void guarded(Step step) noexcept;
  void requestFailed(const char* what) noexcept;
  void timerFired();
  // After body bytes were fed: whether the body phase ended.
  bool bodyFed(const RequestProblem& problem);

  // Response building.
  void beginResponse(int status);
  void addHeader(const std::string& name, const std::string& value);
  void endHeaders(uint64_t contentLength);
  void sendText(int status, const std::string& text);
  void respondProblem(const RequestProblem& problem);
  // A failure of the store: a 500 shows the client only its kind; the
  // detail goes to the log.
  void sendStoreError(int status, const std::string& detail);
  void startSending();
  void responseDone();
  void logRequest();
  void startLinger();
  void close();
  // Joins the loop's epoll set (edge-triggered): the first wait of the
  // connection on its socket.
  void watch();
  // TCP_NODELAY, set before the first write that may follow another still
  // unacknowledged (a second answer, a 100 Continue, an answer in several
  // writes): a lone answer in one write is never held by Nagle.
  void setNoDelay();
  void armHeaderOrIdleTimer();
  void armProgressTimer();
  // Bytes of the connection's answers that the peer's side has taken.
  uint64_t bytesTakenByPeer() const;
  // `work` on the pool; then, unless the connection closed meanwhile,
  // `done` on the loop and the connection goes on. The phase is left as it is.
  // Should `work` throw past its own handling, `stepEnded` runs on the loop
  // in place of `done` (an upload's step clears its own mark: only that
  // task is known to be back), and the request ends with the error. It
  // answers whether the step still belongs to the request being served: a
  // step of an upload already answered (or left behind) ends nothing else.
  using StepEnded = std::function<bool()>;
  void submitDisk(std::function<void()> work, std::function<void()> done, StepEnded stepEnded = {});
  // submitDisk() for work that hands its end on later (DiskPool::submitDeferred).
  void submitDiskDeferred(std::function<void(DiskPool::Finish)> work, std::function<void()> done,
                          StepEnded stepEnded);
  std::function<void()> diskDone(std::function<void()> done);  // the loop's part of a task's end
  DiskPool::Failed diskFailed(StepEnded stepEnded);
  // A task came back to a connection already closed: once none is left,
  // the connection (and an upload its client left) goes.
  void closedTaskBack();
  // submitDisk() for a request that waits for the result.
  void runOnDisk(std::function<void()> work, std::function<void()> done, StepEnded stepEnded = {});
  // Moves fileReadyTo_ over what the page cache holds, and has the pool read
  // in the next window that it does not.
  void planFileWindows();

  WorkerShared& shared_;
  ConnectionOwner& owner_;
  int fd_;
  Phase phase_ = Phase::kHeader;
  // A connection is read at once when accepted (the listener defers the
  // accept until the request's first bytes came) and joins the epoll set
  // only when it must wait: one that is answered and closed in that first
  // turn never does.
  bool readReady_ = true;
  bool writeReady_ = true;
  bool watched_ = false;
  bool noDelay_ = false;
  bool peerClosed_ = false;     // read the end of the stream
  bool peerShutWrite_ = false;  // epoll saw the peer shut its side
  bool refused_ = false;
  int pendingDisk_ = 0;
  uint64_t requestsServed_ = 0;

  std::string inBuf_;
  Request request_;
  // The request's path as route() took it apart; kept between requests
  // (when small) so that the next one allocates nothing.
  std::string targetScratch_;
  std::string decodedPath_;
  ObjectPath objectPath_;
  std::optional<RequestParser> parser_;
  bool headerTimerArmed_ = false;
  double startedSeconds_ = 0;

  std::string outBuf_;
  size_t outSent_ = 0;
  // A body kept in memory (open_file_cache.h), sent after outBuf_.
  std::shared_ptr<const std::string> body_;
  const char* bodyData_ = nullptr;
  size_t bodyLeft_ = 0;
  bool responseStarted_ = false;
  bool counted_ = false;
  bool closeAfter_ = false;
  bool lingerAfter_ = false;
  bool headOnly_ = false;
  int status_ = 0;
  uint64_t bodyBytesSent_ = 0;
  uint64_t bytesReceived_ = 0;
  uint64_t socketBytesWritten_ = 0;  // over the connection's life

  // A large GET body, sent with sendfile; shared with a read-ahead on the pool.
  std::shared_ptr<reload::Fd> file_;
  off_t fileOffset_ = 0;
  uint64_t fileLeft_ = 0;
  off_t fileReadyTo_ = 0;     // the page cache holds the body up to here
  bool fileReading_ = false;  // the pool reads in the window after it
  int fileWindowsRead_ = 0;   // windows the pool read in for this body

  std::shared_ptr<UploadState> upload_;
  uint64_t progressMark_ = 0;
  uint64_t lingerDropped_ = 0;
  std::string peer_;
};

}  // namespace server
