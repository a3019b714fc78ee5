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
// Operations per io_uring_enter; a pass with more issues them in several. A loaded worker's pass
// carries a few tens. Reads take fewer per round: each has a slot of the batch's memory
// (32 * 2 KiB = 64 KiB per worker; 64 * 4 KiB was no faster).
constexpr unsigned kEntries = 128;
constexpr unsigned kRecvOps = 32;
constexpr int kFlags = MSG_NOSIGNAL | MSG_DONTWAIT;
}  // namespace

struct IoBatch::Ring {
  io_uring ring;
  std::vector<msghdr> msgs;  // the sendmsg headers of one io_uring_enter
};

IoBatch::Socket::~Socket() {
  if (batch_ == nullptr) return;
  for (Kind kind : {kRecv, kSend}) {
    if (lanes_[kind].queued) batch_->remove(*this, kind);
  }
}

IoBatch::IoBatch(bool use_uring) : want_uring_(use_uring) {
  MemoryAccount::Scope loop_memory(nullptr);  // the worker's, not a connection's
  // Zeroed: resident from the start, a fixed cost of the worker rather than page faults under
  // the first burst of reads.
  recv_slots_ = std::make_unique<char[]>(kRecvOps * kRecvSlot);
  ops_.resize(kEntries);
  op_slots_.resize(kEntries);
  results_.resize(kEntries);
}

IoBatch::~IoBatch() {
  for (Lane& lane : lanes_) {
    for (auto* list : {&lane.queue, &lane.running}) {
      for (Socket* s : *list) {
        if (s != nullptr) s->batch_ = nullptr;
      }
    }
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

void IoBatch::schedule(Socket& socket, Kind kind) {
  Socket::Entry& entry = socket.lanes_[kind];
  if (entry.queued) return;
  CW_ASSERT(socket.batch_ == nullptr || socket.batch_ == this);
  Lane& lane = lanes_[kind];
  if (lane.queue.size() == lane.queue.capacity()) {
    MemoryAccount::Scope loop_memory(nullptr);
    lane.queue.reserve(std::max<size_t>(64, lane.queue.capacity() * 2));
  }
  socket.batch_ = this;
  entry = {static_cast<uint32_t>(lane.queue.size()), true, false};
  lane.queue.push_back(&socket);
  ++lane.live;
}

void IoBatch::remove(Socket& socket, Kind kind) {
  Socket::Entry& entry = socket.lanes_[kind];
  Lane& lane = lanes_[kind];
  if (entry.running) {
    lane.running[entry.slot] = nullptr;
  } else {
    lane.queue[entry.slot] = nullptr;
    --lane.live;
  }
  entry = {};
}

void IoBatch::run() {
  runLane(kRecv);
  runLane(kSend);
}

void IoBatch::runLane(Kind kind) {
  Lane& lane = lanes_[kind];
  if (lane.live == 0) {
    lane.queue.clear();
    return;
  }
  lane.running.swap(lane.queue);
  lane.live = 0;
  for (Socket* s : lane.running) {
    if (s != nullptr) s->lanes_[kind].running = true;
  }
  // Takes the socket at `slot` out of the lane (it may queue itself again from its callback).
  auto leave = [&](uint32_t slot) {
    Socket* s = lane.running[slot];
    lane.running[slot] = nullptr;
    s->lanes_[kind] = {};
    return s;
  };
  const int per_round = static_cast<int>(kind == kRecv ? kRecvOps : kEntries);
  size_t next = 0;
  while (next < lane.running.size()) {
    // Prepare up to per_round operations. Preparing calls nobody back.
    int n = 0;
    for (; next < lane.running.size() && n < per_round; ++next) {
      Socket* s = lane.running[next];
      if (s == nullptr) continue;
      Op& op = ops_[n];
      if (kind == kRecv) {
        if (!s->prepareRecv(&op.fd)) {
          leave(static_cast<uint32_t>(next));
          continue;
        }
        op.count = 1;
        op.slices[0] = {recv_slots_.get() + n * kRecvSlot, kRecvSlot};
      } else {
        op.count = s->prepareSend(op);
      }
      op_slots_[n] = static_cast<uint32_t>(next);
      ++n;
    }
    issue(kind, n);
    // Every operation of this round has finished in the kernel. Callbacks may close, destroy or
    // queue any socket (queued ones go to the lane's queue, for the next run()).
    for (int k = 0; k < n; ++k) {
      if (lane.running[op_slots_[k]] == nullptr) continue;  // destroyed by an earlier callback
      Socket* s = leave(op_slots_[k]);
      if (kind == kRecv) {
        s->completeRecv(static_cast<const char*>(ops_[k].slices[0].iov_base), results_[k]);
      } else {
        s->completeSend(results_[k]);
      }
    }
  }
  lane.running.clear();
}

ssize_t IoBatch::issueNow(Kind kind, const Op& op) {
  ssize_t rc;
  do {
    if (kind == kRecv) {
      rc = ::recv(op.fd, op.slices[0].iov_base, op.slices[0].iov_len, kFlags);
    } else if (op.count == 1) {
      rc = ::send(op.fd, op.slices[0].iov_base, op.slices[0].iov_len, kFlags);
    } else {
      msghdr msg{};
      msg.msg_iov = const_cast<iovec*>(op.slices);
      msg.msg_iovlen = op.count;
      rc = ::sendmsg(op.fd, &msg, kFlags);
    }
  } while (rc < 0 && errno == EINTR);
  return rc < 0 ? -errno : rc;
}

void IoBatch::issue(Kind kind, int n) {
  int with_bytes = 0;
  for (int k = 0; k < n && with_bytes < 2; ++k) with_bytes += ops_[k].count > 0 ? 1 : 0;
  // One operation is cheaper as its own system call than through the ring (measured at one
  // connection: 43 vs 47 us of CPU per request).
  if (ring_ == nullptr || with_bytes < 2) {
    for (int k = 0; k < n; ++k) results_[k] = ops_[k].count == 0 ? 0 : issueNow(kind, ops_[k]);
    return;
  }
  io_uring* ring = &ring_->ring;
  int queued = 0;
  for (int k = 0; k < n; ++k) {
    Op& op = ops_[k];
    results_[k] = 0;
    if (op.count == 0) continue;
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    CW_ASSERT(sqe != nullptr);  // at most kEntries per round, all reaped before the next
    if (kind == kRecv) {
      io_uring_prep_recv(sqe, op.fd, op.slices[0].iov_base, op.slices[0].iov_len, kFlags);
    } else if (op.count == 1) {
      io_uring_prep_send(sqe, op.fd, op.slices[0].iov_base, op.slices[0].iov_len, kFlags);
    } else {
      msghdr& msg = ring_->msgs[k];
      msg = msghdr{};
      msg.msg_iov = op.slices;
      msg.msg_iovlen = op.count;
      io_uring_prep_sendmsg(sqe, op.fd, &msg, kFlags);
    }
    io_uring_sqe_set_data64(sqe, static_cast<uint64_t>(k));
    ++queued;
  }
  if (queued == 0) return;
  int rc;
  do {
    rc = io_uring_submit_and_wait(ring, queued);
  } while (rc == -EINTR);
  const int submitted = rc < 0 ? 0 : rc;
  for (int reaped = 0; reaped < submitted;) {
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
  // (it points into buffers that move on): give the ring up, and do the rest plainly.
  CW_LOG(kWarn, "io_uring: submitted %d of %d operations (%s); plain system calls from now on",
         submitted, queued, rc < 0 ? std::strerror(-rc) : "short submit");
  stop();
  want_uring_ = false;
  uring_error_ = "submission failed";
  int issued = 0;  // the first `submitted` operations with a count were issued, in order
  for (int k = 0; k < n; ++k) {
    if (ops_[k].count == 0) continue;
    if (issued++ < submitted) continue;
    results_[k] = issueNow(kind, ops_[k]);
  }
}

}  // namespace connwarden::event
