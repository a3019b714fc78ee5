#include "sidecar/event/slab_pool.h"

#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace connwarden::event {
namespace {

TEST(SlabPoolTest, SlotsAreDistinctAlignedAndChunksGoBackWhenEmpty) {
  SlabPool pool(200);
  EXPECT_EQ(pool.slotSize(), 208u);
  constexpr int kSlots = 1000;  // about 13 chunks
  std::vector<void*> slots;
  std::set<void*> distinct;
  for (int i = 0; i < kSlots; ++i) {
    void* slot = pool.allocate();
    ASSERT_EQ(reinterpret_cast<uintptr_t>(slot) % 16, 0u);
    std::memset(slot, 0xab, pool.slotSize());  // the whole slot is ours
    slots.push_back(slot);
    distinct.insert(slot);
  }
  EXPECT_EQ(distinct.size(), static_cast<size_t>(kSlots));
  const size_t full = pool.chunkBytes();
  EXPECT_GE(full, kSlots * pool.slotSize());
  EXPECT_LE(full, kSlots * pool.slotSize() + 2 * SlabPool::kChunkSize);
  // Freed out of order, then all: only the spare chunk stays.
  for (size_t i = 0; i < slots.size(); i += 2) pool.deallocate(slots[i]);
  EXPECT_EQ(pool.chunkBytes(), full);  // every chunk still has a slot in use
  for (size_t i = 1; i < slots.size(); i += 2) pool.deallocate(slots[i]);
  EXPECT_EQ(pool.chunkBytes(), SlabPool::kChunkSize);
  // And it serves again.
  void* again = pool.allocate();
  EXPECT_NE(again, nullptr);
  pool.deallocate(again);
  EXPECT_EQ(pool.chunkBytes(), SlabPool::kChunkSize);
}

TEST(SlabPoolTest, ThreadsShareAPool) {
  SlabPool pool(48);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&pool, t] {
      std::vector<void*> mine;
      for (int round = 0; round < 50; ++round) {
        for (int i = 0; i < 200; ++i) {
          void* slot = pool.allocate();
          std::memset(slot, t, pool.slotSize());
          mine.push_back(slot);
        }
        for (void* slot : mine) {
          // Nobody else wrote into our slots.
          EXPECT_EQ(*static_cast<unsigned char*>(slot), static_cast<unsigned char>(t));
          pool.deallocate(slot);
        }
        mine.clear();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(pool.chunkBytes(), SlabPool::kChunkSize);
}

}  // namespace
}  // namespace connwarden::event
