// TLS termination on OpenSSL directly: a context per listener (certificate, key, versions,
// ALPN) and a transport socket per connection that drives SSL_read/SSL_write over the fd.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sidecar/network/listener_config.h"
#include "sidecar/network/transport_socket.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace connwarden::network {

// A server-side TLS context. Immutable after creation; shared by the listener's sockets on all
// workers (OpenSSL contexts are thread-safe for creating connections).
class TlsContext {
 public:
  // Loads the certificate chain and key; fails with a message naming the file at fault.
  // `alpn` lists the protocols to accept, most preferred first (e.g. {"h2", "http/1.1"}).
  static absl::StatusOr<std::shared_ptr<TlsContext>> create(const TlsConfig& config,
                                                            std::vector<std::string> alpn);
  ~TlsContext();

  TransportSocketPtr newServerSocket() const;
  SSL_CTX* raw() const { return ctx_; }

 private:
  TlsContext() = default;
  void warmUp() const;
  static int selectAlpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                        const unsigned char* in, unsigned int inlen, void* arg);
  SSL_CTX* ctx_ = nullptr;
  std::string alpn_wire_;  // protocols in wire format: length-prefixed
};

// Makes OpenSSL's per-thread state on the calling thread, so that it is not charged to the
// first connection a worker serves. Each worker calls it before accepting.
void warmUpTlsForThisThread();

class TlsTransportSocket : public TransportSocket {
 public:
  explicit TlsTransportSocket(SSL* ssl);
  ~TlsTransportSocket() override;

  void setCallbacks(TransportSocketCallbacks& callbacks) override;
  void onConnected() override;
  IoResult doRead(Buffer& buffer, uint64_t max_bytes) override;
  IoResult doWrite(Buffer& buffer, bool end_stream) override;
  bool wantsWrite() const override { return want_write_; }
  void releaseBuffers() override;
  bool isTls() const override { return true; }
  TlsInfo tlsInfo() const override;
  std::string failureReason() const override { return failure_; }

 private:
  // Returns false when the connection must close.
  bool doHandshake(IoResult& result);
  void recordFailure(int ssl_error);

  TransportSocketCallbacks* callbacks_ = nullptr;
  SSL* ssl_;
  bool handshake_done_ = false;
  bool want_write_ = false;
  bool shutdown_sent_ = false;
  std::string failure_;
};

}  // namespace connwarden::network
