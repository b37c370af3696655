// A small HTTP/1.1 endpoint the single-threaded master serves from its poll
// loop: one request per connection, Connection: close, bounded sizes and time.
// No threads, so the master can still fork safely.
#pragma once

#include <poll.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

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
  explicit AdminServer(Handler handler) : handler_(std::move(handler)) {}

  // Adds this server's descriptors to a poll set; `listeners` are the admin
  // listening sockets (owned by the caller).
  void addPollFds(const std::vector<int>& listeners, std::vector<pollfd>& fds) const;
  // Handles whatever poll reported for our descriptors.
  void onPoll(const std::vector<pollfd>& fds, double now);
  // Closes connections past their deadline.
  void expire(double now);
  // The earliest deadline of an open connection.
  std::optional<double> nextDeadline() const;
  void closeAll() { conns_.clear(); }

 private:
  struct Conn {
    Fd fd;
    std::string in;
    std::string out;
    size_t written = 0;
    double deadline = 0;
  };
  void acceptFrom(int listener, double now);
  // Returns false when the connection is finished.
  bool readFrom(Conn& conn);
  bool writeTo(Conn& conn);
  std::optional<std::string> tryRespond(const std::string& in);

  Handler handler_;
  std::map<int, Conn> conns_;
};

std::string httpReason(int status);

// Whether an Authorization header value carries `token` with the Bearer
// scheme (any case). Takes the same time wherever the two differ.
bool bearerTokenMatches(const std::string& authorization, const std::string& token);

}  // namespace reload
