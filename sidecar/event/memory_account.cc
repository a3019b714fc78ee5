#include "sidecar/event/memory_account.h"

#include <event2/event.h>
#include <malloc.h>
#include <openssl/crypto.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "sidecar/event/dispatcher.h"

namespace connwarden::event {

namespace {

thread_local MemoryAccount* t_account = nullptr;
thread_local MemoryCategory t_category = MemoryCategory::kOther;
thread_local SlabPool* t_pool = nullptr;
bool g_hooks_installed = false;
std::atomic<int64_t> g_live_accounts{0};
std::atomic<int64_t> g_cached_bytes{0};  // in every thread's ChainCache
// Free memory on top of a thread's heap above which glibc gives it back (see
// installAllocatorHooks()).
constexpr size_t kArenaTrimThreshold = 64 * 1024;

// In front of every block from the hooks. 16 bytes keep malloc's alignment for the caller.
struct alignas(16) BlockHeader {
  MemoryAccount* account;  // null: charged to nobody
  uint64_t charge;         // bytes charged, with the category in the top byte
};
static_assert(sizeof(BlockHeader) == 16);
constexpr int kCategoryShift = 56;
// Set in `charge` when the block is a slot of a SlabPool rather than a malloc block.
constexpr uint64_t kPooledBit = uint64_t{1} << 55;
constexpr uint64_t kChargeMask = kPooledBit - 1;

// What the block really costs the heap: its usable size plus glibc's size field. (ASan's
// allocator keeps its redzones elsewhere and counts the bytes asked for: so do we, under it.)
#ifdef __SANITIZE_ADDRESS__
uint64_t blockCost(void* block) { return malloc_usable_size(block); }
#else
uint64_t blockCost(void* block) { return malloc_usable_size(block) + sizeof(size_t); }
#endif

void chargeBlock(BlockHeader* header, MemoryAccount* account, MemoryCategory category,
                 uint64_t cost) {
  header->account = account;
  if (account == nullptr) {
    header->charge = 0;
    return;
  }
  header->charge = cost | (uint64_t{static_cast<uint8_t>(category)} << kCategoryShift);
  account->charge(category, static_cast<int64_t>(cost));
}

void releaseBlock(const BlockHeader* header) {
  if (header->account == nullptr) return;
  header->account->release(static_cast<MemoryCategory>(header->charge >> kCategoryShift),
                           static_cast<int64_t>(header->charge & kChargeMask));
}

void* allocateFromPool(SlabPool& pool, MemoryCategory category) {
  auto* header = static_cast<BlockHeader*>(pool.allocate());
  chargeBlock(header, t_account, category, pool.slotSize());
  header->charge |= kPooledBit;
  return header + 1;
}

void* allocate(size_t size, MemoryCategory category) {
  if (size > SIZE_MAX - sizeof(BlockHeader)) return nullptr;
  if (t_pool != nullptr && size + sizeof(BlockHeader) <= t_pool->slotSize()) {
    return allocateFromPool(*t_pool, category);
  }
  auto* header = static_cast<BlockHeader*>(std::malloc(size + sizeof(BlockHeader)));
  if (header == nullptr) return nullptr;
  chargeBlock(header, t_account, category, blockCost(header));
  return header + 1;
}

void deallocate(void* ptr) {
  if (ptr == nullptr) return;
  BlockHeader* header = static_cast<BlockHeader*>(ptr) - 1;
  releaseBlock(header);
  if (header->charge & kPooledBit) {
    SlabPool::ownerOf(header).deallocate(header);
  } else {
    std::free(header);
  }
}

// Who pays for a block that grows.
enum class Growth {
  kOwner,   // the account that owns it (or the current one if nobody did)
  kNobody,  // nobody: a structure of the whole event loop
};

void* reallocate(void* ptr, size_t size, MemoryCategory category, Growth growth) {
  if (ptr == nullptr && growth == Growth::kNobody) {
    MemoryAccount::Scope nobody(nullptr);
    return allocate(size, category);
  }
  if (ptr == nullptr) return allocate(size, category);
  if (size == 0) {
    deallocate(ptr);
    return nullptr;
  }
  if (size > SIZE_MAX - sizeof(BlockHeader)) return nullptr;
  BlockHeader* header = static_cast<BlockHeader*>(ptr) - 1;
  const BlockHeader before = *header;
  if (before.charge & kPooledBit) {
    // A slot cannot grow: move to a block of the heap, kept by the same account.
    const size_t room = SlabPool::ownerOf(header).slotSize() - sizeof(BlockHeader);
    void* moved;
    {
      MemoryAccount::Scope owner(before.account != nullptr ? before.account : t_account);
      MemoryAccount::PoolScope heap(nullptr);
      moved = allocate(size, static_cast<MemoryCategory>(before.charge >> kCategoryShift));
    }
    if (moved == nullptr) return nullptr;
    std::memcpy(moved, ptr, size < room ? size : room);
    deallocate(ptr);
    return moved;
  }
  auto* grown = static_cast<BlockHeader*>(std::realloc(header, size + sizeof(BlockHeader)));
  if (grown == nullptr) return nullptr;  // the old block is untouched and still charged
  // Charge the new size before releasing the old one: the old charge may be all that keeps a
  // retired account alive.
  if (growth == Growth::kNobody) {
    chargeBlock(grown, nullptr, category, 0);
  } else if (before.account != nullptr) {
    chargeBlock(grown, before.account,
                static_cast<MemoryCategory>(before.charge >> kCategoryShift), blockCost(grown));
  } else {
    chargeBlock(grown, t_account, category, blockCost(grown));
  }
  releaseBlock(&before);
  return grown + 1;
}

// Spare evbuffer chains, per thread. libevent makes a chain for each run of bytes a buffer takes
// in, sized to a power of two from 1 KiB, and frees it once drained: several times per proxied
// request. Freed to the heap, those blocks came and went at the top of the worker's heap, which
// glibc then gave back to the kernel (madvise) and took again (page faults) dozens of times a
// second; and a 1 KiB chain with our block header is just past glibc's per-thread cache, so each
// took its slower paths. A few are kept here instead: up to 64 KiB per size (64 of 1 KiB, enough
// for a response head pending on every connection of a busy batch; 2 of 32 KiB), at most
// 384 KiB in all, charged to nobody while kept, emptied by trimHeap().
class ChainCache {
 public:
  static constexpr int kMinShift = 10;  // 1 KiB
  static constexpr int kMaxShift = 15;  // 32 KiB
  static constexpr size_t kClassBytes = 64 * 1024;
  static constexpr int kMaxPerClass = kClassBytes >> kMinShift;

  // A kept block for a request of `size` bytes, now charged to the current account; or null.
  void* take(size_t size) {
    const int c = classOfRequest(size);
    if (c < 0 || count_[c] == 0) return nullptr;
    BlockHeader* header = slots_[c][--count_[c]];
    forget(c);
    chargeBlock(header, t_account, t_category, blockCost(header));
    return header + 1;
  }

  // Keeps a block that libevent frees, if it fits; false otherwise (the caller frees it).
  bool keep(BlockHeader* header) {
    if (closed_ || (header->charge & kPooledBit)) return false;
    const int c = classOfBlock(header);
    if (c < 0 || count_[c] == static_cast<int>(kClassBytes >> (c + kMinShift))) return false;
    releaseBlock(header);
    header->account = nullptr;
    header->charge = 0;
    slots_[c][count_[c]++] = header;
    g_cached_bytes.fetch_add(static_cast<int64_t>(size_t{1} << (c + kMinShift)),
                             std::memory_order_relaxed);
    return true;
  }

  void flush() {
    for (int c = 0; c < kClasses; ++c) {
      while (count_[c] > 0) {
        std::free(slots_[c][--count_[c]]);
        forget(c);
      }
    }
  }

  // At thread exit: what is kept goes back to the heap, and nothing more is kept.
  void close() {
    closed_ = true;
    flush();
  }

 private:
  static constexpr int kClasses = kMaxShift - kMinShift + 1;

  // libevent asks for exact powers of two.
  static int classOfRequest(size_t size) {
    if (size < (size_t{1} << kMinShift) || size > (size_t{1} << kMaxShift)) return -1;
    if ((size & (size - 1)) != 0) return -1;
    return __builtin_ctzll(size) - kMinShift;
  }
  // A block serves requests of 2^c bytes if it holds at least that much, and was made for one
  // (a little more than 2^c, never the next power).
  static int classOfBlock(BlockHeader* header) {
    const size_t usable = malloc_usable_size(header) - sizeof(BlockHeader);
    if (usable < (size_t{1} << kMinShift)) return -1;
    const int shift = 63 - __builtin_clzll(usable);
    if (shift > kMaxShift || usable - (size_t{1} << shift) >= 64) return -1;
    return shift - kMinShift;
  }
  void forget(int c) {
    g_cached_bytes.fetch_sub(static_cast<int64_t>(size_t{1} << (c + kMinShift)),
                             std::memory_order_relaxed);
  }

  BlockHeader* slots_[kClasses][kMaxPerClass];
  int count_[kClasses];
  bool closed_;
};

// Trivially destructible, so usable in this thread's last destructors; a separate object
// empties it when the thread exits.
thread_local ChainCache t_chains;
struct ChainCacheCloser {
  ~ChainCacheCloser() { t_chains.close(); }
  void arm() {}
};
thread_local ChainCacheCloser t_chains_closer;

// libevent's blocks: events and timers (other), or buffer space (network::Buffer says so).
// libevent grows only structures of the whole loop with realloc (the fd map, the timer heap, the
// change list, the epoll array): growing them while a connection happens to be current must not
// charge that connection for the life of the process.
void* libeventMalloc(size_t size) {
  if (void* kept = t_chains.take(size)) return kept;
  return allocate(size, t_category);
}
void libeventFree(void* ptr) {
  if (ptr == nullptr) return;
  t_chains_closer.arm();  // made on this thread's first free, so that its exit empties the cache
  if (t_chains.keep(static_cast<BlockHeader*>(ptr) - 1)) return;
  deallocate(ptr);
}
void* libeventRealloc(void* ptr, size_t size) {
  return reallocate(ptr, size, t_category, Growth::kNobody);
}
void* opensslMalloc(size_t size, const char*, int) { return allocate(size, MemoryCategory::kTls); }
void* opensslRealloc(void* ptr, size_t size, const char*, int) {
  return reallocate(ptr, size, MemoryCategory::kTls, Growth::kOwner);
}
void opensslFree(void* ptr, const char*, int) { deallocate(ptr); }

// Before any other static initialiser of the program: once OpenSSL or libevent has allocated,
// their allocators can no longer be replaced.
__attribute__((constructor(101))) void installAllocatorHooks() {
  const bool openssl = CRYPTO_set_mem_functions(opensslMalloc, opensslRealloc, opensslFree) == 1;
  event_set_mem_functions(libeventMalloc, libeventRealloc, libeventFree);
  g_hooks_installed = openssl;
  // A worker's heap is a glibc thread arena, and only a free that leaves at least
  // M_TRIM_THRESHOLD (128 KiB by default) on top of it gives its top back to the kernel, less
  // M_TOP_PAD (128 KiB); malloc_trim() does not touch a thread arena's top at all. So after a
  // burst of big responses a worker kept up to 128-256 KiB resident however idle it went (the
  // 16 KiB per connection of idle_bench's "10 MB retained", over 8 connections: malloc_info()
  // showed the heap in use unchanged and a 164 KB free top). Lower both, here while the process
  // has one thread (mallopt is not safe beside other threads' allocations): the top goes back
  // once 64 KiB of it is free, all of it; trimHeap() gives back the rest. Measured with wrk -c64
  // through one worker, 100 B and 200 KB responses: req/s within the runs' noise, and no more
  // mprotect/madvise calls (strace -c, 200 KB: 4 against 79). Setting them also keeps glibc from
  // raising both thresholds when a big mmap'd block is freed (to up to 32 and 64 MiB), which
  // would let a heap keep that much; blocks from 128 KiB up stay mmap'd, as they start.
  mallopt(M_TOP_PAD, 0);
  mallopt(M_TRIM_THRESHOLD, kArenaTrimThreshold);
}

}  // namespace

void trimHeap() {
  t_chains.flush();
  malloc_trim(0);
  // malloc_trim() leaves this thread's arena top alone, and a free gives it back only once
  // kArenaTrimThreshold of it is free: add that much, so that the free trims all of it.
  void* volatile top = std::malloc(kArenaTrimThreshold);  // volatile: the pair must happen
  std::free(top);
}

int64_t spareChainBytes() { return g_cached_bytes.load(std::memory_order_relaxed); }

std::string_view memoryCategoryName(MemoryCategory category) {
  switch (category) {
    case MemoryCategory::kOther: return "other";
    case MemoryCategory::kBuffers: return "buffers";
    case MemoryCategory::kTls: return "tls";
    case MemoryCategory::kCodec: return "codec";
  }
  return "unknown";
}

namespace {
// Accounts live as long as their connections: out of the general heap (see SlabPool).
SlabPool& accountPool() { return SlabPool::immortal<MemoryAccount, sizeof(MemoryAccount)>(); }
}  // namespace

MemoryAccount* MemoryAccount::create() {
  // Outside the hooks: an account cannot hold a charge for its own block and still reach zero.
  auto* account = new (accountPool().allocate()) MemoryAccount();
  account->by_category_[static_cast<size_t>(MemoryCategory::kOther)].store(
      static_cast<int64_t>(accountPool().slotSize()), std::memory_order_relaxed);
  account->peak_.store(account->total(), std::memory_order_relaxed);
  g_live_accounts.fetch_add(1, std::memory_order_relaxed);
  return account;
}

void MemoryAccount::retire() {
  if (live_.fetch_sub(kOwned, std::memory_order_acq_rel) == kOwned) destroy();
}

void MemoryAccount::destroy() {
  g_live_accounts.fetch_sub(1, std::memory_order_relaxed);
  this->~MemoryAccount();
  accountPool().deallocate(this);
}

int64_t MemoryAccount::liveAccounts() { return g_live_accounts.load(std::memory_order_relaxed); }

int64_t MemoryAccount::total() const {
  int64_t sum = 0;
  for (const auto& bytes : by_category_) sum += bytes.load(std::memory_order_relaxed);
  return sum;
}

void MemoryAccount::charge(MemoryCategory category, int64_t bytes) {
  by_category_[static_cast<size_t>(category)].fetch_add(bytes, std::memory_order_relaxed);
  live_.fetch_add(bytes, std::memory_order_relaxed);
  const int64_t now = total();
  int64_t peak = peak_.load(std::memory_order_relaxed);
  while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

void MemoryAccount::release(MemoryCategory category, int64_t bytes) {
  by_category_[static_cast<size_t>(category)].fetch_sub(bytes, std::memory_order_relaxed);
  if (live_.fetch_sub(bytes, std::memory_order_acq_rel) == bytes) destroy();
}

MemoryAccount::Scope::Scope(MemoryAccount* account) : previous_(t_account) {
  t_account = account;
}
MemoryAccount::Scope::~Scope() { t_account = previous_; }

MemoryAccount::CategoryScope::CategoryScope(MemoryCategory category) : previous_(t_category) {
  t_category = category;
}
MemoryAccount::CategoryScope::~CategoryScope() { t_category = previous_; }

MemoryAccount* MemoryAccount::current() { return t_account; }

MemoryAccount::PoolScope::PoolScope(SlabPool* pool) : previous_(t_pool) { t_pool = pool; }
MemoryAccount::PoolScope::~PoolScope() { t_pool = previous_; }

void* allocatePooled(SlabPool& pool, size_t size) {
  CW_ASSERT(size + sizeof(BlockHeader) <= pool.slotSize());
  return allocateFromPool(pool, t_category);
}

void deallocatePooled(void* ptr) { deallocate(ptr); }
bool MemoryAccount::hooksInstalled() { return g_hooks_installed; }

}  // namespace connwarden::event

// The process's operator new and delete go through the same accounting allocator. (The aligned
// forms keep libstdc++'s own implementation: they pair with each other, never with these.)
void* operator new(size_t size) {
  void* ptr = connwarden::event::allocate(size, connwarden::event::t_category);
  if (ptr == nullptr) throw std::bad_alloc();
  return ptr;
}
void* operator new[](size_t size) { return operator new(size); }
void* operator new(size_t size, const std::nothrow_t&) noexcept {
  return connwarden::event::allocate(size, connwarden::event::t_category);
}
void* operator new[](size_t size, const std::nothrow_t&) noexcept {
  return connwarden::event::allocate(size, connwarden::event::t_category);
}
void operator delete(void* ptr) noexcept { connwarden::event::deallocate(ptr); }
void operator delete[](void* ptr) noexcept { connwarden::event::deallocate(ptr); }
void operator delete(void* ptr, size_t) noexcept { connwarden::event::deallocate(ptr); }
void operator delete[](void* ptr, size_t) noexcept { connwarden::event::deallocate(ptr); }
void operator delete(void* ptr, const std::nothrow_t&) noexcept {
  connwarden::event::deallocate(ptr);
}
void operator delete[](void* ptr, const std::nothrow_t&) noexcept {
  connwarden::event::deallocate(ptr);
}
