#include "sidecar/event/slab_pool.h"

#include <sys/mman.h>

#include <cstdlib>
#include <new>

#include "sidecar/event/dispatcher.h"

namespace connwarden::event {

// At the start of each chunk (which is aligned to its size, so a slot finds its chunk by
// masking). Slots follow, each free one holding the next free slot of the chunk.
struct alignas(16) SlabPool::Chunk {
  SlabPool* pool;
  Chunk* prev;       // in partial_
  Chunk* next;
  void* free_slots;  // freed slots of this chunk
  uint32_t used;     // slots handed out
  uint32_t carved;   // slots ever carved from the untouched tail
};

namespace {
constexpr size_t roundUp16(size_t n) { return (n + 15) & ~size_t{15}; }

// Chunks are mapped from the kernel, aligned to their size, rather than taken from malloc:
// memalign would leave a free hole beside every chunk, and the general heap is exactly what
// these objects must stay out of. An empty chunk goes straight back with munmap.
std::atomic<size_t> g_chunk_bytes{0};

void* mapChunk() {
  const size_t span = 2 * SlabPool::kChunkSize;
  void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + SlabPool::kChunkSize - 1) & ~(SlabPool::kChunkSize - 1);
  if (aligned > start) ::munmap(raw, aligned - start);
  const uintptr_t end = aligned + SlabPool::kChunkSize;
  if (start + span > end) ::munmap(reinterpret_cast<void*>(end), start + span - end);
  g_chunk_bytes.fetch_add(SlabPool::kChunkSize, std::memory_order_relaxed);
  return reinterpret_cast<void*>(aligned);
}

void unmapChunk(void* chunk) {
  ::munmap(chunk, SlabPool::kChunkSize);
  g_chunk_bytes.fetch_sub(SlabPool::kChunkSize, std::memory_order_relaxed);
}
}  // namespace

SlabPool::SlabPool(size_t slot_size)
    : slot_size_(roundUp16(slot_size < sizeof(void*) ? sizeof(void*) : slot_size)),
      slots_per_chunk_(static_cast<uint32_t>((kChunkSize - sizeof(Chunk)) / slot_size_)) {
  CW_ASSERT(slots_per_chunk_ >= 1);
}

SlabPool::~SlabPool() {
  if (spare_ != nullptr) {
    spare_->~Chunk();
    unmapChunk(spare_);
  }
}

SlabPool::Chunk* SlabPool::chunkOf(void* slot) {
  return reinterpret_cast<Chunk*>(reinterpret_cast<uintptr_t>(slot) & ~(kChunkSize - 1));
}

SlabPool& SlabPool::ownerOf(void* slot) { return *chunkOf(slot)->pool; }

void SlabPool::unlink(Chunk* chunk) {
  if (chunk->prev != nullptr) chunk->prev->next = chunk->next;
  if (chunk->next != nullptr) chunk->next->prev = chunk->prev;
  if (partial_ == chunk) partial_ = chunk->next;
  chunk->prev = chunk->next = nullptr;
}

void SlabPool::pushPartial(Chunk* chunk) {
  chunk->prev = nullptr;
  chunk->next = partial_;
  if (partial_ != nullptr) partial_->prev = chunk;
  partial_ = chunk;
}

void* SlabPool::allocate() {
  std::lock_guard<std::mutex> lock(mutex_);
  Chunk* chunk = partial_;
  if (chunk == nullptr) {
    chunk = spare_;
    spare_ = nullptr;
    if (chunk == nullptr) {
      // The chunk is nobody's; its slots are charged one by one by whoever uses them.
      void* block = mapChunk();
      if (block == nullptr) throw std::bad_alloc();
      chunk = new (block) Chunk{this, nullptr, nullptr, nullptr, 0, 0};
      ++chunks_;
    }
    pushPartial(chunk);
  }
  void* slot;
  if (chunk->free_slots != nullptr) {
    slot = chunk->free_slots;
    chunk->free_slots = *static_cast<void**>(slot);
  } else {
    slot = reinterpret_cast<char*>(chunk) + sizeof(Chunk) + size_t{chunk->carved} * slot_size_;
    ++chunk->carved;
  }
  if (++chunk->used == slots_per_chunk_) unlink(chunk);
  return slot;
}

void SlabPool::deallocate(void* slot) {
  if (slot == nullptr) return;
  Chunk* chunk = chunkOf(slot);
  CW_ASSERT(chunk->pool == this);
  std::lock_guard<std::mutex> lock(mutex_);
  const bool was_full = chunk->used == slots_per_chunk_;
  *static_cast<void**>(slot) = chunk->free_slots;
  chunk->free_slots = slot;
  --chunk->used;
  if (was_full) pushPartial(chunk);
  if (chunk->used > 0) return;
  unlink(chunk);
  chunk->free_slots = nullptr;
  chunk->carved = 0;
  if (spare_ == nullptr) {
    spare_ = chunk;
    return;
  }
  --chunks_;
  chunk->~Chunk();
  unmapChunk(chunk);
}

size_t SlabPool::allChunkBytes() { return g_chunk_bytes.load(std::memory_order_relaxed); }

size_t SlabPool::chunkBytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return chunks_ * kChunkSize;
}

}  // namespace connwarden::event
