#include "sidecar/event/dormant_poll.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>

#include "sidecar/event/log.h"

namespace connwarden::event {

namespace {
// Sockets reported per loop iteration; more wait for the next one, so a flood of wake-ups does
// not hold up everything else.
constexpr int kMaxReadyPerIteration = 256;
}  // namespace

DormantPoll::DormantPoll(Dispatcher& dispatcher, std::function<void(uint64_t key)> on_ready)
    : dispatcher_(dispatcher),
      on_ready_(std::move(on_ready)),
      epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)) {
  // Without it the process could not hibernate at all: a bad enough start to stop at.
  CW_ASSERT(epoll_fd_ >= 0);
  event_ = dispatcher_.createFileEvent(epoll_fd_, [this](uint32_t) { onReady(); });
  event_->setEnabled(FileReadyType::kRead);
}

DormantPoll::~DormantPoll() {
  event_.reset();
  ::close(epoll_fd_);
}

bool DormantPoll::add(int fd, uint64_t key) {
  CW_ASSERT(dispatcher_.isThreadSafe());
  epoll_event ev{};
  // One-shot: a socket that stays readable is reported once, never in a loop.
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
  ev.data.u64 = key;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) return false;
  ++watched_;
  return true;
}

void DormantPoll::remove(int fd) {
  CW_ASSERT(dispatcher_.isThreadSafe());
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr) == 0) {
    --watched_;
  } else {
    CW_LOG(kWarn, "dormant poll: removing socket %d: errno %d", fd, errno);
  }
}

void DormantPoll::onReady() {
  epoll_event ready[kMaxReadyPerIteration];
  int n;
  do {
    n = ::epoll_wait(epoll_fd_, ready, kMaxReadyPerIteration, 0);
  } while (n < 0 && errno == EINTR);
  for (int i = 0; i < n; ++i) on_ready_(ready[i].data.u64);
}

}  // namespace connwarden::event
