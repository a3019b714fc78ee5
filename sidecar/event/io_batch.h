// Socket reads and sends gathered over one pass of a worker's loop and issued together at its
// end. The loop runs every ready event's callback, which only notes what each connection wants;
// then the reads of every readable connection go to the kernel in one io_uring_enter(2), their
// bytes are handed on (which queues output), and the sends of every connection with output go in
// one more. Without the batch each of those was a recv(2) or send(2) of its own.
//
// Why: on the VMs we run on a system call costs about 1 µs of entry and exit alone (a null
// syscall, measured), and a proxied request makes two reads and two sends. Loaded, one pass of
// the loop carries tens of requests, which then share three system calls (with epoll_wait).
//
// The operations never wait inside the kernel (MSG_DONTWAIT): each completes (fully, in part, or
// with EAGAIN) inside the io_uring_enter that submits it, and run() reaps every completion before
// it calls anyone back. So the memory an operation points into needs to stay put only until its
// completion call. A socket that takes less than it was offered waits for writability through
// the loop, as before.
//
// Without io_uring (an old kernel, `--io-uring=false`, or a seccomp profile that forbids it, as
// container runtimes' default profiles do) each operation is its own system call, at the same
// point, with the same results; so is a round of a single operation, for which the ring costs
// more than the plain call.
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
  // Bytes per batched read. Reads land in the batch's own memory and are copied out: a
  // connection then holds what it received, not a 16 KiB slice per read in flight (which, for
  // every readable connection at once, overflowed the spare-chain cache and cost about one page
  // fault per request). Most request heads fit; a bigger one reads on directly.
  static constexpr size_t kRecvSlot = 2048;

  // One read or send: a socket and the memory to read into or send from.
  struct Op {
    int fd = -1;
    int count = 0;
    iovec slices[kMaxSlices];
  };

  // A socket's owner. It is queued at most once per direction at a time; destroying it takes it
  // out. Preparing must not call anyone back; completing may.
  class Socket {
   public:
    virtual ~Socket();

   protected:
    Socket() = default;
    bool sendQueued() const { return lanes_[kSend].queued; }
    // Queued and its run has begun: the batch prepares or has issued its send.
    bool sendRunning() const { return lanes_[kSend].running; }

    // Reads. Returns false for no read now; else sets `fd`. The batch reads into memory of its
    // own, up to kRecvSlot bytes, and hands them over: `result` bytes at `data`, 0 at end of
    // stream, or -errno. A full slot means more may be waiting.
    virtual bool prepareRecv(int* fd) = 0;
    virtual void completeRecv(const char* data, ssize_t result) = 0;

    // Sends. Fills `op` and returns its slice count, or 0 if there is nothing to send
    // (completeSend(0) is still called, without a system call).
    virtual int prepareSend(Op& op) = 0;
    // What the send did: bytes sent, or -errno. The socket may queue itself again from here;
    // that send waits for the next run().
    virtual void completeSend(ssize_t result) = 0;

   private:
    friend class IoBatch;
    struct Entry {
      uint32_t slot = 0;     // its index in the lane's queue or running list
      bool queued = false;   // in the lane
      bool running = false;  // in its running list (else its queue)
    };
    IoBatch* batch_ = nullptr;  // set when first queued
    Entry lanes_[2];
  };

  // `use_uring`: try io_uring in start() (plain system calls if the kernel refuses it).
  explicit IoBatch(bool use_uring);
  ~IoBatch();
  IoBatch(const IoBatch&) = delete;
  IoBatch& operator=(const IoBatch&) = delete;

  // Makes the ring, on the thread that will submit to it (the loop's), and frees it. A ring
  // belongs to the threads that made or used it: its teardown interrupts their blocking system
  // calls otherwise.
  void start();
  void stop();

  // Queue `socket`'s read or send for the end of this pass; nothing if it is queued already.
  void scheduleRecv(Socket& socket) { schedule(socket, kRecv); }
  void scheduleSend(Socket& socket) { schedule(socket, kSend); }
  bool empty() const { return lanes_[kRecv].live == 0 && lanes_[kSend].live == 0; }
  // The queued reads, handed over; then the queued sends (those the reads queued included).
  // What the completions queue waits for the next call.
  void run();

  // True when operations go through io_uring (between start() and stop()); else why not (""
  // when it was not asked for, or not started).
  bool uring() const { return ring_ != nullptr; }
  const std::string& uringUnavailableReason() const { return uring_error_; }

 private:
  enum Kind { kRecv = 0, kSend = 1 };
  struct Lane {
    std::vector<Socket*> queue;    // for the next run(); null where a socket left
    std::vector<Socket*> running;  // the run() in progress
    size_t live = 0;               // non-null entries of queue
  };
  struct Ring;
  void schedule(Socket& socket, Kind kind);
  void remove(Socket& socket, Kind kind);
  void runLane(Kind kind);
  // Issues ops_[0, n) of one kind and stores each one's result in results_.
  void issue(Kind kind, int n);
  ssize_t issueNow(Kind kind, const Op& op);

  bool want_uring_;
  std::unique_ptr<Ring> ring_;
  std::string uring_error_;
  Lane lanes_[2];
  std::unique_ptr<char[]> recv_slots_;  // kRecvOps * kRecvSlot
  std::vector<Op> ops_;
  std::vector<uint32_t> op_slots_;  // running-list index of each op
  std::vector<ssize_t> results_;
};

}  // namespace connwarden::event
