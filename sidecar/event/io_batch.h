// Socket sends gathered over one pass of a worker's loop and issued together at its end. The
// loop runs every ready event's callback; then the output of every connection that wrote goes to
// the kernel in one io_uring_enter(2), instead of one send(2) per connection.
//
// Why: on the VMs we run on a system call costs about 1 µs of entry and exit alone (a null
// syscall, measured), and a proxied request makes two sends. Loaded, one pass of the loop
// carries tens of requests, so their sends then cost one entry between them.
//
// The sends never wait inside the kernel (MSG_DONTWAIT): each completes, fully, in part, or with
// EAGAIN, inside the io_uring_enter that submits it, and run() reaps every completion before it
// returns. So the bytes a send points into need to stay put only until its complete() call. A
// socket that takes less than it was offered waits for writability through the loop, as before.
//
// Without io_uring (an old kernel, `--io-uring off`, or a seccomp profile that forbids it, as
// container runtimes' default profiles do) each send is its own system call, at the same point.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace connwarden::event {

class IoBatch {
 public:
  static constexpr int kMaxSlices = 16;

  struct SendOp {
    int fd = -1;
    int count = 0;
    iovec slices[kMaxSlices];
  };

  // A socket's owner. It is queued at most once at a time; destroying it takes it out.
  class Socket {
   public:
    virtual ~Socket();

   protected:
    Socket() = default;
    bool sendQueued() const { return batch_ != nullptr; }
    // At the end of the pass: fills `op` with what to send and returns its slice count, or 0 if
    // there is nothing to send (complete(0) is still called, without a system call).
    virtual int prepareSend(SendOp& op) = 0;
    // What the send did: bytes sent, or -errno. The socket may queue itself again from here.
    virtual void completeSend(ssize_t result) = 0;

   private:
    friend class IoBatch;
    IoBatch* batch_ = nullptr;  // while queued
    uint32_t slot_ = 0;         // its index in batch_->queue_ or batch_->running_
    bool running_ = false;      // which of the two
  };

  // `use_uring`: try io_uring in start() (plain sends if the kernel refuses it).
  explicit IoBatch(bool use_uring);
  ~IoBatch();
  // Makes the ring, on the thread that will submit to it (the loop's), and frees it. A ring
  // belongs to the threads that made or used it: its teardown interrupts their blocking system
  // calls otherwise.
  void start();
  void stop();
  IoBatch(const IoBatch&) = delete;
  IoBatch& operator=(const IoBatch&) = delete;

  // Queues `socket`'s send for the end of this pass; nothing if it is queued already.
  void scheduleSend(Socket& socket);
  bool empty() const { return live_ == 0; }
  // Sends for every queued socket. Sockets queued from the completions wait for the next call.
  void run();

  // True when sends go through io_uring (between start() and stop()); else why not ("" when it
  // was not asked for or not started).
  bool uring() const { return ring_ != nullptr; }
  const std::string& uringUnavailableReason() const { return uring_error_; }

 private:
  struct Ring;
  void remove(Socket& socket);
  // Issues ops_[0, n) and stores each one's result in results_.
  void issue(int n);

  bool want_uring_;
  std::unique_ptr<Ring> ring_;
  std::string uring_error_;
  std::vector<Socket*> queue_;    // queued for the next run(); null where a socket left
  std::vector<Socket*> running_;  // the run() in progress
  size_t live_ = 0;               // non-null entries of queue_
  std::vector<SendOp> ops_;
  std::vector<uint32_t> op_slots_;  // running_ index of each op
  std::vector<ssize_t> results_;
};

}  // namespace connwarden::event
