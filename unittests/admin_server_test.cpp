#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cerrno>
#include <chrono>
#include <thread>
#include <stdexcept>
#include <string>

#include "reload/admin_server.h"
#include "reload/event_loop.h"
#include "reload/fd.h"
#include "loopback_listener.h"

using reload::AdminRequest;
using reload::AdminResponse;
using reload::AdminServer;
using reload::EventLoop;
using reload::Fd;

namespace {

// Sends `request` and runs the loop until the server closes the
// connection (bounded at 10 s). Returns what came back.
std::string exchange(EventLoop& loop, int port, const std::string& request) {
  Fd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  BOOST_REQUIRE(connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  BOOST_REQUIRE(send(client.get(), request.data(), request.size(), 0) ==
                static_cast<ssize_t>(request.size()));
  std::string reply;
  const int64_t giveUpAt = reload::monotonicMs() + 10000;
  while (reload::monotonicMs() < giveUpAt) {
    loop.runOnce(20);
    char buf[4096];
    ssize_t n = recv(client.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return reply;
    if (n > 0) reply.append(buf, static_cast<size_t>(n));
  }
  BOOST_FAIL("no end of the reply within 10 s");
  return reply;
}

Fd connectTo(int port) {
  Fd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  BOOST_REQUIRE(connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  timeval tv{10, 0};
  setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return client;
}

void sendText(int fd, const std::string& text) {
  BOOST_REQUIRE(send(fd, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size()));
}

// Everything until the server's end of the stream; "RESET" when it resets.
std::string readToEnd(int fd) {
  std::string reply;
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0) return reply;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno == ECONNRESET ? "RESET" : "ERROR " + std::to_string(errno);
    reply.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(AdminServerTest)

// Before an exec: a request still arriving is answered, an action is
// answered 503, an idle connection is closed cleanly, and nothing new is
// accepted (it waits in the queue for the next image).
BOOST_AUTO_TEST_CASE(connections_open_before_an_exec_are_answered_not_reset) {
  EventLoop loop;
  int handled = 0;
  AdminServer admin(loop, [&](const AdminRequest& r) {
    ++handled;
    return AdminResponse{200, "text/plain", r.method + " " + r.path + "\n"};
  });
  int port = 0;
  Fd listener = listenOnLoopback(&port);
  admin.setListeners({listener.get()});
  Fd slow = connectTo(port), action = connectTo(port), idle = connectTo(port);
  const int64_t giveUpAt = reload::monotonicMs() + 10000;
  while (admin.connections() < 3 && reload::monotonicMs() < giveUpAt) loop.runOnce(20);
  BOOST_REQUIRE(admin.connections() == 3u);
  sendText(slow.get(), "GET /status HTTP/1.1\r\n");
  sendText(action.get(), "POST /reload HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  // Boost.Test's assertions are for the main thread only: the sender keeps
  // its result for the check after the join.
  ssize_t restSent = -1;
  const std::string restText = "Host: a\r\n\r\n";
  std::thread rest([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the client's own pace
    restSent = send(slow.get(), restText.data(), restText.size(), MSG_NOSIGNAL);
  });
  Fd late = connectTo(port);
  const int64_t started = reload::monotonicMs();
  admin.finishBeforeExec(400);
  const int64_t took = reload::monotonicMs() - started;
  rest.join();
  BOOST_TEST(restSent == static_cast<ssize_t>(restText.size()));
  BOOST_TEST(took >= 350);  // the idle one is waited for up to the budget
  BOOST_TEST(took < 3000);
  BOOST_TEST(admin.connections() == 0u);
  std::string slowReply = readToEnd(slow.get());
  BOOST_TEST(slowReply.rfind("HTTP/1.1 200 OK\r\n", 0) == 0u, slowReply);
  BOOST_TEST(slowReply.find("GET /status\n") != std::string::npos);
  std::string actionReply = readToEnd(action.get());
  BOOST_TEST(actionReply.rfind("HTTP/1.1 503 ", 0) == 0u, actionReply);
  BOOST_TEST(handled == 1);  // the POST never reached the handler
  BOOST_TEST(readToEnd(idle.get()) == "");  // a clean end, no reset
  // The late client was not accepted: it waits on the listener.
  int queued = accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
  BOOST_TEST(queued >= 0);
  if (queued >= 0) close(queued);
  // Afterwards the server serves as before.
  std::string reply = exchange(loop, port, "POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  BOOST_TEST(reply.rfind("HTTP/1.1 200 OK\r\n", 0) == 0u, reply);
}

BOOST_AUTO_TEST_CASE(a_request_is_answered_on_the_loop_and_the_connection_closed) {
  EventLoop loop;
  std::string seenPath;
  AdminServer admin(loop, [&](const AdminRequest& r) {
    seenPath = r.path;
    return AdminResponse{200, "text/plain", "fine\n"};
  });
  int port = 0;
  Fd listener = listenOnLoopback(&port);
  admin.setListeners({listener.get()});
  std::string reply = exchange(loop, port, "GET /status?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
  BOOST_TEST(reply.rfind("HTTP/1.1 200 OK\r\n", 0) == 0u);
  BOOST_TEST(reply.find("Connection: close\r\n") != std::string::npos);
  BOOST_TEST(reply.substr(reply.size() - 5) == "fine\n");
  BOOST_TEST(seenPath == "/status");
  BOOST_TEST(admin.connections() == 0u);
  BOOST_TEST(loop.watchedDescriptors() == 1u);  // the listener
  BOOST_TEST(loop.pendingTimers() == 0u);       // no connection left to expire
}

BOOST_AUTO_TEST_CASE(a_handler_that_closes_every_connection_ends_its_own_safely) {
  EventLoop loop;
  AdminServer* self = nullptr;
  AdminServer admin(loop, [&](const AdminRequest&) {
    self->closeAll();  // as the master does before an exec
    return AdminResponse{200, "text/plain", "late\n"};
  });
  self = &admin;
  int port = 0;
  Fd listener = listenOnLoopback(&port);
  admin.setListeners({listener.get()});
  std::string reply = exchange(loop, port, "GET /reload HTTP/1.1\r\n\r\n");
  BOOST_TEST(reply.empty());  // closed, not answered
  BOOST_TEST(admin.connections() == 0u);
}

BOOST_AUTO_TEST_CASE(listeners_leave_the_loop_when_no_longer_served) {
  EventLoop loop;
  AdminServer admin(loop, [](const AdminRequest&) { return AdminResponse{}; });
  int portA = 0, portB = 0;
  Fd a = listenOnLoopback(&portA), b = listenOnLoopback(&portB);
  admin.setListeners({a.get(), b.get()});
  BOOST_TEST(loop.watchedDescriptors() == 2u);
  admin.setListeners({b.get()});
  BOOST_TEST(loop.watchedDescriptors() == 1u);
  BOOST_TEST(loop.watching(b.get()));
  admin.setListeners({});
  BOOST_TEST(loop.watchedDescriptors() == 0u);
}

BOOST_AUTO_TEST_CASE(a_malformed_request_gets_a_400) {
  EventLoop loop;
  AdminServer admin(loop, [](const AdminRequest&) { return AdminResponse{}; });
  int port = 0;
  Fd listener = listenOnLoopback(&port);
  admin.setListeners({listener.get()});
  std::string reply = exchange(loop, port, "NONSENSE\r\n\r\n");
  BOOST_TEST(reply.rfind("HTTP/1.1 400", 0) == 0u);
}

BOOST_AUTO_TEST_CASE(a_handler_that_throws_gets_a_500_and_the_server_serves_on) {
  EventLoop loop;
  bool fail = true;
  AdminServer admin(loop, [&](const AdminRequest&) {
    if (fail) throw std::runtime_error("status unavailable");
    return AdminResponse{200, "text/plain", "fine\n"};
  });
  int port = 0;
  Fd listener = listenOnLoopback(&port);
  admin.setListeners({listener.get()});
  std::string reply = exchange(loop, port, "GET /status HTTP/1.1\r\nHost: a\r\n\r\n");
  BOOST_TEST(reply.rfind("HTTP/1.1 500", 0) == 0u);
  BOOST_TEST(reply.find("status unavailable") != std::string::npos);
  fail = false;
  reply = exchange(loop, port, "GET /status HTTP/1.1\r\nHost: a\r\n\r\n");
  BOOST_TEST(reply.rfind("HTTP/1.1 200 OK\r\n", 0) == 0u);
}

BOOST_AUTO_TEST_CASE(a_listener_shut_down_by_another_holder_leaves_the_loop) {
  EventLoop loop;
  AdminServer admin(loop, [](const AdminRequest&) { return AdminResponse{}; });
  int port = 0;
  Fd listener = listenOnLoopback(&port);
  admin.setListeners({listener.get()});
  BOOST_REQUIRE(loop.watchedDescriptors() == 1u);
  // A listening socket shut down stops listening, and epoll reports it
  // ready for ever: a loop that kept watching it would never sleep.
  BOOST_REQUIRE(shutdown(listener.get(), SHUT_RD) == 0);
  loop.runOnce(1000);
  BOOST_TEST(loop.watchedDescriptors() == 0u);
  int64_t before = reload::monotonicMs();
  loop.runOnce(100);
  BOOST_TEST(reload::monotonicMs() - before >= 90);
}

BOOST_AUTO_TEST_SUITE_END()
