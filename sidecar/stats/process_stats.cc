#include "sidecar/stats/process_stats.h"

#include <dirent.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "sidecar/event/memory_account.h"
#include "sidecar/event/slab_pool.h"

namespace connwarden::stats {

namespace {

// Walking the descriptor table costs two syscalls per descriptor (about 0.2 s of CPU per scrape
// with 100 000 connections on a small VM), so the socket count is recounted at most this often;
// the alert that reads it (registry larger than sockets) waits 10 minutes anyway.
constexpr std::chrono::seconds kSocketRecountInterval{10};

struct DescriptorCounts {
  int64_t fds = 0;
  int64_t sockets = 0;
};

// Every open descriptor, and how many are sockets: one fstat() each (cheaper than readlink(),
// which resolves a path and formats the socket's name).
DescriptorCounts walkDescriptors() {
  DescriptorCounts out;
  DIR* fds = opendir("/proc/self/fd");
  if (fds == nullptr) return out;
  const int own = dirfd(fds);
  while (dirent* entry = readdir(fds)) {
    if (entry->d_name[0] == '.') continue;
    const int fd = std::atoi(entry->d_name);
    if (fd == own) continue;
    ++out.fds;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) ++out.sockets;
  }
  closedir(fds);
  return out;
}

// The number of open descriptors in one syscall: since Linux 6.2 the size of /proc/self/fd is
// that count. 0 where it is not (older kernels report 0).
int64_t openDescriptorsFromSize() {
  struct stat st;
  if (stat("/proc/self/fd", &st) != 0) return 0;
  return static_cast<int64_t>(st.st_size);
}

}  // namespace

ProcessStats readProcessStats() {
  ProcessStats out;
  if (FILE* statm = std::fopen("/proc/self/statm", "r")) {
    long size = 0, resident = 0;
    if (std::fscanf(statm, "%ld %ld", &size, &resident) == 2) {
      out.resident_bytes = static_cast<int64_t>(resident) * sysconf(_SC_PAGESIZE);
    }
    std::fclose(statm);
  }
  {
    static std::mutex mutex;
    static std::chrono::steady_clock::time_point counted_at;
    static int64_t sockets = -1;
    std::lock_guard<std::mutex> lock(mutex);
    out.open_fds = openDescriptorsFromSize();
    const auto now = std::chrono::steady_clock::now();
    if (out.open_fds == 0 || sockets < 0 || now - counted_at >= kSocketRecountInterval) {
      const DescriptorCounts counts = walkDescriptors();
      if (out.open_fds == 0) out.open_fds = counts.fds;
      sockets = counts.sockets;
      counted_at = now;
    }
    out.open_sockets = sockets;
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
