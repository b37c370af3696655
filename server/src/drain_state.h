// What a worker's event loop knows about draining. A draining worker
// answers every request with Connection: close, so keep-alive clients move to
// the new generation after their next response and never see an error.
// Used only on the loop's thread.
#pragma once

namespace server {

class DrainState {
 public:
  bool draining() const { return draining_; }
  void startDraining() { draining_ = true; }
  // The master let a standing-by worker take over again (a rollback).
  void resume() { draining_ = false; }

  // Counted from accept() until the connection is closed.
  void connectionOpened() { ++open_; }
  void connectionClosed() { --open_; }
  int openConnections() const { return open_; }

 private:
  bool draining_ = false;
  int open_ = 0;
};

}  // namespace server
