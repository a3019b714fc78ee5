// Watches the sockets of hibernated connections with one epoll instance per worker, which is
// itself a single read event in the dispatcher's loop. A sleeping socket then costs no libevent
// event of its own (128 bytes and a callback), only the kernel's entry and the caller's record.
// Worker thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "sidecar/event/dispatcher.h"

namespace connwarden::event {

class DormantPoll {
 public:
  // `on_ready(key)` runs on the dispatcher's thread, once, when a watched socket becomes
  // readable or its peer hangs up (or resets). It may add and remove sockets, the one it is
  // told about included, and should remove that one: it is not reported again until re-added.
  DormantPoll(Dispatcher& dispatcher, std::function<void(uint64_t key)> on_ready);
  ~DormantPoll();
  DormantPoll(const DormantPoll&) = delete;
  DormantPoll& operator=(const DormantPoll&) = delete;

  // Watches `fd` (not owned; remove it before closing it). False, with errno set, when the
  // kernel refuses (e.g. ENOMEM): the caller keeps the socket in the loop instead.
  bool add(int fd, uint64_t key);
  void remove(int fd);
  size_t size() const { return watched_; }

 private:
  void onReady();

  Dispatcher& dispatcher_;
  std::function<void(uint64_t)> on_ready_;
  int epoll_fd_;
  std::unique_ptr<FileEvent> event_;
  size_t watched_ = 0;
};

}  // namespace connwarden::event
