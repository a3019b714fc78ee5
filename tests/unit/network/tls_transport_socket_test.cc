// The TLS transport's batched paths, driven by hand: ciphertext handed in as the worker's IoBatch
// would (in pieces of any size), records taken out as its sends would, against a real OpenSSL
// client that talks through memory. The socket the transport holds is one end of a socketpair;
// only failures (the alert) and doRead()/doWrite() use it.
#include "sidecar/network/tls_transport_socket.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "tests/support/test_util.h"

namespace connwarden::network {
namespace {

class TlsTransportSocketTest : public ::testing::Test, public TransportSocketCallbacks {
 protected:
  TlsTransportSocketTest() : cert_(testing::makeSelfSignedCertificate(dir_)) {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    fd_ = fds[0];
    peer_ = fds[1];
    auto context = TlsContext::create({cert_.cert_file, cert_.key_file, true}, {"http/1.1"});
    EXPECT_TRUE(context.ok()) << context.status();
    context_ = *context;
    client_ctx_ = SSL_CTX_new(TLS_client_method());
    restart();
  }
  ~TlsTransportSocketTest() override {
    server_.reset();
    SSL_free(client_);
    SSL_CTX_free(client_ctx_);
    close(fd_);
    close(peer_);
  }

  // A new connection: server transport and client.
  void restart() {
    server_ = context_->newServerSocket();
    server_->setCallbacks(*this);
    server_->onConnected();
    SSL_free(client_);
    client_ = SSL_new(client_ctx_);
    to_client_ = BIO_new(BIO_s_mem());
    from_client_ = BIO_new(BIO_s_mem());
    SSL_set_bio(client_, to_client_, from_client_);
    SSL_set_connect_state(client_);
    connected_ = false;
    plaintext_.drain(plaintext_.length());
  }

  // TransportSocketCallbacks
  int fd() const override { return fd_; }
  void onTransportConnected() override { connected_ = true; }
  void setReadBufferReady() override {}

  // Hands what the client wrote to the server, `piece` bytes per batched read.
  IoResult toServer(size_t piece) {
    IoResult total;
    char* data = nullptr;
    const long len = BIO_get_mem_data(from_client_, &data);
    const std::string bytes(data, static_cast<size_t>(len));
    (void)BIO_reset(from_client_);
    for (size_t at = 0; at < bytes.size(); at += piece) {
      const size_t n = std::min(piece, bytes.size() - at);
      const IoResult one = server_->completeBatchedRead(plaintext_, bytes.data() + at,
                                                        static_cast<ssize_t>(n));
      total.bytes += one.bytes;
      total.end_stream |= one.end_stream;
      if (one.action == PostIoAction::kClose) {
        total.action = one.action;
        total.error = one.error;
        break;
      }
    }
    return total;
  }
  // Sends what the server has for the socket, as a batched send that takes it all.
  IoResult toClient(Buffer& output, bool end_stream = false) {
    Buffer& records = server_->prepareBatchedWrite(output, end_stream);
    const std::string bytes = records.toString();
    BIO_write(to_client_, bytes.data(), static_cast<int>(bytes.size()));
    return server_->completeBatchedWrite(output, static_cast<ssize_t>(bytes.size()));
  }
  void handshake(size_t piece) {
    for (int round = 0; round < 10 && !connected_; ++round) {
      SSL_do_handshake(client_);
      ASSERT_EQ(toServer(piece).action, PostIoAction::kKeepOpen) << server_->failureReason();
      Buffer none;
      toClient(none);
    }
    ASSERT_TRUE(connected_);
    ASSERT_EQ(SSL_do_handshake(client_), 1);
  }
  // What the client can read now; client_error_ says why it stopped.
  std::string clientReadAll() {
    std::string out;
    char buf[16384];
    int n;
    while ((n = SSL_read(client_, buf, sizeof(buf))) > 0) out.append(buf, n);
    client_error_ = SSL_get_error(client_, n);
    return out;
  }

  testing::TempDir dir_;
  testing::TestCertificate cert_;
  int fd_ = -1;
  int peer_ = -1;
  std::shared_ptr<TlsContext> context_;
  TransportSocketPtr server_;
  SSL_CTX* client_ctx_ = nullptr;
  SSL* client_ = nullptr;
  BIO* to_client_ = nullptr;
  BIO* from_client_ = nullptr;
  Buffer plaintext_;
  int client_error_ = SSL_ERROR_NONE;
  bool connected_ = false;
};

// Records cut anywhere by the reads, and reads larger than OpenSSL's record buffer: each read's
// bytes are all decrypted before it completes (the batch reuses its memory).
TEST_F(TlsTransportSocketTest, DecryptsWhateverPiecesTheReadsCut) {
  for (size_t piece : {size_t{1}, size_t{7}, size_t{2048}, size_t{200000}}) {
    SCOPED_TRACE(piece);
    restart();
    handshake(piece);
    std::string sent;
    for (int i = 0; i < 6; ++i) {
      const std::string part(30000 + i, static_cast<char>('a' + i));
      ASSERT_EQ(SSL_write(client_, part.data(), static_cast<int>(part.size())),
                static_cast<int>(part.size()));
      sent += part;
    }
    const IoResult read = toServer(piece);
    EXPECT_EQ(read.action, PostIoAction::kKeepOpen) << server_->failureReason();
    EXPECT_EQ(read.bytes, sent.size());
    EXPECT_EQ(plaintext_.toString(), sent);
  }
}

TEST_F(TlsTransportSocketTest, RecordsWaitInTheTransportUntilSent) {
  handshake(2048);
  Buffer output;
  const std::string body(40000, 'r');
  output.add(body);
  Buffer& records = server_->prepareBatchedWrite(output, /*end_stream=*/true);
  EXPECT_TRUE(output.empty());
  EXPECT_GT(server_->bytesToSend(), body.size());  // the body and its record overhead
  // The socket takes only part: the rest stays, and the application bytes are reported once.
  const std::string bytes = records.toString();
  IoResult sent = server_->completeBatchedWrite(output, 1000);
  EXPECT_EQ(sent.sent, 1000u);
  EXPECT_EQ(sent.bytes, body.size());
  EXPECT_EQ(server_->bytesToSend(), bytes.size() - 1000);
  sent = server_->completeBatchedWrite(output, -EAGAIN);
  EXPECT_EQ(sent.action, PostIoAction::kKeepOpen);
  EXPECT_EQ(sent.sent, 0u);
  EXPECT_EQ(sent.bytes, 0u);
  BIO_write(to_client_, bytes.data(), static_cast<int>(bytes.size()));
  sent = server_->completeBatchedWrite(output, static_cast<ssize_t>(bytes.size() - 1000));
  EXPECT_EQ(server_->bytesToSend(), 0u);
  // The body, then the close_notify that end_stream asked for.
  EXPECT_EQ(clientReadAll(), body);
  EXPECT_EQ(client_error_, SSL_ERROR_ZERO_RETURN);
}

TEST_F(TlsTransportSocketTest, CloseNotifyEndsTheStream) {
  handshake(2048);
  ASSERT_EQ(SSL_write(client_, "last", 4), 4);
  SSL_shutdown(client_);
  const IoResult read = toServer(2048);
  EXPECT_EQ(read.action, PostIoAction::kKeepOpen);
  EXPECT_TRUE(read.end_stream);
  EXPECT_EQ(plaintext_.toString(), "last");
}

TEST_F(TlsTransportSocketTest, EndOfStreamWithoutCloseNotifyAndResetsClose) {
  handshake(2048);
  IoResult read = server_->completeBatchedRead(plaintext_, nullptr, -ECONNRESET);
  EXPECT_EQ(read.action, PostIoAction::kClose);
  EXPECT_TRUE(read.error);
  EXPECT_EQ(server_->failureReason(), std::strerror(ECONNRESET));
  // A TCP FIN with no close_notify: the peer may have been cut off (a truncation).
  read = server_->completeBatchedRead(plaintext_, nullptr, 0);
  EXPECT_EQ(read.action, PostIoAction::kClose);
  EXPECT_NE(server_->failureReason().find("unexpected eof"), std::string::npos)
      << server_->failureReason();
}

// A client the server refuses (it offers TLS 1.1 at most): the transport fails, and the alert
// it made reaches the peer before the connection closes.
TEST_F(TlsTransportSocketTest, AFailedHandshakeSendsItsAlert) {
  SSL_CTX_set_max_proto_version(client_ctx_, TLS1_1_VERSION);
  restart();
  SSL_do_handshake(client_);
  const IoResult read = toServer(2048);
  EXPECT_EQ(read.action, PostIoAction::kClose);
  EXPECT_TRUE(read.error);
  EXPECT_NE(server_->failureReason().find("unsupported protocol"), std::string::npos)
      << server_->failureReason();
  EXPECT_FALSE(connected_);
  EXPECT_EQ(server_->bytesToSend(), 0u);
  char alert[16];
  const ssize_t n = recv(peer_, alert, sizeof(alert), 0);
  ASSERT_EQ(n, 7);
  EXPECT_EQ(alert[0], 0x15);  // content type: alert
  EXPECT_EQ(alert[6], 70);    // protocol_version
}

// doRead() goes on from the socket where the batch's bytes end.
TEST_F(TlsTransportSocketTest, DirectReadTakesKeptBytesThenTheSocket) {
  handshake(2048);
  ASSERT_EQ(SSL_write(client_, "first ", 6), 6);
  ASSERT_EQ(SSL_write(client_, "second", 6), 6);
  char* data = nullptr;
  const long len = BIO_get_mem_data(from_client_, &data);
  const std::string bytes(data, static_cast<size_t>(len));
  (void)BIO_reset(from_client_);
  // Half of it as a batched read, the rest through the socket.
  const size_t half = bytes.size() / 2;
  server_->completeBatchedRead(plaintext_, bytes.data(), static_cast<ssize_t>(half));
  ASSERT_EQ(send(peer_, bytes.data() + half, bytes.size() - half, 0),
            static_cast<ssize_t>(bytes.size() - half));
  const IoResult read = server_->doRead(plaintext_, 1 << 20);
  EXPECT_EQ(read.action, PostIoAction::kKeepOpen) << server_->failureReason();
  EXPECT_EQ(plaintext_.toString(), "first second");
  // And doWrite() sends the records to the socket itself.
  Buffer output;
  output.add(std::string("reply"));
  const IoResult wrote = server_->doWrite(output, false);
  EXPECT_EQ(wrote.bytes, 5u);
  EXPECT_GT(wrote.sent, 5u);
  EXPECT_EQ(server_->bytesToSend(), 0u);
  std::string records(wrote.sent, '\0');
  ASSERT_EQ(recv(peer_, records.data(), records.size(), 0),
            static_cast<ssize_t>(records.size()));
  BIO_write(to_client_, records.data(), static_cast<int>(records.size()));
  EXPECT_EQ(clientReadAll(), "reply");
}

}  // namespace
}  // namespace connwarden::network
