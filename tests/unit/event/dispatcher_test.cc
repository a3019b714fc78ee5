#include "sidecar/event/dispatcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace connwarden::event {
namespace {

TEST(DispatcherTest, PostFromOtherThreadsRunsInOrderOnTheLoopThread) {
  Dispatcher dispatcher("test");
  std::vector<int> seen;
  std::thread::id loop_thread;
  std::thread loop([&] {
    loop_thread = std::this_thread::get_id();
    dispatcher.run();
  });
  std::thread poster([&] {
    for (int i = 0; i < 1000; ++i) {
      dispatcher.post([&, i] {
        EXPECT_EQ(std::this_thread::get_id(), loop_thread);
        EXPECT_TRUE(dispatcher.isThreadSafe());
        seen.push_back(i);
      });
    }
    dispatcher.exit();
  });
  poster.join();
  loop.join();
  ASSERT_EQ(seen.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(seen[i], i);
}

// now() on the loop's thread reads the clock once per pass; elsewhere, every time.
TEST(DispatcherTest, NowIsOneReadingPerPassOfTheLoop) {
  Dispatcher dispatcher("test");
  const auto outside = dispatcher.now();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_GT(dispatcher.now(), outside);

  MonotonicTime first{}, again{}, next_pass{};
  auto later = dispatcher.createTimer([&] {
    next_pass = dispatcher.now();
    dispatcher.exit();
  });
  dispatcher.post([&] {
    first = dispatcher.now();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    again = dispatcher.now();
    later->enable(std::chrono::milliseconds(1));
  });
  std::thread loop([&] { dispatcher.run(); });
  loop.join();
  EXPECT_GT(first, outside);
  EXPECT_EQ(again, first) << "the same pass";
  EXPECT_GE(next_pass - first, std::chrono::milliseconds(2)) << "a later pass reads the clock";
}

TEST(DispatcherTest, TimersFireInDeadlineOrderAndCanBeCancelled) {
  Dispatcher dispatcher("test");
  std::vector<std::string> fired;
  auto late = dispatcher.createTimer([&] {
    fired.push_back("late");
    dispatcher.exit();
  });
  auto early = dispatcher.createTimer([&] { fired.push_back("early"); });
  auto cancelled = dispatcher.createTimer([&] { fired.push_back("cancelled"); });
  late->enable(std::chrono::milliseconds(30));
  early->enable(std::chrono::milliseconds(5));
  cancelled->enable(std::chrono::milliseconds(10));
  EXPECT_TRUE(cancelled->enabled());
  cancelled->disable();
  EXPECT_FALSE(cancelled->enabled());
  dispatcher.run();
  EXPECT_EQ(fired, (std::vector<std::string>{"early", "late"}));
}

// Timers are lazy (a later deadline or a cancel does not reach libevent): what a caller sees
// must not change. Elapsed times are measured from the first enable().
TEST(DispatcherTest, APushedBackTimerFiresAtItsNewDeadline) {
  Dispatcher dispatcher("test");
  const auto start = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration fired_after{};
  int fires = 0;
  auto timer = dispatcher.createTimer([&] {
    ++fires;
    fired_after = std::chrono::steady_clock::now() - start;
    dispatcher.exit();
  });
  timer->enable(std::chrono::milliseconds(10));
  timer->enable(std::chrono::milliseconds(80));  // libevent still fires at 10 ms
  auto give_up = dispatcher.createTimer([&] { dispatcher.exit(); });
  give_up->enable(std::chrono::seconds(5));
  dispatcher.run();
  EXPECT_EQ(fires, 1);
  EXPECT_GE(fired_after, std::chrono::milliseconds(80));
}

TEST(DispatcherTest, ABroughtForwardTimerFiresAtItsNewDeadline) {
  Dispatcher dispatcher("test");
  const auto start = std::chrono::steady_clock::now();
  auto timer = dispatcher.createTimer([&] { dispatcher.exit(); });
  timer->enable(std::chrono::seconds(5));
  timer->enable(std::chrono::milliseconds(10));
  dispatcher.run();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST(DispatcherTest, ACancelledTimerEnabledAgainFiresOnceAtTheNewDeadline) {
  Dispatcher dispatcher("test");
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::chrono::steady_clock::duration> fired;
  auto timer = dispatcher.createTimer([&] {
    fired.push_back(std::chrono::steady_clock::now() - start);
    dispatcher.exit();
  });
  timer->enable(std::chrono::milliseconds(10));
  timer->disable();
  EXPECT_FALSE(timer->enabled());
  timer->enable(std::chrono::milliseconds(50));
  EXPECT_TRUE(timer->enabled());
  auto give_up = dispatcher.createTimer([&] { dispatcher.exit(); });
  give_up->enable(std::chrono::seconds(5));
  dispatcher.run();
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_GE(fired[0], std::chrono::milliseconds(50));
  EXPECT_FALSE(timer->enabled());
}

TEST(DispatcherTest, ATimerCanSetItselfAgainFromItsCallback) {
  Dispatcher dispatcher("test");
  int fires = 0;
  std::unique_ptr<Timer> timer;
  timer = dispatcher.createTimer([&] {
    if (++fires == 3) {
      dispatcher.exit();
      return;
    }
    timer->enable(std::chrono::milliseconds(5));
  });
  timer->enable(std::chrono::milliseconds(5));
  dispatcher.run();
  EXPECT_EQ(fires, 3);
}

struct Tracked : DeferredDeletable {
  explicit Tracked(bool* deleted) : deleted(deleted) {}
  ~Tracked() override { *deleted = true; }
  bool* deleted;
};

TEST(DispatcherTest, DeferredDeleteWaitsForTheCallbackToReturn) {
  Dispatcher dispatcher("test");
  bool deleted = false;
  bool deleted_inside_callback = true;
  dispatcher.post([&] {
    dispatcher.deferredDelete(std::make_unique<Tracked>(&deleted));
    deleted_inside_callback = deleted;
    dispatcher.post([&] { dispatcher.exit(); });
  });
  dispatcher.run();
  EXPECT_FALSE(deleted_inside_callback);
  EXPECT_TRUE(deleted);
}

TEST(DispatcherTest, FileEventReportsReadiness) {
  Dispatcher dispatcher("test");
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  uint32_t seen = 0;
  auto event = dispatcher.createFileEvent(fds[0], [&](uint32_t events) {
    seen = events;
    dispatcher.exit();
  });
  event->setEnabled(FileReadyType::kRead);
  ASSERT_EQ(write(fds[1], "x", 1), 1);
  dispatcher.run();
  EXPECT_EQ(seen, FileReadyType::kRead);
  event.reset();
  close(fds[0]);
  close(fds[1]);
}

// activate() then setEnabled() in one iteration: the interest must still reach the kernel
// (libevent's event_add() skips an event sitting in the active queue).
TEST(DispatcherTest, InterestAddedWhileActivatedStillRegisters) {
  Dispatcher dispatcher("test");
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  int calls = 0;
  auto event = dispatcher.createFileEvent(fds[1], [&](uint32_t events) {
    EXPECT_EQ(events, FileReadyType::kWrite);
    if (++calls == 3) dispatcher.exit();  // a writable pipe keeps firing: it is registered
  });
  auto give_up = dispatcher.createTimer([&] { dispatcher.exit(); });
  dispatcher.post([&] {
    event->activate(FileReadyType::kWrite);
    event->setEnabled(FileReadyType::kWrite);
  });
  give_up->enable(std::chrono::seconds(2));
  dispatcher.run();
  EXPECT_GE(calls, 3);
  event.reset();
  close(fds[0]);
  close(fds[1]);
}

}  // namespace
}  // namespace connwarden::event
