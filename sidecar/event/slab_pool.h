// Fixed-size slots carved from 64 KiB chunks, for the few small objects that live as long as a
// connection however idle it is (its memory account, its registry record). Kept apart from the
// general heap so that when hibernation frees everything else of a connection, whole pages become
// free and malloc_trim() can give them back: one long-lived 200-byte block in every page of the
// general heap would pin all of it. Chunks are mapped from the kernel (see slab_pool.cc), so
// they are not part of the heap that mallinfo2() reports.
//
// Thread-safe (an account may be freed on any thread). A chunk goes back to the heap when its
// last slot does, except one spare per pool so that a connection opening and closing does not
// allocate a chunk each time.
#pragma once

#include <cstddef>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <new>

namespace connwarden::event {

class SlabPool {
 public:
  static constexpr size_t kChunkSize = 64 * 1024;

  explicit SlabPool(size_t slot_size);
  // Frees the spare chunk; chunks with slots in use are left alone (a pool that must outlive
  // every user is never destroyed: see immortal()).
  ~SlabPool();
  SlabPool(const SlabPool&) = delete;
  SlabPool& operator=(const SlabPool&) = delete;

  // A slot of slotSize() bytes, 16-byte aligned. Throws std::bad_alloc when the heap is out.
  void* allocate();
  // `slot` came from allocate() of this pool.
  void deallocate(void* slot);
  // The pool that `slot` came from (any slot of any pool).
  static SlabPool& ownerOf(void* slot);
  size_t slotSize() const { return slot_size_; }

  // Bytes held by the pool's chunks, in use or spare.
  size_t chunkBytes() const;
  // The same over every pool of the process: with mallinfo2(), the allocator's whole view.
  static size_t allChunkBytes();

  // A pool for the whole process, never destroyed (objects from it may be freed at any time,
  // even during exit), and made without operator new (so charged to no account). One per
  // `Tag`: what lives in it.
  template <typename Tag, size_t kSlotSize>
  static SlabPool& immortal() {
    alignas(SlabPool) static unsigned char storage[sizeof(SlabPool)];
    static SlabPool* pool = new (storage) SlabPool(kSlotSize);
    return *pool;
  }

 private:
  struct Chunk;
  static Chunk* chunkOf(void* slot);
  void unlink(Chunk* chunk);  // REQUIRES(mutex_)
  void pushPartial(Chunk* chunk);  // REQUIRES(mutex_)

  const size_t slot_size_;
  const uint32_t slots_per_chunk_;
  mutable std::mutex mutex_;
  Chunk* partial_ = nullptr;  // GUARDED_BY(mutex_): chunks with a free slot
  Chunk* spare_ = nullptr;    // GUARDED_BY(mutex_): one empty chunk kept back
  size_t chunks_ = 0;         // GUARDED_BY(mutex_)
};

}  // namespace connwarden::event
