// The event loop of one worker: file events, timers, cross-thread post() and deferred deletion,
// over one libevent event_base. Everything a worker owns is touched only from its dispatcher's
// thread; other threads reach it only through post().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "sidecar/event/io_batch.h"

struct event_base;
struct event;

namespace connwarden::event {

using MonotonicTime = std::chrono::steady_clock::time_point;

// An object whose destruction must wait until the current callback has returned.
class DeferredDeletable {
 public:
  virtual ~DeferredDeletable() = default;
};

// Room for one libevent `struct event` inside our own objects (checked against libevent's size
// at start): one block per timer or socket instead of two.
struct alignas(16) EventStorage {
  unsigned char bytes[128];
  ::event* get() { return reinterpret_cast<::event*>(bytes); }
  const ::event* get() const { return reinterpret_cast<const ::event*>(bytes); }
};

// A one-shot timer. Destroying it cancels it. Callbacks run on the dispatcher's thread and may
// destroy the Timer itself.
//
// Lazy: per request a connection's timers are set, pushed back and cancelled several times, and
// each of those was an insert into or removal from libevent's timer heap. Now a later deadline
// than the one libevent holds, or a cancel, only changes a field; libevent's timer fires at its
// own time, and then either runs the callback (due), sets itself for the rest (pushed back), or
// does nothing (cancelled). Only an earlier deadline reaches libevent at once.
class Timer {
 public:
  Timer(::event_base* base, std::function<void()> cb);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void enable(std::chrono::milliseconds after);
  void disable() { enabled_ = false; }
  bool enabled() const { return enabled_; }

 private:
  static void onFire(int, short, void* arg);
  void arm(std::chrono::steady_clock::time_point now);

  std::function<void()> cb_;
  std::chrono::steady_clock::time_point deadline_{};  // while enabled_
  std::chrono::steady_clock::time_point armed_for_{};  // while armed_: when libevent fires
  bool enabled_ = false;
  bool armed_ = false;  // libevent's timer is pending
  EventStorage ev_;
};

// Readiness of one socket. Read and write interest are separate libevent events so that turning
// write interest on and off (the common case) never touches read interest. The write event is
// made on first use (most connections never wait to write) and given back by releaseIdle().
namespace FileReadyType {
constexpr uint32_t kRead = 0x1;
constexpr uint32_t kWrite = 0x2;
constexpr uint32_t kClosed = 0x4;
}  // namespace FileReadyType

class FileEvent {
 public:
  // `cb` receives a mask of FileReadyType bits. It may destroy the FileEvent.
  FileEvent(::event_base* base, int fd, std::function<void(uint32_t)> cb);
  ~FileEvent();
  FileEvent(const FileEvent&) = delete;
  FileEvent& operator=(const FileEvent&) = delete;

  // Sets the interest to `events` (FileReadyType bits). Only changed interests reach the kernel.
  void setEnabled(uint32_t events);
  uint32_t enabled() const { return enabled_; }
  // Makes the callback run on the next loop iteration with `events`, without waiting for the
  // kernel (used when bytes are already buffered inside a transport such as TLS).
  void activate(uint32_t events);
  // Frees the write event if nothing waits on it (a hibernating connection).
  void releaseIdle();

 private:
  static void onReady(int fd, short what, void* arg);
  ::event* writeEvent();
  std::function<void(uint32_t)> cb_;
  EventStorage read_ev_;
  ::event* write_ev_ = nullptr;
  uint32_t enabled_ = 0;
  uint32_t activated_ = 0;  // kinds queued by activate() whose callback has not run yet
};

class Dispatcher {
 public:
  explicit Dispatcher(std::string name);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  const std::string& name() const { return name_; }

  // Runs the loop on the calling thread until exit() is called. The calling thread becomes the
  // dispatcher's thread. Each pass runs the callbacks of every ready event, then the reads and
  // sends they queued on ioBatch().
  void run();
  // Thread-safe. Makes run() return after the current iteration.
  void exit();

  // Thread-safe. Runs `fn` on the dispatcher's thread, in posting order. Callbacks posted after
  // the loop has stopped are destroyed by the destructor, never run: what they would touch (a
  // worker's registry) may be gone by then, and whoever waits on them has a deadline.
  void post(std::function<void()> fn);

  // Frees `object` after the current callback returns. Dispatcher thread only.
  void deferredDelete(std::unique_ptr<DeferredDeletable> object);
  // Frees what deferredDelete() queued, now. For teardown, outside any callback.
  void clearDeferredDeletes();

  std::unique_ptr<Timer> createTimer(std::function<void()> cb);
  std::unique_ptr<FileEvent> createFileEvent(int fd, std::function<void(uint32_t)> cb);

  // True on the dispatcher's thread (or before run() has started, while setting up).
  bool isThreadSafe() const;

  // The steady clock: timestamps compare across workers. On a thread inside run(), the clock is
  // read once per pass of the loop, at the first call after the pass's
  // wait, and that reading serves the rest of the pass (as HAProxy's and libevent's do): a
  // proxied request asked for the time about eight times, 1.2 % of a loaded worker's CPU. A pass
  // lasts a fraction of a millisecond under load; nothing here needs finer time. Timers take
  // their deadlines from the same reading.
  MonotonicTime now() const;

  event_base* base() { return base_; }
  // Socket reads and sends gathered over the loop's current pass (see io_batch.h).
  IoBatch& ioBatch() { return *io_batch_; }

  // Whether dispatchers made from now on may use io_uring (default: yes). For
  // `--io-uring=false`, set before the workers start.
  static void setIoUringAllowed(bool allowed);

 private:
  static void onPosted(int fd, short, void* arg);
  static void onDeferredDelete(int, short, void* arg);
  void runPosted();

  std::string name_;
  event_base* base_;
  int post_fd_;
  ::event* post_ev_;
  ::event* deferred_ev_;
  std::mutex post_mutex_;
  std::vector<std::function<void()>> posted_;  // GUARDED_BY(post_mutex_)
  // Both keep their capacity between batches (a connection or stream is deleted on most
  // requests); their storage is charged to no connection's account.
  std::vector<std::unique_ptr<DeferredDeletable>> to_delete_;
  std::vector<std::unique_ptr<DeferredDeletable>> deleting_;
  bool deferred_scheduled_ = false;
  bool exit_requested_ = false;
  std::unique_ptr<IoBatch> io_batch_;
  std::atomic<std::thread::id> thread_id_{};
};

// A release assertion: for invariants of our own, never for input from the network.
#define CW_ASSERT(cond)                                                                   \
  do {                                                                                    \
    if (!(cond)) ::connwarden::event::assertFailed(#cond, __FILE__, __LINE__);            \
  } while (0)
[[noreturn]] void assertFailed(const char* cond, const char* file, int line);

}  // namespace connwarden::event
