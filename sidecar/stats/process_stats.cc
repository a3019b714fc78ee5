#include "sidecar/stats/process_stats.h"

#include <dirent.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "sidecar/event/memory_account.h"
#include "sidecar/event/slab_pool.h"

namespace connwarden::stats {

ProcessStats readProcessStats() {
  ProcessStats out;
  if (FILE* statm = std::fopen("/proc/self/statm", "r")) {
    long size = 0, resident = 0;
    if (std::fscanf(statm, "%ld %ld", &size, &resident) == 2) {
      out.resident_bytes = static_cast<int64_t>(resident) * sysconf(_SC_PAGESIZE);
    }
    std::fclose(statm);
  }
  if (DIR* fds = opendir("/proc/self/fd")) {
    const int own = dirfd(fds);
    char link[64];
    while (dirent* entry = readdir(fds)) {
      if (entry->d_name[0] == '.') continue;
      if (std::atoi(entry->d_name) == own) continue;
      ++out.open_fds;
      const std::string path = std::string("/proc/self/fd/") + entry->d_name;
      const ssize_t n = readlink(path.c_str(), link, sizeof(link) - 1);
      if (n > 0 && std::strncmp(link, "socket:", 7) == 0) ++out.open_sockets;
    }
    closedir(fds);
  }
  const struct mallinfo2 heap = mallinfo2();
  out.heap_in_use_bytes = static_cast<int64_t>(heap.uordblks + heap.hblkhd);
  out.heap_free_bytes = static_cast<int64_t>(heap.fordblks);
  out.heap_mmapped_bytes = static_cast<int64_t>(heap.hblkhd);
  out.slab_chunk_bytes = static_cast<int64_t>(event::SlabPool::allChunkBytes());
  out.memory_accounts = event::MemoryAccount::liveAccounts();
  return out;
}

}  // namespace connwarden::stats
