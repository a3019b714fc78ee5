#include "sidecar/stats/process_stats.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

namespace connwarden::stats {
namespace {

// Entries of /proc/self/fd other than the listing's own descriptor.
int64_t listedDescriptors() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int64_t n = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.' && atoi(entry->d_name) != dirfd(dir)) ++n;
  }
  closedir(dir);
  return n;
}

TEST(ProcessStatsTest, CountsDescriptorsAndSockets) {
  std::vector<int> sockets;
  for (int i = 0; i < 100; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockets.push_back(fd);
  }
  // A pipe is a descriptor and not a socket.
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);

  const ProcessStats first = readProcessStats();
  EXPECT_EQ(first.open_fds, listedDescriptors());
  EXPECT_GE(first.open_sockets, 100);
  EXPECT_LE(first.open_sockets, first.open_fds - 2);

  // Descriptors are counted afresh at every call; sockets at most every few seconds (a walk of
  // the descriptor table), so they are not asserted here.
  for (int fd : sockets) close(fd);
  const ProcessStats second = readProcessStats();
  EXPECT_EQ(second.open_fds, first.open_fds - 100);
  EXPECT_EQ(second.open_fds, listedDescriptors());
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  EXPECT_GT(second.resident_bytes, 0);
}

}  // namespace
}  // namespace connwarden::stats
