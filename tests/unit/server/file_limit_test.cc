#include "sidecar/server/file_limit.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

namespace connwarden::server {
namespace {

// Lowers this test process's soft limit, raises it back through the function, and restores it.
TEST(FileLimitTest, RaisesTheSoftLimitToTheHardOne) {
  rlimit original{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &original), 0);
  if (original.rlim_max != RLIM_INFINITY && original.rlim_max < 256) {
    GTEST_SKIP() << "hard limit on open files below 256";
  }
  rlimit low = original;
  low.rlim_cur = 128;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);

  absl::StatusOr<FileLimit> raised = raiseOpenFileLimit();
  rlimit after{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &after), 0);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &original), 0);

  ASSERT_TRUE(raised.ok()) << raised.status();
  EXPECT_EQ(raised->before, 128u);
  EXPECT_EQ(raised->now, after.rlim_cur);
  EXPECT_EQ(after.rlim_max, original.rlim_max);  // the hard limit is the operator's
  if (original.rlim_max != RLIM_INFINITY) {
    EXPECT_EQ(after.rlim_cur, original.rlim_max);
  }
  EXPECT_GT(after.rlim_cur, 128u);

  // Already there: nothing changes.
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &after), 0);
  absl::StatusOr<FileLimit> again = raiseOpenFileLimit();
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &original), 0);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->before, again->now);
}

}  // namespace
}  // namespace connwarden::server
