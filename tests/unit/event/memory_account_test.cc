// The accounting allocator: charges follow the current account and category, frees go back to
// the owning account on any thread, and an account lives exactly as long as its owner or its
// last charged block.
#include "sidecar/event/memory_account.h"

#include <event2/event.h>
#include <openssl/crypto.h>

#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

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
