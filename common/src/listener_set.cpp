#include "reload/listener_set.h"

#include <unistd.h>

#include <algorithm>

#include "reload/log.h"

namespace reload {

namespace {

bool contains(const std::vector<std::string>& keys, const std::string& key) {
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

class SystemBinder : public ListenerBinder {
 public:
  Fd bind(const ListenAddress& address, bool refuseShared) override {
    return bindListener(address, refuseShared);
  }
  std::string keyOf(int fd) override { return listeningSocketKey(fd); }
};

bool ownsUnixPath(const Listener& l) {
  return l.address.kind == ListenAddress::Kind::kUnix && l.ownsPath && !l.address.path.empty() &&
         l.address.path[0] == '/';
}

void closeListener(HeldListener& h, const std::string& why) {
  MOLT_LOG(kInfo) << "closing listener " << h.listener.address.toString() << ": " << why;
  if (ownsUnixPath(h.listener)) unlink(h.listener.address.path.c_str());
}

}  // namespace

std::vector<std::string> ownedUnixPaths(const std::vector<HeldListener>& held) {
  std::vector<std::string> paths;
  for (const auto& h : held)
    if (ownsUnixPath(h.listener)) paths.push_back(h.listener.address.path);
  return paths;
}

ListenerSetPlan planListenerSet(const std::vector<std::string>& heldKeys,
                                const std::vector<std::string>& spareKeys,
                                const std::vector<std::string>& wantedKeys) {
  ListenerSetPlan plan;
  for (size_t i = 0; i < heldKeys.size(); ++i)
    (contains(wantedKeys, heldKeys[i]) ? plan.keep : plan.remove).push_back(i);
  for (size_t i = 0; i < wantedKeys.size(); ++i) {
    const std::string& key = wantedKeys[i];
    bool earlier = std::find(wantedKeys.begin(), wantedKeys.begin() + static_cast<long>(i), key) !=
                   wantedKeys.begin() + static_cast<long>(i);
    if (earlier || contains(heldKeys, key)) continue;
    (contains(spareKeys, key) ? plan.reuse : plan.bind).push_back(i);
  }
  return plan;
}

ListenerBinder& systemBinder() {
  static SystemBinder binder;
  return binder;
}

void ListenerSet::adopt(Listener listener, HeldListener::State state) {
  HeldListener h;
  h.listener = std::move(listener);
  h.state = state;
  held_.push_back(std::move(h));
}

bool ListenerSet::holds(const std::string& key) const {
  return std::any_of(held_.begin(), held_.end(),
                     [&](const HeldListener& h) { return h.listener.key == key; });
}

Listener ListenerSet::take(const WantedListener& wanted, bool refuseShared) {
  Listener l;
  l.address = wanted.address;
  l.role = wanted.role;
  auto spare = std::find_if(spares_.begin(), spares_.end(),
                            [&](const Listener& s) { return s.key == wanted.key; });
  if (spare != spares_.end()) {
    l.fd = std::move(spare->fd);
    spares_.erase(spare);
  } else {
    l.fd = binder_.bind(wanted.address, refuseShared);
  }
  l.key = binder_.keyOf(l.fd.get());
  MOLT_LOG(kInfo) << "listening on " << wanted.address.toString() << " (" << wanted.role << ")";
  return l;
}

void ListenerSet::bindMissing(const std::vector<WantedListener>& wanted, bool refuseShared) {
  for (const auto& w : wanted) {
    if (holds(w.key)) continue;
    HeldListener h;
    h.listener = take(w, refuseShared);
    held_.push_back(std::move(h));
  }
}

void ListenerSet::begin(const std::vector<WantedListener>& wanted) {
  std::vector<std::string> heldKeys, spareKeys, wantedKeys;
  for (const auto& h : held_) heldKeys.push_back(h.listener.key);
  for (const auto& s : spares_) spareKeys.push_back(s.key);
  for (const auto& w : wanted) wantedKeys.push_back(w.key);
  auto plan = planListenerSet(heldKeys, spareKeys, wantedKeys);
  for (size_t i : plan.remove) held_[i].state = HeldListener::State::kRemoving;
  try {
    std::vector<size_t> added = plan.reuse;
    added.insert(added.end(), plan.bind.begin(), plan.bind.end());
    std::sort(added.begin(), added.end());  // in the configuration's order
    for (size_t i : added) {
      HeldListener h;
      h.listener = take(wanted[i], true);
      h.state = HeldListener::State::kAdding;
      held_.push_back(std::move(h));
    }
  } catch (...) {
    held_.erase(std::remove_if(held_.begin(), held_.end(),
                               [](const HeldListener& h) {
                                 return h.state == HeldListener::State::kAdding;
                               }),
                held_.end());
    for (auto& h : held_) h.state = HeldListener::State::kActive;
    throw;
  }
}

void ListenerSet::commit() {
  closeRemoving("no longer configured");
  for (auto& h : held_) h.state = HeldListener::State::kActive;
  spares_.clear();
}

void ListenerSet::rollback() {
  for (auto it = held_.begin(); it != held_.end();) {
    if (it->state != HeldListener::State::kAdding) {
      it->state = HeldListener::State::kActive;
      ++it;
      continue;
    }
    spares_.push_back(std::move(it->listener));
    it = held_.erase(it);
  }
}

void ListenerSet::keepOnly(const std::vector<std::string>& keys) {
  for (auto& h : held_)
    h.state = contains(keys, h.listener.key) ? HeldListener::State::kActive
                                              : HeldListener::State::kRemoving;
}

void ListenerSet::closeRemoving(const std::string& why) {
  for (auto it = held_.begin(); it != held_.end();) {
    if (it->state != HeldListener::State::kRemoving) {
      ++it;
      continue;
    }
    closeListener(*it, why);
    it = held_.erase(it);
  }
}

void ListenerSet::replace(Listener listener) {
  for (auto& h : held_) {
    if (h.listener.key != listener.key) continue;
    h.listener = std::move(listener);
    h.state = HeldListener::State::kActive;
    return;
  }
  HeldListener h;
  h.listener = std::move(listener);
  held_.push_back(std::move(h));
}

std::vector<const Listener*> ListenerSet::listeners(const std::string& role, bool newSet) const {
  std::vector<const Listener*> out;
  for (const auto& h : held_) {
    if (h.listener.role != role) continue;
    if (newSet && h.state == HeldListener::State::kRemoving) continue;
    if (!newSet && h.state == HeldListener::State::kAdding) continue;
    out.push_back(&h.listener);
  }
  return out;
}

std::vector<int> ListenerSet::fds(const std::string& role, bool newSet) const {
  std::vector<int> out;
  for (const Listener* l : listeners(role, newSet)) out.push_back(l->fd.get());
  return out;
}

void ListenerSet::clear() {
  held_.clear();
  spares_.clear();
}

}  // namespace reload
