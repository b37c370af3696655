// A small HTTP/1.1 endpoint the single-threaded master serves from its event
// loop: one request per connection, Connection: close, bounded sizes and time.
// No threads, so the master can still fork safely.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "reload/event_loop.h"
#include "reload/fd.h"

namespace reload {

struct AdminRequest {
  std::string method;
  std::string path;
  std::string query;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

struct AdminResponse {
  int status = 200;
  std::string contentType = "application/json";
  std::string body;
};

class AdminServer {
 public:
  using Handler = std::function<AdminResponse(const AdminRequest&)>;
  AdminServer(EventLoop& loop, Handler handler);
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;
  ~AdminServer();

  // Serves exactly these listening sockets (owned by the caller). Must be
  // called before one of them is closed: the loop watches them.
  void setListeners(const std::vector<int>& listeners);
  // Closes every connection (also from within a request's handler).
  void closeAll();
  // Before the master's own exec, which would reset every connection it
  // holds: accepts no more (what waits on the listeners is served by the
  // new image, which inherits them) and answers the connections already
  // accepted, waiting up to `budgetMs` in all (poll on those connections
  // only) for their requests and for the answers to be taken. GET and HEAD
  // go to the handler; anything else is answered 503, since the master
  // cannot act on it now. Then every connection is closed: one whose client
  // sent nothing by then gets a clean close (FIN), not a reset.
  void finishBeforeExec(int64_t budgetMs);
  size_t connections() const { return conns_.size(); }

 private:
  struct Conn : EventHandler {
    AdminServer* server = nullptr;
    Fd fd;
    std::string in;
    std::string out;
    size_t written = 0;
    int64_t deadlineMs = 0;
    void onEvents(uint32_t events) override;
  };
  struct Listening : EventHandler {
    Listening(AdminServer& s, int listenFd)
        : server(s), fd(listenFd), resume(s.loop_, [this] { server.watch(*this); }) {}
    AdminServer& server;
    int fd;
    bool watched = false;
    FunctionTimer resume;  // after an accept error, watching again
    void onEvents(uint32_t) override { server.acceptFrom(*this); }
  };
  void watch(Listening& listening);
  void acceptFrom(Listening& listening);
  void onConn(Conn& conn);
  void closeConn(int fd);
  // Returns false when the connection is finished.
  bool readFrom(Conn& conn);
  bool writeTo(Conn& conn);
  std::optional<std::string> tryRespond(const std::string& in);
  void expire();
  void armExpiry();

  EventLoop& loop_;
  Handler handler_;
  std::map<int, std::unique_ptr<Listening>> listeners_;
  std::map<int, std::unique_ptr<Conn>> conns_;
  FunctionTimer expiry_;
  uint64_t closings_ = 0;  // changes whenever closeAll() runs
  bool finishing_ = false;  // in finishBeforeExec: read-only requests only
};

std::string httpReason(int status);

// Whether an Authorization header value carries `token` with the Bearer
// scheme (any case). Takes the same time wherever the two differ.
bool bearerTokenMatches(const std::string& authorization, const std::string& token);

}  // namespace reload
