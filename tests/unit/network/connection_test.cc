#include "sidecar/network/connection.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

namespace connwarden::network {
namespace {

// Drives a Connection over one end of a socketpair; the test plays the peer on the other end.
class ConnectionTest : public ::testing::Test, public ConnectionCallbacks {
 protected:
  ConnectionTest() : dispatcher_("test") {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    peer_ = fds[1];
    connection_ = std::make_unique<Connection>(dispatcher_, fds[0],
                                               std::make_unique<RawTransportSocket>());
    connection_->setCallbacks(*this);
    timeout_ = dispatcher_.createTimer([this] {
      timed_out_ = true;
      dispatcher_.exit();
    });
    // The peer's side is a plain socket: poll it between events too.
    tick_ = dispatcher_.createTimer([this] {
      check();
      tick_->enable(std::chrono::milliseconds(1));
    });
  }
  ~ConnectionTest() override {
    connection_.reset();
    if (peer_ >= 0) close(peer_);
  }

  // Runs the loop until `done` holds (checked after every callback) or 5 s pass.
  void runUntil(std::function<bool()> done) {
    if (done()) return;
    done_ = std::move(done);
    timeout_->enable(std::chrono::seconds(5));
    tick_->enable(std::chrono::milliseconds(1));
    dispatcher_.run();
    timeout_->disable();
    tick_->disable();
    ASSERT_FALSE(timed_out_);
  }
  void check() {
    if (done_ && done_()) {
      done_ = nullptr;
      dispatcher_.exit();
    }
  }

  void onData(Buffer& data, bool end_stream) override {
    received_ += data.toString();
    data.drain(data.length());
    end_stream_ = end_stream;
    check();
  }
  void onEvent(ConnectionEvent event) override {
    events_.push_back(event);
    check();
  }
  void onAboveWriteBufferHighWatermark() override {
    ++above_;
    check();
  }
  void onBelowWriteBufferLowWatermark() override {
    ++below_;
    check();
  }

  std::string readPeer() {
    std::string out;
    char buf[65536];
    ssize_t n;
    while ((n = read(peer_, buf, sizeof(buf))) > 0) out.append(buf, n);
    return out;
  }

  event::Dispatcher dispatcher_;
  std::unique_ptr<event::Timer> timeout_;
  std::unique_ptr<event::Timer> tick_;
  std::unique_ptr<Connection> connection_;
  int peer_ = -1;
  std::function<bool()> done_;
  bool timed_out_ = false;
  std::string received_;
  bool end_stream_ = false;
  std::vector<ConnectionEvent> events_;
  int above_ = 0;
  int below_ = 0;
};

TEST_F(ConnectionTest, BytesFlowBothWays) {
  ASSERT_EQ(write(peer_, "ping", 4), 4);
  runUntil([&] { return received_ == "ping"; });
  Buffer out;
  out.add("pong");
  connection_->write(out);
  EXPECT_TRUE(out.empty());
  std::string got;
  runUntil([&] {
    got += readPeer();
    return got == "pong";
  });
  EXPECT_EQ(connection_->bytesRead(), 4u);
}

TEST_F(ConnectionTest, PeerCloseIsReportedOnce) {
  ASSERT_EQ(write(peer_, "last", 4), 4);
  shutdown(peer_, SHUT_WR);
  runUntil([&] { return end_stream_; });
  EXPECT_EQ(received_, "last");
  connection_->close(Connection::CloseType::kNoFlush, CloseReason::kPeerClosed);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0], ConnectionEvent::kLocalClose);
  connection_->close(Connection::CloseType::kNoFlush, CloseReason::kKilled);
  EXPECT_EQ(events_.size(), 1u);
  EXPECT_EQ(connection_->closeReason(), CloseReason::kPeerClosed);
}

TEST_F(ConnectionTest, WatermarksFollowTheWriteBuffer) {
  connection_->setBufferLimits(64 * 1024);
  Buffer out;
  const std::string block(1 << 20, 'w');  // far more than the socket buffer takes
  out.add(block);
  connection_->write(out);
  EXPECT_EQ(above_, 1);
  std::string got;
  runUntil([&] {
    got += readPeer();
    return below_ == 1 && got.size() == block.size();
  });
  EXPECT_EQ(got, block);
}

TEST_F(ConnectionTest, FlushCloseDeliversEverythingThenFin) {
  Buffer out;
  const std::string block(300 * 1024, 'f');
  out.add(block);
  connection_->write(out);
  connection_->close(Connection::CloseType::kFlushWrite, CloseReason::kDrained);
  EXPECT_TRUE(events_.empty());  // still flushing
  std::string got;
  bool eof = false;
  runUntil([&] {
    char buf[65536];
    ssize_t n;
    while ((n = read(peer_, buf, sizeof(buf))) > 0) got.append(buf, n);
    if (n == 0 && !eof) {
      eof = true;
      close(peer_);  // the peer answers our FIN with its own
      peer_ = -1;
    }
    return !events_.empty();
  });
  EXPECT_EQ(got, block);
  EXPECT_TRUE(eof);
  EXPECT_EQ(connection_->closeReason(), CloseReason::kDrained);
}

TEST_F(ConnectionTest, ReadDisableIsCounted) {
  connection_->readDisable(true);
  connection_->readDisable(true);
  ASSERT_EQ(write(peer_, "x", 1), 1);
  connection_->readDisable(false);
  EXPECT_FALSE(connection_->readEnabled());
  connection_->readDisable(false);
  EXPECT_TRUE(connection_->readEnabled());
  runUntil([&] { return received_ == "x"; });
}

}  // namespace
}  // namespace connwarden::network
