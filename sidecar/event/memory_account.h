// Per-connection memory accounts, measured rather than estimated: every heap block that our
// code, libevent or OpenSSL allocates while a connection's account is current is charged to that
// account, at the size the allocator really gave (malloc_usable_size plus the chunk header), and
// released from the same account when the block is freed, on whatever thread and path that is.
//
// How: the process's `operator new`, libevent's allocator (event_set_mem_functions) and
// OpenSSL's (CRYPTO_set_mem_functions) all go through one allocator that puts a 16-byte header
// in front of each block, recording the owning account and the charged size. The current account
// and category are thread-local and set by scopes around a connection's callbacks:
//
//   MemoryAccount::Scope scope(connection.account());            // whose bytes
//   MemoryAccount::CategoryScope codec(MemoryCategory::kCodec);  // which kind
//
// Blocks from OpenSSL are always charged as kTls; others as the current category (network::Buffer
// sets kBuffers around its libevent calls, the HTTP codec kCodec around parsing). An account outlives its owner while bytes are still charged to it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sidecar/event/slab_pool.h"

namespace connwarden::event {

enum class MemoryCategory : uint8_t { kOther, kBuffers, kTls, kCodec };
constexpr size_t kMemoryCategoryCount = 4;
std::string_view memoryCategoryName(MemoryCategory category);

// Gives the heap's free memory back to the kernel (malloc_trim, and the free top of this
// thread's arena, which malloc_trim leaves), with the spare evbuffer chains this thread keeps
// (memory_account.cc). A worker calls it soon after connections hibernate, and once it has
// gone quiet (conn/connection_manager.cc).
void trimHeap();
// Bytes of spare evbuffer chains kept by all threads: heap in use that no account is charged
// for (at most 384 KiB a thread).
int64_t spareChainBytes();

class MemoryAccount {
 public:
  // The account starts owned by its creator, which gives it up with retire().
  static MemoryAccount* create();
  MemoryAccount(const MemoryAccount&) = delete;
  MemoryAccount& operator=(const MemoryAccount&) = delete;

  // The owner is done with the account: it is deleted now if nothing is charged to it, or when
  // the last charged block is freed. The owner must not touch it afterwards.
  void retire();

  // Bytes charged now, in all and by category; and the most ever charged at once.
  int64_t total() const;
  int64_t bytes(MemoryCategory category) const {
    return by_category_[static_cast<size_t>(category)].load(std::memory_order_relaxed);
  }
  int64_t peak() const { return peak_.load(std::memory_order_relaxed); }

  // For allocations that bypass the allocator hooks (none in our code; tests use it).
  void charge(MemoryCategory category, int64_t bytes);
  void release(MemoryCategory category, int64_t bytes);

  // Makes `account` (may be null: nobody's) current on this thread until the scope ends.
  class Scope {
   public:
    explicit Scope(MemoryAccount* account);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    MemoryAccount* previous_;
  };
  class CategoryScope {
   public:
    explicit CategoryScope(MemoryCategory category);
    ~CategoryScope();
    CategoryScope(const CategoryScope&) = delete;
    CategoryScope& operator=(const CategoryScope&) = delete;

   private:
    MemoryCategory previous_;
  };

  // Makes blocks that fit in `pool`'s slots, allocated on this thread until the scope ends,
  // come from `pool` instead of the general heap (null: from the heap). For structures that
  // last as long as a socket number is in use (libevent's per-descriptor slot): scattered among
  // a connection's short-lived blocks they would keep its pages from emptying when it
  // hibernates.
  class PoolScope {
   public:
    explicit PoolScope(SlabPool* pool);
    ~PoolScope();
    PoolScope(const PoolScope&) = delete;
    PoolScope& operator=(const PoolScope&) = delete;

   private:
    SlabPool* previous_;
  };

  static MemoryAccount* current();
  // Accounts not yet deleted, in the whole process (tests, and the metrics' leak check).
  static int64_t liveAccounts();
  // False when a library allocated before the hooks could be installed (then OpenSSL's or
  // libevent's blocks are not attributed); the server logs it at start.
  static bool hooksInstalled();

 private:
  MemoryAccount() = default;
  ~MemoryAccount() = default;
  void destroy();

  // Charged bytes plus kOwned while the owner has not retired: reaching 0 means nobody needs
  // the account any more. The account's own block is in by_category_[kOther] but not in live_.
  static constexpr int64_t kOwned = int64_t{1} << 62;
  std::atomic<int64_t> live_{kOwned};
  std::atomic<int64_t> peak_{0};
  std::atomic<int64_t> by_category_[kMemoryCategoryCount] = {};
};

// A block of `pool` for an object of `size` bytes, charged to the current account like operator
// new's blocks (at the pool's slot size). The pool's slots must hold the object plus
// kPooledHeaderSize. Throws std::bad_alloc.
constexpr size_t kPooledHeaderSize = 16;
void* allocatePooled(SlabPool& pool, size_t size);
// Frees a block from allocatePooled() (or any other of the hooks), releasing its charge.
void deallocatePooled(void* ptr);

}  // namespace connwarden::event
