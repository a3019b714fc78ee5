#include "sidecar/event/dispatcher.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "sidecar/event/log.h"
#include "sidecar/event/memory_account.h"

namespace connwarden::event {

void assertFailed(const char* cond, const char* file, int line) {
  std::fprintf(stderr, "connwarden: assertion failed: %s at %s:%d\n", cond, file, line);
  std::abort();
}

// --- Timer ------------------------------------------------------------------------------------

static_assert(sizeof(::event) <= sizeof(EventStorage) && alignof(::event) <= alignof(EventStorage));

namespace {
// The time of the current pass of the loop this thread runs (Dispatcher::now()); a thread that
// runs none reads the clock.
struct PassClock {
  bool in_loop = false;  // this thread is inside Dispatcher::run()
  bool taken = false;    // `time` was read in this pass
  MonotonicTime time;
};
thread_local PassClock t_pass_clock;

MonotonicTime passTime() {
  PassClock& clock = t_pass_clock;
  if (!clock.in_loop) return std::chrono::steady_clock::now();
  if (!clock.taken) {
    clock.time = std::chrono::steady_clock::now();
    clock.taken = true;
  }
  return clock.time;
}
}  // namespace

Timer::Timer(event_base* base, std::function<void()> cb) : cb_(std::move(cb)) {
  CW_ASSERT(evtimer_assign(ev_.get(), base, &Timer::onFire, this) == 0);
}

Timer::~Timer() {
  if (armed_) evtimer_del(ev_.get());
}

void Timer::enable(std::chrono::milliseconds after) {
  const auto now = passTime();
  deadline_ = now + after;
  enabled_ = true;
  // libevent already fires no later than the new deadline: onFire sets it for the rest then.
  if (armed_ && armed_for_ <= deadline_) return;
  arm(now);
}

void Timer::arm(std::chrono::steady_clock::time_point now) {
  using std::chrono::microseconds;
  // Rounded up: libevent must not fire before the deadline (if it does, onFire sets it again).
  const int64_t left =
      deadline_ <= now ? 0 : std::chrono::ceil<microseconds>(deadline_ - now).count();
  timeval tv;
  tv.tv_sec = static_cast<time_t>(left / 1000000);
  tv.tv_usec = static_cast<suseconds_t>(left % 1000000);
  evtimer_add(ev_.get(), &tv);
  armed_ = true;
  armed_for_ = deadline_;
}

void Timer::onFire(int, short, void* arg) {
  auto* self = static_cast<Timer*>(arg);
  self->armed_ = false;
  if (!self->enabled_) return;  // cancelled since it was set
  const auto now = passTime();
  if (now < self->deadline_) {
    self->arm(now);  // pushed back since it was set
    return;
  }
  self->enabled_ = false;
  self->cb_();  // may destroy self
}

// --- FileEvent ----------------------------------------------------------------------------------

FileEvent::FileEvent(event_base* base, int fd, std::function<void(uint32_t)> cb)
    : cb_(std::move(cb)) {
  CW_ASSERT(event_assign(read_ev_.get(), base, fd, EV_READ | EV_PERSIST, &FileEvent::onReady,
                         this) == 0);
}

FileEvent::~FileEvent() {
  event_del(read_ev_.get());
  if (write_ev_ != nullptr) event_free(write_ev_);
}

::event* FileEvent::writeEvent() {
  if (write_ev_ == nullptr) {
    ::event* read = read_ev_.get();
    write_ev_ = event_new(event_get_base(read), event_get_fd(read), EV_WRITE | EV_PERSIST,
                          &FileEvent::onReady, this);
    CW_ASSERT(write_ev_ != nullptr);
  }
  return write_ev_;
}

void FileEvent::releaseIdle() {
  if (write_ev_ == nullptr || (enabled_ & FileReadyType::kWrite) ||
      (activated_ & FileReadyType::kWrite)) {
    return;
  }
  event_free(write_ev_);
  write_ev_ = nullptr;
}

namespace {
// libevent's event_add() does not register an event that sits in the active queue (after
// event_active()), and event_del() drops a queued activation. So a kind that is both activated
// and changed is taken out of the queue, changed, and activated again.
//
struct DescriptorSlot;  // libevent's per-descriptor bookkeeping

// Whatever libevent allocates in here (a slot of its fd map the first time an fd number is
// used, lasting as long as the loop) belongs to the loop, not to the connection at hand; and
// it comes from a pool of its own (see MemoryAccount::PoolScope). 48 bytes hold the slot of
// the epoll backend (about 20) and its header; a larger one comes from the heap.
void changeInterest(::event* ev, short kind, bool enable, bool activated) {
  MemoryAccount::Scope loop_memory(nullptr);
  MemoryAccount::PoolScope descriptor_slots(&SlabPool::immortal<DescriptorSlot, 48>());
  if (enable) {
    if (activated) event_del(ev);
    event_add(ev, nullptr);
  } else {
    event_del(ev);
  }
  if (activated) event_active(ev, kind, 0);
}
}  // namespace

void FileEvent::setEnabled(uint32_t events) {
  const uint32_t changed = events ^ enabled_;
  if (changed & FileReadyType::kRead) {
    changeInterest(read_ev_.get(), EV_READ, events & FileReadyType::kRead,
                   activated_ & FileReadyType::kRead);
  }
  if (changed & FileReadyType::kWrite) {
    changeInterest(writeEvent(), EV_WRITE, events & FileReadyType::kWrite,
                   activated_ & FileReadyType::kWrite);
  }
  enabled_ = events;
}

void FileEvent::activate(uint32_t events) {
  activated_ |= events;
  if (events & FileReadyType::kRead) event_active(read_ev_.get(), EV_READ, 0);
  if (events & FileReadyType::kWrite) event_active(writeEvent(), EV_WRITE, 0);
}

void FileEvent::onReady(int, short what, void* arg) {
  auto* self = static_cast<FileEvent*>(arg);
  uint32_t events = 0;
  if (what & EV_READ) events |= FileReadyType::kRead;
  if (what & EV_WRITE) events |= FileReadyType::kWrite;
  self->activated_ &= ~events;
  self->cb_(events);  // may destroy self
}

// --- Dispatcher ---------------------------------------------------------------------------------

namespace {
std::atomic<bool> g_io_uring_allowed{true};
}  // namespace

void Dispatcher::setIoUringAllowed(bool allowed) { g_io_uring_allowed.store(allowed); }

Dispatcher::Dispatcher(std::string name) : name_(std::move(name)) {
  event_config* cfg = event_config_new();
  // One thread per base: no locking inside libevent. Batch epoll_ctl changes per iteration.
  event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
  base_ = event_base_new_with_config(cfg);
  event_config_free(cfg);
  CW_ASSERT(base_ != nullptr);
  // The libevent we run with has the event size we were built with (EventStorage holds one).
  CW_ASSERT(event_get_struct_event_size() <= sizeof(EventStorage));

  post_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  CW_ASSERT(post_fd_ >= 0);
  post_ev_ = event_new(base_, post_fd_, EV_READ | EV_PERSIST, &Dispatcher::onPosted, this);
  event_add(post_ev_, nullptr);
  deferred_ev_ = event_new(base_, -1, 0, &Dispatcher::onDeferredDelete, this);
  io_batch_ = std::make_unique<IoBatch>(g_io_uring_allowed.load());
}

Dispatcher::~Dispatcher() {
  std::vector<std::function<void()>> late;
  {
    std::lock_guard<std::mutex> lock(post_mutex_);
    late.swap(posted_);
  }
  late.clear();  // outside the lock: a closure's destructor may post again
  clearDeferredDeletes();
  io_batch_.reset();
  event_free(deferred_ev_);
  event_free(post_ev_);
  ::close(post_fd_);
  event_base_free(base_);
}

void Dispatcher::run() {
  thread_id_.store(std::this_thread::get_id());
  t_pass_clock.in_loop = true;
  io_batch_->start();
  if (g_io_uring_allowed.load()) {
    static std::once_flag reported;  // every worker meets the same kernel and seccomp profile
    std::call_once(reported, [this] {
      if (io_batch_->uring()) {
        CW_LOG(kInfo, "socket I/O: batched through io_uring, one system call for a loop "
                      "pass's reads and one for its sends");
      } else {
        CW_LOG(kInfo, "socket I/O: one recv(2)/send(2) each; io_uring unavailable: %s",
               io_batch_->uringUnavailableReason());
      }
    });
  }
  exit_requested_ = false;
  while (!exit_requested_) {
    // One pass: wait for events (not when operations are queued already), run every ready
    // callback, return. (EVLOOP_NONBLOCK alone would not return while events keep coming, and
    // a socket whose read is only queued stays readable.)
    const int flags = EVLOOP_ONCE | (io_batch_->empty() ? 0 : EVLOOP_NONBLOCK);
    t_pass_clock.taken = false;
    if (event_base_loop(base_, flags) < 0) break;
    io_batch_->run();
  }
  t_pass_clock = PassClock{};
  runPosted();
  io_batch_->run();
  io_batch_->stop();
  clearDeferredDeletes();
  // The loop is over: whoever tears the worker down may touch what it owned.
  thread_id_.store(std::thread::id());
}

void Dispatcher::exit() {
  post([this] {
    exit_requested_ = true;
    event_base_loopbreak(base_);
  });
}

void Dispatcher::post(std::function<void()> fn) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(post_mutex_);
    wake = posted_.empty();
    posted_.push_back(std::move(fn));
  }
  if (wake) {
    uint64_t one = 1;
    ssize_t rc;
    do {
      rc = ::write(post_fd_, &one, sizeof(one));
    } while (rc < 0 && errno == EINTR);
    // EAGAIN means the counter is already non-zero: the loop will wake anyway.
  }
}

void Dispatcher::onPosted(int fd, short, void* arg) {
  uint64_t count;
  while (::read(fd, &count, sizeof(count)) > 0) {
  }
  static_cast<Dispatcher*>(arg)->runPosted();
}

void Dispatcher::runPosted() {
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(post_mutex_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) fn();
}

void Dispatcher::deferredDelete(std::unique_ptr<DeferredDeletable> object) {
  CW_ASSERT(isThreadSafe());
  if (to_delete_.size() == to_delete_.capacity()) {
    MemoryAccount::Scope nobody(nullptr);
    to_delete_.reserve(std::max<size_t>(16, to_delete_.capacity() * 2));
  }
  to_delete_.push_back(std::move(object));
  if (!deferred_scheduled_) {
    deferred_scheduled_ = true;
    event_active(deferred_ev_, EV_TIMEOUT, 0);
  }
}

void Dispatcher::onDeferredDelete(int, short, void* arg) {
  static_cast<Dispatcher*>(arg)->clearDeferredDeletes();
}

void Dispatcher::clearDeferredDeletes() {
  deferred_scheduled_ = false;
  // Destructors may queue more deletions; keep going until none are left.
  while (!to_delete_.empty()) {
    deleting_.swap(to_delete_);
    deleting_.clear();
  }
}

std::unique_ptr<Timer> Dispatcher::createTimer(std::function<void()> cb) {
  return std::make_unique<Timer>(base_, std::move(cb));
}

std::unique_ptr<FileEvent> Dispatcher::createFileEvent(int fd, std::function<void(uint32_t)> cb) {
  return std::make_unique<FileEvent>(base_, fd, std::move(cb));
}

bool Dispatcher::isThreadSafe() const {
  const std::thread::id id = thread_id_.load();
  return id == std::thread::id() || id == std::this_thread::get_id();
}

MonotonicTime Dispatcher::now() const { return passTime(); }

}  // namespace connwarden::event
