#include "reload/admin_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "reload/listeners.h"
#include "reload/log.h"

namespace reload {
namespace {

constexpr size_t kMaxHeader = 16 * 1024;
constexpr size_t kMaxBody = 64 * 1024;
constexpr int64_t kConnTimeoutMs = 5000;
constexpr size_t kMaxConns = 64;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string render(const AdminResponse& r) {
  std::ostringstream out;
  out << "HTTP/1.1 " << r.status << " " << httpReason(r.status) << "\r\n"
      << "Content-Type: " << r.contentType << "\r\n"
      << "Content-Length: " << r.body.size() << "\r\n"
      << "Cache-Control: no-store\r\n"
      << "Connection: close\r\n\r\n"
      << r.body;
  return out.str();
}

AdminResponse plain(int status, const std::string& text) {
  return AdminResponse{status, "text/plain; charset=utf-8", text + "\n"};
}

}  // namespace

std::string httpReason(int status) {
  switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
  }
}

bool bearerTokenMatches(const std::string& authorization, const std::string& token) {
  auto space = authorization.find_first_of(" \t");
  if (space == std::string::npos || lower(authorization.substr(0, space)) != "bearer") return false;
  std::string given = authorization.substr(space);
  given.erase(0, given.find_first_not_of(" \t"));
  while (!given.empty() && (given.back() == ' ' || given.back() == '\t')) given.pop_back();
  if (token.empty()) return false;
  // Every byte of the longer string is compared, whatever the others hold.
  size_t n = std::max(given.size(), token.size());
  unsigned char diff = given.size() == token.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    unsigned char a = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    unsigned char b = i < token.size() ? static_cast<unsigned char>(token[i]) : 0;
    diff |= static_cast<unsigned char>(a ^ b);
  }
  return diff == 0;
}

AdminServer::AdminServer(EventLoop& loop, Handler handler)
    : loop_(loop), handler_(std::move(handler)), expiry_(loop, [this] { expire(); }) {}

AdminServer::~AdminServer() {
  closeAll();
  setListeners({});
}

void AdminServer::setListeners(const std::vector<int>& listeners) {
  for (auto it = listeners_.begin(); it != listeners_.end();) {
    if (std::find(listeners.begin(), listeners.end(), it->first) != listeners.end()) {
      ++it;
      continue;
    }
    if (it->second->watched) loop_.remove(it->first);
    it = listeners_.erase(it);
  }
  for (int fd : listeners) {
    if (listeners_.count(fd)) continue;
    auto l = std::make_unique<Listening>(*this, fd);
    watch(*l);
    listeners_.emplace(fd, std::move(l));
  }
}

void AdminServer::watch(Listening& listening) {
  if (listening.watched) return;
  loop_.add(listening.fd, EPOLLIN, &listening);
  listening.watched = true;
}

void AdminServer::closeAll() {
  ++closings_;
  for (const auto& [fd, conn] : conns_) loop_.remove(fd);
  conns_.clear();
  expiry_.cancel();
}

void AdminServer::finishBeforeExec(int64_t budgetMs) {
  finishing_ = true;
  const int64_t until = monotonicMs() + budgetMs;
  while (!conns_.empty()) {
    int64_t left = until - monotonicMs();
    if (left <= 0) break;
    std::vector<pollfd> fds;
    for (const auto& [fd, conn] : conns_)
      fds.push_back(pollfd{fd, static_cast<short>(conn->out.empty() ? POLLIN : POLLOUT), 0});
    int ready = poll(fds.data(), fds.size(), static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) {
      MOLT_LOG(kWarning) << "admin connections before exec: poll: " << std::strerror(errno);
      break;
    }
    for (const auto& p : fds) {
      if (p.revents == 0) continue;
      auto it = conns_.find(p.fd);
      if (it == conns_.end()) continue;
      Conn& conn = *it->second;
      uint64_t closings = closings_;
      bool keep = conn.out.empty() ? readFrom(conn) : writeTo(conn);
      if (closings != closings_) break;  // the handler closed every connection
      if (!keep) closeConn(p.fd);
    }
  }
  if (!conns_.empty())
    MOLT_LOG(kInfo) << conns_.size() << " admin connections sent no request within " << budgetMs
                    << " ms before the exec; closed";
  finishing_ = false;
  closeAll();
}

void AdminServer::closeConn(int fd) {
  loop_.remove(fd);
  conns_.erase(fd);
}

void AdminServer::Conn::onEvents(uint32_t) { server->onConn(*this); }

void AdminServer::onConn(Conn& conn) {
  int fd = conn.fd.get();
  bool wasWriting = !conn.out.empty();
  uint64_t closings = closings_;
  bool keep = wasWriting ? writeTo(conn) : readFrom(conn);
  if (closings != closings_) return;  // the request's handler closed every connection
  if (!keep) {
    closeConn(fd);
    armExpiry();
    return;
  }
  if (!wasWriting && !conn.out.empty()) loop_.modify(fd, EPOLLOUT);
}

void AdminServer::acceptFrom(Listening& listening) {
  for (int i = 0; i < 16; ++i) {
    int fd = accept4(listening.fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EAGAIN) break;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      // The listener stays ready while the error lasts (descriptors used
      // up, or a socket another holder shut down): watched on, it would
      // spin the master's loop.
      int err = errno;
      loop_.remove(listening.fd);
      listening.watched = false;
      if (!stillListening(listening.fd)) {
        MOLT_LOG(kWarning) << "admin listener fd " << listening.fd << " stopped listening ("
                           << std::strerror(err) << "); no longer served";
        break;
      }
      MOLT_LOG(kWarning) << "admin accept: " << std::strerror(err) << "; trying again in 1 s";
      listening.resume.armIn(1000);
      break;
    }
    Fd owned(fd);
    if (conns_.size() >= kMaxConns) {
      // Full of connections that have not finished a request: the one
      // waiting longest makes room, so idle clients cannot lock others out.
      auto oldest = conns_.end();
      for (auto it = conns_.begin(); it != conns_.end(); ++it)
        if (it->second->out.empty() &&
            (oldest == conns_.end() || it->second->deadlineMs < oldest->second->deadlineMs))
          oldest = it;
      if (oldest == conns_.end()) break;
      closeConn(oldest->first);
    }
    auto conn = std::make_unique<Conn>();
    conn->server = this;
    conn->deadlineMs = loop_.nowMs() + kConnTimeoutMs;
    loop_.add(fd, EPOLLIN, conn.get());
    conn->fd = std::move(owned);
    conns_.emplace(fd, std::move(conn));
  }
  armExpiry();
}

void AdminServer::expire() {
  for (auto it = conns_.begin(); it != conns_.end();) {
    if (it->second->deadlineMs > loop_.nowMs()) {
      ++it;
      continue;
    }
    loop_.remove(it->first);
    it = conns_.erase(it);
  }
  armExpiry();
}

void AdminServer::armExpiry() {
  std::optional<int64_t> next;
  for (const auto& [fd, conn] : conns_)
    if (!next || conn->deadlineMs < *next) next = conn->deadlineMs;
  if (next) expiry_.arm(*next);
  else expiry_.cancel();
}

bool AdminServer::readFrom(Conn& conn) {
  char buf[4096];
  for (;;) {
    ssize_t n = recv(conn.fd.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) return false;
    conn.in.append(buf, static_cast<size_t>(n));
    if (conn.in.size() > kMaxHeader + kMaxBody) break;
  }
  uint64_t closings = closings_;
  auto out = tryRespond(conn.in);
  if (closings != closings_) return false;  // the handler closed `conn` with the rest
  if (out) {
    conn.out = std::move(*out);
    return writeTo(conn);
  }
  return true;
}

bool AdminServer::writeTo(Conn& conn) {
  while (conn.written < conn.out.size()) {
    ssize_t n = send(conn.fd.get(), conn.out.data() + conn.written,
                     conn.out.size() - conn.written, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return true;
    if (n <= 0) return false;
    conn.written += static_cast<size_t>(n);
  }
  shutdown(conn.fd.get(), SHUT_WR);
  return false;
}

std::optional<std::string> AdminServer::tryRespond(const std::string& in) {
  auto end = in.find("\r\n\r\n");
  if (end == std::string::npos) {
    if (in.size() > kMaxHeader) return render(plain(431, "request header too large"));
    return std::nullopt;
  }
  AdminRequest req;
  std::istringstream head(in.substr(0, end));
  std::string line;
  std::getline(head, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  std::istringstream requestLine(line);
  std::string target, version;
  if (!(requestLine >> req.method >> target >> version) || version.rfind("HTTP/1.", 0) != 0)
    return render(plain(400, "malformed request line"));
  auto q = target.find('?');
  req.path = target.substr(0, q);
  if (q != std::string::npos) req.query = target.substr(q + 1);
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto colon = line.find(':');
    if (colon == std::string::npos) return render(plain(400, "malformed header line"));
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
    std::string name = lower(line.substr(0, colon));
    if (name.empty() || name.find_first_of(" \t") != std::string::npos)
      return render(plain(400, "malformed header name"));
    if (!req.headers.emplace(name, value).second &&
        (name == "content-length" || name == "authorization" || name == "transfer-encoding"))
      return render(plain(400, "repeated " + name + " header"));
  }
  size_t length = 0;
  if (auto it = req.headers.find("content-length"); it != req.headers.end()) {
    const std::string& digits = it->second;
    if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos)
      return render(plain(400, "bad Content-Length"));
    length = std::stoul(digits);
    if (length > kMaxBody) return render(plain(413, "request body too large"));
  } else if (req.headers.count("transfer-encoding")) {
    return render(plain(400, "chunked bodies are not accepted here; send Content-Length"));
  }
  if (in.size() < end + 4 + length) return std::nullopt;
  req.body = in.substr(end + 4, length);
  if (finishing_ && req.method != "GET" && req.method != "HEAD")
    return render(plain(503, "the master is re-executing; send this again in a moment"));
  try {
    return render(handler_(req));
  } catch (const std::exception& e) {
    // The master's loop goes on; this request alone fails, and says why.
    MOLT_LOG(kError) << "admin request " << req.method << " " << req.path << ": " << e.what();
    return render(plain(500, std::string("internal error: ") + e.what()));
  }
}

}  // namespace reload
