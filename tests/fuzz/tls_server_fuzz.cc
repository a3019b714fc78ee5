// Fuzzes the TLS transport's read path with what a client could send before and during the
// handshake — ClientHellos, records, garbage — cut into pieces as the worker's batched reads
// hand them in, and sometimes followed by the end of the stream. OpenSSL's parsers are fuzzed
// upstream; this is about our glue: the BIO that hands the batch's bytes to OpenSSL, the
// handshake and its failures, the alert sent on the socket. It must not crash or leak, and once
// the transport says close it is not fed again. No handshake can complete (the fuzzer holds no
// keys), so no application byte may come out.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "sidecar/network/tls_transport_socket.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/support/test_util.h"

namespace connwarden::network {
namespace {

// One server context and socket pair for the whole run: making them costs more than an input.
class Harness : public TransportSocketCallbacks {
 public:
  Harness() : cert_(testing::makeSelfSignedCertificate(dir_)) {
    auto context = TlsContext::create({cert_.cert_file, cert_.key_file, false}, {"http/1.1"});
    FUZZ_CHECK(context.ok(), std::string(context.status().message()));
    context_ = *context;
    int fds[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0, "socketpair");
    fd_ = fds[0];
    peer_ = fds[1];
  }

  ~Harness() override {
    close(fd_);
    close(peer_);
  }

  int fd() const override { return fd_; }
  void onTransportConnected() override {}
  void setReadBufferReady() override {}

  TransportSocketPtr newSocket() {
    TransportSocketPtr socket = context_->newServerSocket();
    socket->setCallbacks(*this);
    socket->onConnected();
    return socket;
  }
  // What the transport wrote on the socket (its alerts), discarded.
  void drainPeer() {
    char sink[4096];
    while (read(peer_, sink, sizeof(sink)) > 0) {
    }
  }

 private:
  testing::TempDir dir_;
  testing::TestCertificate cert_;
  std::shared_ptr<TlsContext> context_;
  int fd_ = -1;
  int peer_ = -1;
};

}  // namespace
}  // namespace connwarden::network

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace connwarden::network;
  static Harness harness;  // its destructor at exit removes the certificate's directory
  connwarden::fuzz::FuzzInput input(data, size);
  const uint8_t flags = input.takeByte();
  const std::string_view bytes = input.rest();
  const size_t step = connwarden::fuzz::readSize(flags, bytes.size());
  const bool ends = (flags & 8) != 0;

  TransportSocketPtr socket = harness.newSocket();
  Buffer plaintext;
  bool closed = false;
  for (size_t at = 0; at < bytes.size() && !closed; at += step) {
    const size_t n = std::min(step, bytes.size() - at);
    const IoResult result =
        socket->completeBatchedRead(plaintext, bytes.data() + at, static_cast<ssize_t>(n));
    // No handshake can complete without a client that holds the keys: nothing may come out.
    FUZZ_CHECK(result.bytes == 0 && plaintext.empty(), "application bytes without a handshake");
    closed = result.action == PostIoAction::kClose;
  }
  if (ends && !closed) {
    const IoResult result = socket->completeBatchedRead(plaintext, nullptr, 0);
    FUZZ_CHECK(result.end_stream || result.action == PostIoAction::kClose,
               "the end of the stream went unnoticed");
  }
  socket.reset();
  harness.drainPeer();
  return 0;
}
