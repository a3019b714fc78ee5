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

namespace connwarden::event {
enum class MemoryCategory : uint8_t;
}

namespace connwarden::network {

class Buffer {
 public:
  // What a read should reserve: a slice libevent makes in one 16 KiB block, its chain header
  // included (a round 16 KiB would take a 32 KiB block, half of it never used).
  static constexpr size_t kReadSlice = 16 * 1024 - 64;
  // Up to this many bytes, move() copies into this buffer's last slice instead of linking the
  // other buffer's slices, when this one is not empty: a small body then shares its head's
  // slice (one iovec, one TLS record) and the 16 KiB slice it was read into is free at once,
  // rather than held by every response waiting for its write.
  static constexpr size_t kCopyLimit = 4096;

  Buffer() = default;
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  size_t length() const;
  bool empty() const { return length() == 0; }

  void add(const void* data, size_t len);
  void add(std::string_view data) { add(data.data(), data.size()); }
  // The same, with the memory it takes charged as `category` rather than as buffers (a TLS
  // transport's records: TLS memory, as OpenSSL's own record buffers are).
  void add(const void* data, size_t len, event::MemoryCategory category);
  // Moves all of `other` to the end of this buffer, leaving `other` empty.
  void move(Buffer& other);
  // Moves the first `len` bytes (len <= other.length()) of `other` to the end of this buffer.
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
  // Copies the first `len` bytes of `other` here and drains them there; false (nothing done)
  // if they span too many slices.
  bool copyFrom(Buffer& other, size_t len);
  evbuffer* buf_ = nullptr;
};

}  // namespace connwarden::network
