// A byte queue for socket data: a chain of slices (libevent's evbuffer underneath), so moving
// data between buffers moves slices instead of copying bytes. Layers above network/ see only
// this class, never libevent. The evbuffer is made on first use and given back by release(), so
// an idle or hibernating connection's buffers cost one pointer each.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

struct evbuffer;

namespace connwarden::network {

class Buffer {
 public:
  Buffer() = default;
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  size_t length() const;
  bool empty() const { return length() == 0; }

  void add(const void* data, size_t len);
  void add(std::string_view data) { add(data.data(), data.size()); }
  // Moves all of `other` to the end of this buffer, leaving `other` empty.
  void move(Buffer& other);
  // Moves the first `len` bytes of `other` to the end of this buffer.
  void move(Buffer& other, size_t len);
  void drain(size_t len);

  // Fills up to `max` iovecs with the buffer's leading slices; returns how many were filled.
  int peek(iovec* slices, int max) const;
  // Makes the first `len` bytes (len <= length()) one contiguous slice and returns it.
  const void* linearize(size_t len);
  // Copies the first `len` bytes (len <= length()) into `out` without draining.
  void copyOut(size_t len, void* out) const;
  std::string toString() const;

  // Reserves at least `len` writable bytes at the tail for a read syscall, then commits the
  // `len` bytes actually written there.
  int reserve(size_t len, iovec* slices, int max);
  void commit(iovec* slices, int count, size_t written);

  // Frees the underlying queue if the buffer is empty; it is made again on next use.
  void release();
  // Makes the underlying queue now, charged to the current account (else: on first use).
  void prepare() { get(); }
  bool allocated() const { return buf_ != nullptr; }

 private:
  evbuffer* get();
  evbuffer* buf_ = nullptr;
};

}  // namespace connwarden::network
