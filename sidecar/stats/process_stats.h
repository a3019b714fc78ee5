// What the process as a whole holds, as the metrics report it: resident memory, descriptors
// (and how many are sockets, to compare with the registry), the allocator's heap and our slab
// pools. Read from /proc and glibc at scrape time; any thread (thread-safe).
#pragma once

#include <cstdint>

namespace connwarden::stats {

struct ProcessStats {
  int64_t resident_bytes = 0;  // RSS (/proc/self/statm)
  int64_t open_fds = 0;        // open descriptors (/proc/self/fd), counted at every call
  // Of those, sockets (listeners, clients, upstreams, this one). Counting them walks every
  // descriptor, so it is done at most every 10 s; calls in between repeat the last count.
  int64_t open_sockets = 0;
  // glibc's mallinfo2 over all arenas: bytes handed out (arena and mmapped blocks), bytes free
  // in the arenas (kept, not given back), bytes mapped for large blocks.
  int64_t heap_in_use_bytes = 0;
  int64_t heap_free_bytes = 0;
  int64_t heap_mmapped_bytes = 0;
  int64_t slab_chunk_bytes = 0;  // event::SlabPool::allChunkBytes()
  int64_t memory_accounts = 0;   // event::MemoryAccount::liveAccounts()
};

ProcessStats readProcessStats();

}  // namespace connwarden::stats
