// The accounting allocator: charges follow the current account and category, frees go back to
// the owning account on any thread, and an account lives exactly as long as its owner or its
// last charged block.
#include "sidecar/event/memory_account.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/test_util.h"

namespace connwarden::event {
namespace {

TEST(MemoryAccountTest, HooksAreInstalled) { EXPECT_TRUE(MemoryAccount::hooksInstalled()); }

TEST(MemoryAccountTest, ChargesFollowTheCurrentAccountAndCategory) {
  MemoryAccount* account = MemoryAccount::create();
  const int64_t own = account->total();  // the account's own record
  EXPECT_GT(own, 0);
  EXPECT_EQ(account->bytes(MemoryCategory::kOther), own);
  // Direct calls of operator new: unlike new-expressions, the compiler may not elide them.
  void* other = nullptr;
  void* codec = nullptr;
  void* tls = nullptr;
  {
    MemoryAccount::Scope scope(account);
    other = ::operator new(1000);
    {
      MemoryAccount::CategoryScope category(MemoryCategory::kCodec);
      codec = ::operator new(3000);
    }
    tls = OPENSSL_malloc(500);  // OpenSSL's blocks are always TLS
  }
  void* nobodys = ::operator new(5000);  // no scope: not charged
  EXPECT_GE(account->bytes(MemoryCategory::kOther) - own, 1000);
  EXPECT_LT(account->bytes(MemoryCategory::kOther) - own, 1000 + 64);
  EXPECT_GE(account->bytes(MemoryCategory::kCodec), 3000);
  EXPECT_LT(account->bytes(MemoryCategory::kCodec), 3000 + 64);
  EXPECT_GE(account->bytes(MemoryCategory::kTls), 500);
  EXPECT_EQ(account->bytes(MemoryCategory::kBuffers), 0);
  const int64_t peak = account->total();
  EXPECT_EQ(account->peak(), peak);

  // Freed outside any scope, and on another thread: still released from the owner.
  ::operator delete(codec);
  std::thread([&] { OPENSSL_free(tls); }).join();
  ::operator delete(other);
  ::operator delete(nobodys);
  EXPECT_EQ(account->total(), own);
  EXPECT_EQ(account->peak(), peak);
  account->retire();
}

TEST(MemoryAccountTest, AnAccountOutlivesItsOwnerWhileBytesAreCharged) {
  const int64_t live_before = MemoryAccount::liveAccounts();
  MemoryAccount* account = MemoryAccount::create();
  void* block;
  {
    MemoryAccount::Scope scope(account);
    block = OPENSSL_malloc(100);
  }
  EXPECT_EQ(MemoryAccount::liveAccounts(), live_before + 1);
  account->retire();
  EXPECT_EQ(MemoryAccount::liveAccounts(), live_before + 1);  // the block keeps it
  // Growing the last block of a retired account must not free the account under it.
  block = OPENSSL_realloc(block, 100'000);
  ASSERT_NE(block, nullptr);
  EXPECT_GE(account->bytes(MemoryCategory::kTls), 100'000);
  block = OPENSSL_realloc(block, 10);
  EXPECT_EQ(MemoryAccount::liveAccounts(), live_before + 1);
  OPENSSL_free(block);
  EXPECT_EQ(MemoryAccount::liveAccounts(), live_before);
}

TEST(MemoryAccountTest, LibeventBlocksAreCharged) {
  MemoryAccount* account = MemoryAccount::create();
  const int64_t own = account->total();
  event_base* base;
  {
    MemoryAccount::Scope scope(account);
    base = event_base_new();
  }
  ASSERT_NE(base, nullptr);
  EXPECT_GT(account->total(), own);
  event_base_free(base);
  EXPECT_EQ(account->total(), own);
  account->retire();
}

// A 16 KiB reservation in an evbuffer: charged to `account`.
void fillSixteenKiB(evbuffer* buffer, MemoryAccount* account) {
  MemoryAccount::Scope scope(account);
  evbuffer_iovec slice;
  ASSERT_EQ(evbuffer_reserve_space(buffer, 16 * 1024, &slice, 1), 1);
  std::memset(slice.iov_base, 'x', 16 * 1024);
  slice.iov_len = 16 * 1024;
  ASSERT_EQ(evbuffer_commit_space(buffer, &slice, 1), 0);
}

// libevent's drained chains are kept for the next buffer on the same thread: charged to nobody
// while kept, to whoever takes one, given back by trimHeap() and when the thread exits.
TEST(MemoryAccountTest, SpareChainsAreKeptPerThreadAndChargedToWhoeverTakesThem) {
  const int64_t spare_before = spareChainBytes();
  std::thread([spare_before] {
    MemoryAccount* first = MemoryAccount::create();
    MemoryAccount* second = MemoryAccount::create();
    const int64_t first_own = first->total();
    const int64_t second_own = second->total();
    evbuffer* buffer = evbuffer_new();

    fillSixteenKiB(buffer, first);
    const int64_t cost = first->total() - first_own;
    EXPECT_GE(cost, 16 * 1024);
    evbuffer_drain(buffer, evbuffer_get_length(buffer));
    EXPECT_EQ(first->total(), first_own);
    EXPECT_GE(spareChainBytes() - spare_before, 16 * 1024);

    fillSixteenKiB(buffer, second);  // the kept chain, now the second account's
    EXPECT_EQ(second->total() - second_own, cost);
    EXPECT_EQ(spareChainBytes(), spare_before);
    evbuffer_drain(buffer, evbuffer_get_length(buffer));
    EXPECT_EQ(second->total(), second_own);
    EXPECT_GT(spareChainBytes(), spare_before);
    trimHeap();
    EXPECT_EQ(spareChainBytes(), spare_before);

    fillSixteenKiB(buffer, first);
    evbuffer_drain(buffer, evbuffer_get_length(buffer));
    EXPECT_GT(spareChainBytes(), spare_before);  // kept again, until the thread ends
    evbuffer_free(buffer);
    first->retire();
    second->retire();
  }).join();
  EXPECT_EQ(spareChainBytes(), spare_before);
}

// A burst of big blocks on a thread (a worker streaming large responses) goes back to the kernel
// once freed and trimmed, whether it was bigger than glibc's trim threshold or smaller. Its
// malloc_trim() leaves a thread arena's free top resident, and its default thresholds kept 96 KiB
// of the big burst.
TEST(MemoryAccountTest, TrimHeapGivesBackAThreadsBurst) {
  if (!testing::kRssFollowsFrees) GTEST_SKIP() << "the sanitizer's allocator keeps freed memory";
  for (const int count : {64, 3}) {
    std::thread([count] {
      constexpr size_t kBlock = 16 * 1024;
      std::vector<void*> blocks;
      blocks.reserve(count);
      std::free(std::malloc(64));  // this thread's arena exists before the first reading
      const size_t before = testing::residentAnonymousBytes();
      for (int i = 0; i < count; ++i) {
        blocks.push_back(std::malloc(kBlock));
        std::memset(blocks.back(), 'x', kBlock);
      }
      EXPECT_GE(testing::residentAnonymousBytes(), before + count * kBlock) << count << " blocks";
      for (void* block : blocks) std::free(block);
      trimHeap();
      EXPECT_LT(testing::residentAnonymousBytes(), before + 16 * 1024) << count << " blocks";
    }).join();
  }
}

TEST(MemoryAccountTest, ScopesNest) {
  MemoryAccount* outer = MemoryAccount::create();
  MemoryAccount* inner = MemoryAccount::create();
  {
    MemoryAccount::Scope a(outer);
    EXPECT_EQ(MemoryAccount::current(), outer);
    {
      MemoryAccount::Scope b(inner);
      EXPECT_EQ(MemoryAccount::current(), inner);
      MemoryAccount::Scope nobody(nullptr);
      EXPECT_EQ(MemoryAccount::current(), nullptr);
    }
    EXPECT_EQ(MemoryAccount::current(), outer);
  }
  EXPECT_EQ(MemoryAccount::current(), nullptr);
  outer->retire();
  inner->retire();
}

}  // namespace
}  // namespace connwarden::event
