#include "sidecar/event/io_batch.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace connwarden::event {
namespace {

// One end of a socketpair with bytes to send; the test reads the other end.
class TestSocket : public IoBatch::Socket {
 public:
  explicit TestSocket(std::string data) : data_(std::move(data)) {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    fd_ = fds[0];
    peer_ = fds[1];
  }
  ~TestSocket() override {
    close(fd_);
    if (peer_ >= 0) close(peer_);
  }

  // Two slices when there are at least two bytes (sendmsg), else one (send).
  int prepareSend(IoBatch::Op& op) override {
    ++prepared;
    if (data_.empty()) return 0;
    op.fd = fd_;
    const size_t half = data_.size() / 2;
    op.slices[0] = {data_.data(), half == 0 ? data_.size() : half};
    if (half == 0) return 1;
    op.slices[1] = {data_.data() + half, data_.size() - half};
    return 2;
  }
  // Reads append to `in_`.
  bool prepareRecv(int* fd) override {
    if (!read_wanted) return false;
    *fd = fd_;
    return true;
  }
  void completeRecv(const char* data, ssize_t result) override {
    recv_results.push_back(result);
    if (result > 0) in_.append(data, static_cast<size_t>(result));
    if (on_recv) on_recv();
  }
  void completeSend(ssize_t result) override {
    results.push_back(result);
    if (result > 0) data_.erase(0, static_cast<size_t>(result));
    if (on_complete) on_complete();
  }

  void writePeer(const std::string& data) {
    ASSERT_EQ(write(peer_, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  }
  void closePeer() {
    close(peer_);
    peer_ = -1;
  }
  std::string readPeer() {
    std::string out;
    char buf[65536];
    ssize_t n;
    while ((n = read(peer_, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }
  void setData(std::string data) { data_ = std::move(data); }
  size_t left() const { return data_.size(); }
  int fd() const { return fd_; }

  int prepared = 0;
  std::vector<ssize_t> results;
  std::function<void()> on_complete;
  bool read_wanted = true;
  std::string in_;
  std::vector<ssize_t> recv_results;
  std::function<void()> on_recv;

 private:
  std::string data_;
  int fd_ = -1;
  int peer_ = -1;
};

// Each test runs with io_uring and with plain sends: the results must not differ.
class IoBatchTest : public ::testing::TestWithParam<bool> {
 protected:
  IoBatchTest() : batch_(GetParam()) {}
  void SetUp() override {
    batch_.start();
    if (GetParam() && !batch_.uring()) {
      GTEST_SKIP() << "io_uring unavailable here: " << batch_.uringUnavailableReason();
    }

    if (!GetParam()) {
      ASSERT_FALSE(batch_.uring());
    }
  }
  IoBatch batch_;
};

TEST_P(IoBatchTest, SendsEveryQueuedSocketInOneRun) {
  TestSocket a("first"), b("x"), c(std::string(100000, 'c'));
  batch_.scheduleSend(a);
  batch_.scheduleSend(b);
  batch_.scheduleSend(c);
  batch_.scheduleSend(a);  // already queued: sent once
  EXPECT_FALSE(batch_.empty());
  batch_.run();
  EXPECT_TRUE(batch_.empty());
  EXPECT_EQ(a.prepared, 1);
  EXPECT_EQ(a.results, std::vector<ssize_t>{5});
  EXPECT_EQ(a.readPeer(), "first");
  EXPECT_EQ(b.results, std::vector<ssize_t>{1});
  EXPECT_EQ(b.readPeer(), "x");
  // A socketpair takes less than 100 000 bytes at once: a partial send, reported as such.
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_GT(c.results[0], 0);
  EXPECT_EQ(c.readPeer().size(), static_cast<size_t>(c.results[0]));
}

TEST_P(IoBatchTest, NothingToSendCompletesWithZero) {
  TestSocket a("");
  batch_.scheduleSend(a);
  batch_.run();
  EXPECT_EQ(a.results, std::vector<ssize_t>{0});
}

// With two sockets, so that the ring (not a lone system call) carries the sends.
TEST_P(IoBatchTest, AFullSocketAnswersEagainWithoutWaiting) {
  TestSocket a(std::string(1 << 20, 'a')), b("b");
  // Fill the pair's buffers first.
  while (true) {
    batch_.scheduleSend(a);
    batch_.scheduleSend(b);
    batch_.run();
    ASSERT_FALSE(a.results.empty());
    if (a.results.back() < 0) break;
  }
  EXPECT_EQ(a.results.back(), -EAGAIN);
  EXPECT_GT(a.left(), 0u);
  EXPECT_EQ(b.readPeer(), "b");
}

TEST_P(IoBatchTest, AClosedDescriptorIsAnErrorNotACrash) {
  TestSocket a("data"), b("b");
  const int fd = a.fd();
  batch_.scheduleSend(a);
  batch_.scheduleSend(b);
  // The descriptor number is invalid now (nothing else opens one in between).
  const int saved = dup(fd);
  ASSERT_GE(saved, 0);
  close(fd);
  batch_.run();
  ASSERT_EQ(a.results.size(), 1u);
  EXPECT_EQ(a.results[0], -EBADF);
  EXPECT_EQ(b.results, std::vector<ssize_t>{1});
  ASSERT_EQ(dup2(saved, fd), fd);  // for the destructor
  close(saved);
}

TEST_P(IoBatchTest, ASocketDestroyedWhileQueuedIsSkipped) {
  auto a = std::make_unique<TestSocket>("a");
  TestSocket b("b");
  batch_.scheduleSend(*a);
  batch_.scheduleSend(b);
  a.reset();
  batch_.run();
  EXPECT_EQ(b.results, std::vector<ssize_t>{1});
  EXPECT_TRUE(batch_.empty());
}

TEST_P(IoBatchTest, ACompletionMayDestroyASocketLaterInTheSameRun) {
  TestSocket a("a");
  auto b = std::make_unique<TestSocket>("b");
  a.on_complete = [&] { b.reset(); };
  batch_.scheduleSend(a);
  batch_.scheduleSend(*b);
  batch_.run();  // b's send went out with a's; its completion is dropped, not delivered
  EXPECT_EQ(a.results, std::vector<ssize_t>{1});
  EXPECT_EQ(b, nullptr);
}

TEST_P(IoBatchTest, ASocketQueuedFromACompletionWaitsForTheNextRun) {
  TestSocket a("one");
  a.on_complete = [&] {
    if (a.results.size() == 1) {
      a.setData("two");
      batch_.scheduleSend(a);
    }
  };
  batch_.scheduleSend(a);
  batch_.run();
  EXPECT_EQ(a.prepared, 1);
  EXPECT_FALSE(batch_.empty());
  batch_.run();
  EXPECT_EQ(a.prepared, 2);
  EXPECT_EQ(a.readPeer(), "onetwo");
  EXPECT_TRUE(batch_.empty());
}

TEST_P(IoBatchTest, MoreSocketsThanOneSubmissionTakes) {
  std::vector<std::unique_ptr<TestSocket>> sockets;
  for (int i = 0; i < 300; ++i) {
    sockets.push_back(std::make_unique<TestSocket>("s" + std::to_string(i)));
    batch_.scheduleSend(*sockets.back());
  }
  batch_.run();
  for (int i = 0; i < 300; ++i) {
    EXPECT_EQ(sockets[i]->readPeer(), "s" + std::to_string(i));
  }
}

TEST_P(IoBatchTest, ReadsEveryQueuedSocketInOneRun) {
  TestSocket a(""), b(""), idle(""), ended("");
  a.writePeer("hello");
  b.writePeer(std::string(IoBatch::kRecvSlot + 100, 'b'));  // more than one read takes
  ended.closePeer();
  for (TestSocket* s : {&a, &b, &idle, &ended}) batch_.scheduleRecv(*s);
  batch_.scheduleRecv(a);  // already queued: read once
  batch_.run();
  EXPECT_EQ(a.recv_results, std::vector<ssize_t>{5});
  EXPECT_EQ(a.in_, "hello");
  // A full slot: the owner reads on itself (a Connection does).
  EXPECT_EQ(b.recv_results, std::vector<ssize_t>{static_cast<ssize_t>(IoBatch::kRecvSlot)});
  EXPECT_EQ(idle.recv_results, std::vector<ssize_t>{-EAGAIN});
  EXPECT_EQ(ended.recv_results, std::vector<ssize_t>{0});
  EXPECT_TRUE(batch_.empty());
}

TEST_P(IoBatchTest, ASocketThatDoesNotWantToReadIsNotRead) {
  TestSocket a("");
  a.writePeer("x");
  a.read_wanted = false;
  batch_.scheduleRecv(a);
  batch_.run();
  EXPECT_TRUE(a.recv_results.empty());
  EXPECT_TRUE(batch_.empty());
}

TEST_P(IoBatchTest, SendsQueuedByAReadGoOutInTheSameRun) {
  TestSocket in(""), out("");
  in.writePeer("ping");
  in.on_recv = [&] {
    out.setData(in.in_);
    batch_.scheduleSend(out);
  };
  batch_.scheduleRecv(in);
  batch_.run();
  EXPECT_EQ(out.results, std::vector<ssize_t>{4});
  EXPECT_EQ(out.readPeer(), "ping");
  EXPECT_TRUE(batch_.empty());
}

TEST_P(IoBatchTest, AReadMayDestroyASocketReadInTheSameRound) {
  TestSocket a("");
  auto b = std::make_unique<TestSocket>("");
  a.writePeer("a");
  b->writePeer("b");
  a.on_recv = [&] { b.reset(); };
  batch_.scheduleRecv(a);
  batch_.scheduleRecv(*b);
  batch_.scheduleSend(*b);
  batch_.run();  // b's bytes were read with a's; b's completion and its send are dropped
  EXPECT_EQ(a.in_, "a");
  EXPECT_EQ(b, nullptr);
  EXPECT_TRUE(batch_.empty());
}

TEST_P(IoBatchTest, MoreReadsThanOneRoundTakes) {
  std::vector<std::unique_ptr<TestSocket>> sockets;
  for (int i = 0; i < 150; ++i) {
    sockets.push_back(std::make_unique<TestSocket>(""));
    sockets.back()->writePeer("r" + std::to_string(i));
    batch_.scheduleRecv(*sockets.back());
  }
  batch_.run();
  for (int i = 0; i < 150; ++i) EXPECT_EQ(sockets[i]->in_, "r" + std::to_string(i));
}

INSTANTIATE_TEST_SUITE_P(UringAndPlain, IoBatchTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Uring" : "Plain"; });

}  // namespace
}  // namespace connwarden::event
