#include "sidecar/event/io_batch.h"

#include <liburing.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "sidecar/event/dispatcher.h"
#include "sidecar/event/log.h"
#include "sidecar/event/memory_account.h"

namespace connwarden::event {

namespace {
// Sends per io_uring_enter; a pass with more issues them in several. A loaded worker's pass
// carries a few tens.
constexpr unsigned kEntries = 128;
constexpr int kSendFlags = MSG_NOSIGNAL | MSG_DONTWAIT;
}  // namespace

struct IoBatch::Ring {
  io_uring ring;
  std::vector<msghdr> msgs;  // the sendmsg headers of one io_uring_enter
};

IoBatch::Socket::~Socket() {
  if (batch_ != nullptr) batch_->remove(*this);
}

IoBatch::IoBatch(bool use_uring) : want_uring_(use_uring) {
  MemoryAccount::Scope loop_memory(nullptr);  // the worker's, not a connection's
  ops_.resize(kEntries);
  op_slots_.resize(kEntries);
  results_.resize(kEntries);
}

IoBatch::~IoBatch() {
  for (Socket* s : queue_) {
    if (s != nullptr) s->batch_ = nullptr;
  }
  for (Socket* s : running_) {
    if (s != nullptr) s->batch_ = nullptr;
  }
  stop();
}

void IoBatch::start() {
  if (!want_uring_ || ring_ != nullptr) return;
  MemoryAccount::Scope loop_memory(nullptr);
  auto ring = std::make_unique<Ring>();
  // On the one thread that submits (this one): no locking inside the ring, and completion work
  // only when we ask for it, so no task-work interruptions of this thread's system calls. Keep
  // submitting past a failed entry. Older kernels lack some flags: fewer then (6.1, 5.19).
  const unsigned flag_sets[] = {
      IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
          IORING_SETUP_DEFER_TASKRUN,
      IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
      0,
  };
  int rc = -EINVAL;
  for (unsigned flags : flag_sets) {
    io_uring_params params{};
    params.flags = flags;
    rc = io_uring_queue_init_params(kEntries, &ring->ring, &params);
    if (rc != -EINVAL) break;
  }
  if (rc < 0) {
    uring_error_ = std::strerror(-rc);
    return;
  }
  ring->msgs.resize(kEntries);
  ring_ = std::move(ring);
  uring_error_.clear();
}

void IoBatch::stop() {
  if (ring_ == nullptr) return;
  io_uring_queue_exit(&ring_->ring);
  ring_.reset();
}

void IoBatch::scheduleSend(Socket& socket) {
  if (socket.batch_ != nullptr) return;
  if (queue_.size() == queue_.capacity()) {
    MemoryAccount::Scope loop_memory(nullptr);
    queue_.reserve(std::max<size_t>(64, queue_.capacity() * 2));
  }
  socket.batch_ = this;
  socket.slot_ = static_cast<uint32_t>(queue_.size());
  socket.running_ = false;
  queue_.push_back(&socket);
  ++live_;
}

void IoBatch::remove(Socket& socket) {
  if (socket.running_) {
    running_[socket.slot_] = nullptr;
  } else {
    queue_[socket.slot_] = nullptr;
    --live_;
  }
  socket.batch_ = nullptr;
}

void IoBatch::run() {
  if (live_ == 0) {
    queue_.clear();
    return;
  }
  running_.swap(queue_);
  live_ = 0;
  for (Socket* s : running_) {
    if (s != nullptr) s->running_ = true;
  }
  size_t next = 0;
  while (next < running_.size()) {
    // Prepare up to kEntries sends. Preparing only reads the sockets' buffers: no callbacks.
    int n = 0;
    for (; next < running_.size() && n < static_cast<int>(kEntries); ++next) {
      Socket* s = running_[next];
      if (s == nullptr) continue;
      SendOp& op = ops_[n];
      op.count = s->prepareSend(op);
      op_slots_[n] = static_cast<uint32_t>(next);
      ++n;
    }
    issue(n);
    // Completions run callbacks, which may close, destroy or queue any socket (queued ones go
    // to queue_, for the next run()). Every send of this round has finished in the kernel.
    for (int k = 0; k < n; ++k) {
      Socket* s = running_[op_slots_[k]];
      if (s == nullptr) continue;  // destroyed by an earlier completion
      running_[op_slots_[k]] = nullptr;
      s->batch_ = nullptr;
      s->running_ = false;
      s->completeSend(results_[k]);
    }
  }
  running_.clear();
}

namespace {
ssize_t sendNow(const IoBatch::SendOp& op) {
  ssize_t rc;
  do {
    if (op.count == 1) {
      rc = ::send(op.fd, op.slices[0].iov_base, op.slices[0].iov_len, kSendFlags);
    } else {
      msghdr msg{};
      msg.msg_iov = const_cast<iovec*>(op.slices);
      msg.msg_iovlen = op.count;
      rc = ::sendmsg(op.fd, &msg, kSendFlags);
    }
  } while (rc < 0 && errno == EINTR);
  return rc < 0 ? -errno : rc;
}
}  // namespace

void IoBatch::issue(int n) {
  int queued = 0;
  if (ring_ != nullptr) {
    io_uring* ring = &ring_->ring;
    for (int k = 0; k < n; ++k) {
      SendOp& op = ops_[k];
      results_[k] = 0;
      if (op.count == 0) continue;
      io_uring_sqe* sqe = io_uring_get_sqe(ring);
      CW_ASSERT(sqe != nullptr);  // at most kEntries per round, all reaped before the next
      if (op.count == 1) {
        io_uring_prep_send(sqe, op.fd, op.slices[0].iov_base, op.slices[0].iov_len, kSendFlags);
      } else {
        msghdr& msg = ring_->msgs[k];
        msg = msghdr{};
        msg.msg_iov = op.slices;
        msg.msg_iovlen = op.count;
        io_uring_prep_sendmsg(sqe, op.fd, &msg, kSendFlags);
      }
      io_uring_sqe_set_data64(sqe, static_cast<uint64_t>(k));
      ++queued;
    }
    if (queued == 0) return;
    int rc;
    do {
      rc = io_uring_submit_and_wait(ring, queued);
    } while (rc == -EINTR);
    int reaped = 0;
    const int submitted = rc < 0 ? 0 : rc;
    while (reaped < submitted) {
      io_uring_cqe* cqe = nullptr;
      const int w = io_uring_wait_cqe(ring, &cqe);
      if (w == -EINTR) continue;
      CW_ASSERT(w == 0);
      results_[io_uring_cqe_get_data64(cqe)] = cqe->res;
      io_uring_cqe_seen(ring, cqe);
      ++reaped;
    }
    if (submitted == queued) return;
    // The kernel took fewer than it was given. What it did not take must never reach it later
    // (it points into buffers that move on): give the ring up, and send the rest plainly.
    CW_LOG(kWarn, "io_uring: submitted %d of %d sends (%s); sending with send(2) from now on",
           submitted, queued, rc < 0 ? std::strerror(-rc) : "short submit");
    stop();
    want_uring_ = false;
    uring_error_ = "submission failed";
    // The first `submitted` sends with a count were issued, in order.
    int issued = 0;
    for (int k = 0; k < n; ++k) {
      if (ops_[k].count == 0) continue;
      if (issued++ < submitted) continue;
      results_[k] = sendNow(ops_[k]);
    }
    return;
  }
  for (int k = 0; k < n; ++k) results_[k] = ops_[k].count == 0 ? 0 : sendNow(ops_[k]);
}

}  // namespace connwarden::event
