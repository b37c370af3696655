// The sd_notify socket molt-run gives each worker's program (NOTIFY_SOCKET).
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>

#include "reload/fd.h"

namespace run {

// The assignments of one sd_notify datagram ("READY=1\nSTATUS=up\n"):
// newline-separated NAME=VALUE lines; lines without '=' are skipped.
std::map<std::string, std::string> parseNotifyMessage(const std::string& datagram);

// Sends `message` to a NOTIFY_SOCKET address ("@abstract" or a path), as
// sd_notify() does. False (errno set) when it cannot be sent.
bool sendNotify(const std::string& address, const std::string& message);

class NotifySocket {
 public:
  // Binds a datagram socket in the abstract namespace under a name derived
  // from `tag` (unique per worker) and asks for senders' credentials.
  // Throws std::system_error.
  explicit NotifySocket(const std::string& tag);
  int fd() const { return fd_.get(); }
  // The NOTIFY_SOCKET value ("@..." names the abstract namespace).
  const std::string& address() const { return address_; }

  struct Message {
    pid_t sender = 0;  // from SCM_CREDENTIALS; 0 when none came
    std::map<std::string, std::string> fields;
  };
  // The next datagram, or nothing when none is queued.
  std::optional<Message> receive();

 private:
  reload::Fd fd_;
  std::string address_;
};

}  // namespace run
