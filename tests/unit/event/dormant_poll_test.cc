#include "sidecar/event/dormant_poll.h"

#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "gtest/gtest.h"

namespace connwarden::event {
namespace {

// The dormant poll reports a socket once when it becomes readable or its peer closes, and not
// again until it is added back.
TEST(DormantPollTest, ReportsReadableAndHangUpOnce) {
  Dispatcher dispatcher("test");
  std::vector<uint64_t> reported;
  DormantPoll poll(dispatcher, [&](uint64_t key) {
    reported.push_back(key);
    if (reported.size() == 3) dispatcher.exit();
  });
  int a[2];
  int b[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a), 0);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b), 0);
  ASSERT_TRUE(poll.add(a[0], 7));
  ASSERT_TRUE(poll.add(b[0], 9));
  EXPECT_EQ(poll.size(), 2u);
  ASSERT_EQ(write(a[1], "x", 1), 1);  // readable
  close(b[1]);                        // hang-up
  auto stop = dispatcher.createTimer([&] { dispatcher.exit(); });
  stop->enable(std::chrono::milliseconds(300));
  dispatcher.run();
  ASSERT_EQ(reported.size(), 2u) << "reported again while still readable";
  EXPECT_TRUE((reported[0] == 7 && reported[1] == 9) || (reported[0] == 9 && reported[1] == 7));
  poll.remove(a[0]);
  poll.remove(b[0]);
  EXPECT_EQ(poll.size(), 0u);
  // Added back while still readable: reported again.
  ASSERT_TRUE(poll.add(a[0], 11));
  stop->enable(std::chrono::milliseconds(2000));
  dispatcher.run();
  ASSERT_EQ(reported.size(), 3u);
  EXPECT_EQ(reported[2], 11u);
  poll.remove(a[0]);
  close(a[0]);
  close(a[1]);
  close(b[0]);
}

}  // namespace
}  // namespace connwarden::event
