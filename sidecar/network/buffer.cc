#include "sidecar/network/buffer.h"

#include <event2/buffer.h>

#include <algorithm>

#include "sidecar/event/dispatcher.h"
#include "sidecar/event/memory_account.h"

namespace connwarden::network {

namespace {
// Whatever libevent allocates inside these calls is buffer space.
using BufferMemory = event::MemoryAccount::CategoryScope;
constexpr event::MemoryCategory kBuffers = event::MemoryCategory::kBuffers;
}  // namespace

Buffer::~Buffer() {
  if (buf_ != nullptr) evbuffer_free(buf_);
}

evbuffer* Buffer::get() {
  if (buf_ == nullptr) {
    BufferMemory memory(kBuffers);
    buf_ = evbuffer_new();
    CW_ASSERT(buf_ != nullptr);
  }
  return buf_;
}

void Buffer::release() {
  if (buf_ != nullptr && evbuffer_get_length(buf_) == 0) {
    evbuffer_free(buf_);
    buf_ = nullptr;
  }
}

size_t Buffer::length() const { return buf_ == nullptr ? 0 : evbuffer_get_length(buf_); }

void Buffer::add(const void* data, size_t len) { add(data, len, kBuffers); }

void Buffer::add(const void* data, size_t len, event::MemoryCategory category) {
  if (len == 0) return;
  BufferMemory memory(category);
  CW_ASSERT(evbuffer_add(get(), data, len) == 0);
}

void Buffer::move(Buffer& other) {
  const size_t len = other.length();
  if (len == 0) return;
  BufferMemory memory(kBuffers);
  if (len <= kCopyLimit && !empty() && copyFrom(other, len)) return;
  CW_ASSERT(evbuffer_add_buffer(get(), other.buf_) == 0);
}

void Buffer::move(Buffer& other, size_t len) {
  if (len == 0) return;
  BufferMemory memory(kBuffers);
  if (len <= kCopyLimit && !empty() && copyFrom(other, len)) return;
  CW_ASSERT(evbuffer_remove_buffer(other.buf_, get(), len) == static_cast<int>(len));
}

bool Buffer::copyFrom(Buffer& other, size_t len) {
  evbuffer_iovec slices[4];
  const int n = evbuffer_peek(other.buf_, static_cast<ssize_t>(len), nullptr, slices, 4);
  if (n > 4) return false;
  size_t left = len;
  for (int i = 0; i < n && left > 0; ++i) {
    const size_t take = std::min(left, slices[i].iov_len);
    CW_ASSERT(evbuffer_add(buf_, slices[i].iov_base, take) == 0);
    left -= take;
  }
  CW_ASSERT(left == 0);
  evbuffer_drain(other.buf_, len);
  return true;
}

void Buffer::drain(size_t len) {
  if (buf_ != nullptr) evbuffer_drain(buf_, len);
}

int Buffer::peek(iovec* slices, int max) const {
  static_assert(sizeof(evbuffer_iovec) == sizeof(iovec));
  if (buf_ == nullptr) return 0;
  const int n = evbuffer_peek(buf_, -1, nullptr, reinterpret_cast<evbuffer_iovec*>(slices), max);
  return n < max ? n : max;
}

const void* Buffer::linearize(size_t len) {
  BufferMemory memory(kBuffers);
  return evbuffer_pullup(get(), static_cast<ssize_t>(len));
}

void Buffer::copyOut(size_t len, void* out) const {
  if (buf_ != nullptr) evbuffer_copyout(buf_, out, len);
}

std::string Buffer::toString() const {
  std::string out(length(), '\0');
  copyOut(out.size(), out.data());
  return out;
}

int Buffer::reserve(size_t len, iovec* slices, int max) {
  BufferMemory memory(kBuffers);
  return evbuffer_reserve_space(get(), len, reinterpret_cast<evbuffer_iovec*>(slices), max);
}

void Buffer::commit(iovec* slices, int count, size_t written) {
  int used = 0;
  for (; used < count && written > 0; ++used) {
    if (slices[used].iov_len > written) slices[used].iov_len = written;
    written -= slices[used].iov_len;
  }
  CW_ASSERT(evbuffer_commit_space(get(), reinterpret_cast<evbuffer_iovec*>(slices), used) == 0);
}

}  // namespace connwarden::network
