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

// OpenSSL reads and writes through a BIO of ours rather than the socket, so that the ciphertext
// joins the worker's IoBatch like a raw connection's bytes: a batched read's bytes are handed to
// OpenSSL from the batch's memory (all of them, before the read completes), and the records it
// makes are kept in `records_` until a batched (or, once the socket is writable again, direct)
// send takes them. Only doRead() reads the socket itself, when a read goes on past the batch's
// slot.
class TlsTransportSocket : public TransportSocket {
 public:
  explicit TlsTransportSocket(SSL* ssl);
  ~TlsTransportSocket() override;

  void setCallbacks(TransportSocketCallbacks& callbacks) override;
  void onConnected() override;
  IoResult doRead(Buffer& buffer, uint64_t max_bytes) override;
  IoResult completeBatchedRead(Buffer& buffer, const char* data, ssize_t result) override;
  IoResult doWrite(Buffer& buffer, bool end_stream) override;
  Buffer& prepareBatchedWrite(Buffer& buffer, bool end_stream) override;
  IoResult completeBatchedWrite(Buffer& buffer, ssize_t result) override;
  uint64_t bytesToSend() const override { return records_.length(); }
  void releaseBuffers() override;
  bool isTls() const override { return true; }
  TlsInfo tlsInfo() const override;
  std::string failureReason() const override { return failure_; }

 private:
  struct Bio;  // the BIO's callbacks
  // Runs the handshake, then decrypts what the BIO gives into `buffer`.
  IoResult decrypt(Buffer& buffer, uint64_t max_bytes);
  // Returns false when the connection must close.
  bool doHandshake(IoResult& result);
  // Encrypts `buffer` into records_ (and, with `end_stream`, once all is encrypted, a
  // close_notify). Returns false on a failure.
  bool encrypt(Buffer& buffer, bool end_stream);
  // What the BIO's reads see: the batch's bytes, then (in doRead) the socket.
  int bioRead(char* out, int len, bool& retry);
  // Records the failure, and sends the alert OpenSSL made for it, if the socket takes it.
  void recordFailure(int ssl_error);

  TransportSocketCallbacks* callbacks_ = nullptr;
  SSL* ssl_;
  Buffer records_;  // ciphertext made and not yet sent
  const char* input_ = nullptr;  // a batched read's bytes, while they are decrypted
  size_t input_len_ = 0;
  uint64_t encrypted_ = 0;  // application bytes encrypted since the last write result
  bool read_socket_ = false;  // doRead(): the BIO reads the socket once memory is empty
  bool input_eof_ = false;    // the socket said end of stream
  bool handshake_done_ = false;
  bool shutdown_sent_ = false;
  bool write_failed_ = false;  // encrypting in prepareBatchedWrite() failed
  std::string failure_;
};

}  // namespace connwarden::network
