// A TCP socket listening on 127.0.0.1 at a port the kernel picks, for
// tests that need a real listener.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <boost/test/unit_test.hpp>

#include "reload/fd.h"

inline reload::Fd listenOnLoopback(int* port = nullptr) {
  reload::Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  BOOST_REQUIRE(fd);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  BOOST_REQUIRE(listen(fd.get(), 8) == 0);
  socklen_t len = sizeof addr;
  BOOST_REQUIRE(getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  if (port) *port = ntohs(addr.sin_port);
  return fd;
}
