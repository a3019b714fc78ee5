// Buffer: moving bytes links slices, except small runs into a non-empty buffer, which are
// copied into its last slice; and a read slice fits one 16 KiB block.
#include "sidecar/network/buffer.h"

#include <string>

#include "gtest/gtest.h"
#include "sidecar/event/memory_account.h"

namespace connwarden::network {
namespace {

int sliceCount(const Buffer& buffer) {
  iovec slices[64];
  return buffer.peek(slices, 64);
}

// A buffer holding `text` in a slice of its own, as a read would leave it.
void fillAsRead(Buffer& buffer, const std::string& text) {
  iovec slice;
  ASSERT_EQ(buffer.reserve(Buffer::kReadSlice, &slice, 1), 1);
  ASSERT_GE(slice.iov_len, text.size());
  text.copy(static_cast<char*>(slice.iov_base), text.size());
  buffer.commit(&slice, 1, text.size());
}

TEST(BufferTest, SmallBodyJoinsItsHeadInOneSlice) {
  Buffer head;
  head.add("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
  Buffer body;
  fillAsRead(body, "hello");
  head.move(body);
  EXPECT_TRUE(body.empty());
  EXPECT_EQ(sliceCount(head), 1);
  EXPECT_EQ(head.toString(), "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
}

TEST(BufferTest, PartialSmallMoveCopiesAndLeavesTheRest) {
  Buffer out;
  out.add("head:");
  Buffer in;
  fillAsRead(in, "0123456789");
  out.move(in, 4);
  EXPECT_EQ(out.toString(), "head:0123");
  EXPECT_EQ(in.toString(), "456789");
  EXPECT_EQ(sliceCount(out), 1);
}

TEST(BufferTest, IntoAnEmptyBufferSlicesAreLinkedNotCopied) {
  Buffer in;
  fillAsRead(in, "abc");
  iovec before;
  ASSERT_EQ(in.peek(&before, 1), 1);
  Buffer out;
  out.move(in);
  iovec after;
  ASSERT_EQ(out.peek(&after, 1), 1);
  EXPECT_EQ(after.iov_base, before.iov_base);  // the same bytes, not a copy
  EXPECT_EQ(out.toString(), "abc");
}

TEST(BufferTest, LargeMovesLinkSlices) {
  const std::string large(Buffer::kCopyLimit + 1, 'x');
  Buffer in;
  fillAsRead(in, large);
  iovec before;
  ASSERT_EQ(in.peek(&before, 1), 1);
  Buffer out;
  out.add("head:");
  out.move(in);
  EXPECT_TRUE(in.empty());
  iovec slices[2];
  ASSERT_EQ(out.peek(slices, 2), 2);
  EXPECT_EQ(slices[1].iov_base, before.iov_base);
  EXPECT_EQ(out.toString(), "head:" + large);
}

TEST(BufferTest, AReadSliceTakesOne16KiBBlock) {
  event::MemoryAccount* account = event::MemoryAccount::create();
  {
    event::MemoryAccount::Scope scope(account);
    Buffer buffer;
    buffer.prepare();
    const int64_t empty = account->bytes(event::MemoryCategory::kBuffers);
    iovec slice;
    ASSERT_EQ(buffer.reserve(Buffer::kReadSlice, &slice, 1), 1);
    EXPECT_GE(slice.iov_len, Buffer::kReadSlice);
    const int64_t block = account->bytes(event::MemoryCategory::kBuffers) - empty;
    EXPECT_GE(block, 16 * 1024);
    EXPECT_LE(block, 16 * 1024 + 64);  // with the allocator's own header, not 32 KiB
    buffer.commit(&slice, 1, 0);
  }
  account->retire();
}

}  // namespace
}  // namespace connwarden::network
