// The listening sockets the master holds, changed by a reload as a
// transaction: begin() binds what the new configuration adds and marks what
// it drops, commit() once the new generation serves, rollback() when it
// failed. Sockets are made through a ListenerBinder, so the transaction is
// testable without binding.
#pragma once

#include <string>
#include <vector>

#include "reload/listen_address.h"
#include "reload/listeners.h"

namespace reload {

// One listener the master holds, and where it stands in a reload.
struct HeldListener {
  enum class State {
    kActive,    // the serving generation's, and the next one's
    kAdding,    // bound for the generation being started
    kRemoving,  // the serving generation's only: the next one drops it
  };
  Listener listener;
  State state = State::kActive;
};

// An address the configuration wants, with the role it serves.
struct WantedListener {
  ListenAddress address;
  std::string role;
  std::string key;  // resolvedKey(address)
};

// What it takes to go from the listeners held (and the spare sockets a
// failed reload left) to those wanted. Indexes into the arguments.
struct ListenerSetPlan {
  std::vector<size_t> keep;    // held and still wanted
  std::vector<size_t> remove;  // held, no longer wanted
  std::vector<size_t> reuse;   // wanted, and a spare socket has that address
  std::vector<size_t> bind;    // wanted, to be bound
};
// Pure. Keys are socket keys; a key wanted twice is planned once.
ListenerSetPlan planListenerSet(const std::vector<std::string>& heldKeys,
                                const std::vector<std::string>& spareKeys,
                                const std::vector<std::string>& wantedKeys);

class ListenerBinder {
 public:
  virtual ~ListenerBinder() = default;
  // A listening socket for `address` (see bindListener). Throws
  // std::system_error.
  virtual Fd bind(const ListenAddress& address, bool refuseShared) = 0;
  // The key of the address a socket listens on; "" if it does not.
  virtual std::string keyOf(int fd) = 0;
};

// Binds for real.
ListenerBinder& systemBinder();

// The Unix socket paths among `held` that this server bound itself: the
// ones it removes when it stops (never a socket-activated one's, nor an
// abstract address).
std::vector<std::string> ownedUnixPaths(const std::vector<HeldListener>& held);

class ListenerSet {
 public:
  explicit ListenerSet(ListenerBinder& binder) : binder_(binder) {}

  // Holds `listener` from now on (an inherited socket). One the new
  // configuration drops is kRemoving: the old generation serves it until
  // the new one is ready.
  void adopt(Listener listener, HeldListener::State state = HeldListener::State::kActive);
  bool holds(const std::string& key) const;

  // Binds, as active, each wanted address no listener is held for (taking a
  // spare socket first). For the first start and a new image's start. On
  // failure throws std::system_error; what was bound so far stays held.
  void bindMissing(const std::vector<WantedListener>& wanted, bool refuseShared);

  // A reload's transaction begins: held listeners not wanted become
  // kRemoving, missing ones are bound (or taken from the spares) as
  // kAdding. Throws std::system_error after rolling back.
  void begin(const std::vector<WantedListener>& wanted);
  // The new generation serves: kRemoving listeners are closed (a Unix
  // socket's path removed), kAdding ones become active, spares are closed.
  void commit();
  // The new generation failed: kAdding sockets become spares (workers of
  // that generation may hold them while they drain, so a later reload that
  // wants the address takes the socket from here), kRemoving ones active.
  void rollback();

  // The previous configuration is back: listeners in `keys` are active,
  // the others kRemoving, for closeRemoving() once nothing watches them.
  void keepOnly(const std::vector<std::string>& keys);
  // Closes the kRemoving listeners, logging `why`.
  void closeRemoving(const std::string& why);
  // Holds `listener` as active in place of the one held for its key, which
  // is closed (for a TCP socket: a Unix socket's path would be removed).
  void replace(Listener listener);

  // The descriptors of `role` that the next generation (`newSet`) or the
  // serving one gets.
  std::vector<int> fds(const std::string& role, bool newSet) const;
  // The same listeners, whole (their addresses and names too).
  std::vector<const Listener*> listeners(const std::string& role, bool newSet) const;
  const std::vector<HeldListener>& held() const { return held_; }
  size_t spares() const { return spares_.size(); }
  // Closes everything (shutdown); workers keep their own copies.
  void clear();

 private:
  Listener take(const WantedListener& wanted, bool refuseShared);

  ListenerBinder& binder_;
  std::vector<HeldListener> held_;
  std::vector<Listener> spares_;
};

}  // namespace reload
