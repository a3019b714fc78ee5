#include "sidecar/network/tls_transport_socket.h"

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "sidecar/event/dispatcher.h"

namespace connwarden::network {

namespace {

std::string opensslErrors() {
  std::string out;
  unsigned long code;
  while ((code = ERR_get_error()) != 0) {
    char text[256];
    ERR_error_string_n(code, text, sizeof(text));
    if (!out.empty()) out += "; ";
    out += text;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

// Plaintext bytes per SSL_read / SSL_write call: one TLS record's worth.
constexpr size_t kReadSlice = 16 * 1024;
constexpr size_t kRecordSize = 16 * 1024;

}  // namespace

// --- TlsContext ---------------------------------------------------------------------------------

absl::StatusOr<std::shared_ptr<TlsContext>> TlsContext::create(const TlsConfig& config,
                                                               std::vector<std::string> alpn) {
  std::shared_ptr<TlsContext> context(new TlsContext());
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return absl::InternalError("SSL_CTX_new: " + opensslErrors());
  context->ctx_ = ctx;

  SSL_CTX_set_min_proto_version(ctx, config.min_tls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
  // Release the 16 KiB+ record buffers whenever they are empty: an idle TLS connection then
  // holds no record buffers at all.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Read ahead: one read(2) takes in whatever the socket holds (up to the record buffer) instead
  // of one for each record's 5-byte header and one for its body; SSL_has_pending() then says
  // when undecrypted bytes are still inside OpenSSL.
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_COMPRESSION);
  // Resumption by stateless tickets only: a server-side session cache would hold memory per
  // past client that no connection owns.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(ctx, config.cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("cert_file \"", config.cert_file, "\": ", opensslErrors()));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, config.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("key_file \"", config.key_file, "\": ", opensslErrors()));
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("key_file \"", config.key_file,
                                                   "\" does not match cert_file \"",
                                                   config.cert_file, "\""));
  }
  for (const std::string& proto : alpn) {
    context->alpn_wire_.push_back(static_cast<char>(proto.size()));
    context->alpn_wire_ += proto;
  }
  if (!context->alpn_wire_.empty()) {
    SSL_CTX_set_alpn_select_cb(ctx, &TlsContext::selectAlpn, context.get());
  }
  context->warmUp();
  return context;
}

void TlsContext::warmUp() const {
  // OpenSSL fills its algorithm caches on first use, and keeps them for the life of the
  // process. One handshake in memory, here, makes sure the first client's memory account is not
  // charged with them.
  SSL_CTX* client_ctx = SSL_CTX_new(TLS_client_method());
  if (client_ctx == nullptr) return;
  SSL* client = SSL_new(client_ctx);
  SSL* server = SSL_new(ctx_);
  BIO* client_bio = nullptr;
  BIO* server_bio = nullptr;
  if (client != nullptr && server != nullptr &&
      BIO_new_bio_pair(&client_bio, 0, &server_bio, 0) == 1) {
    SSL_set_bio(client, client_bio, client_bio);
    SSL_set_bio(server, server_bio, server_bio);
    SSL_set_connect_state(client);
    SSL_set_accept_state(server);
    for (int round = 0; round < 10; ++round) {
      const int c = SSL_do_handshake(client);
      const int s = SSL_do_handshake(server);
      if (c == 1 && s == 1) break;
    }
  }
  SSL_free(client);
  SSL_free(server);
  SSL_CTX_free(client_ctx);
  ERR_clear_error();
}

void warmUpTlsForThisThread() {
  // Per-thread state (random generators, the error queue) lives as long as the thread.
  unsigned char byte;
  RAND_bytes(&byte, 1);
  ERR_clear_error();
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

int TlsContext::selectAlpn(SSL*, const unsigned char** out, unsigned char* outlen,
                           const unsigned char* in, unsigned int inlen, void* arg) {
  auto* self = static_cast<TlsContext*>(arg);
  unsigned char* selected;
  if (SSL_select_next_proto(&selected, outlen,
                            reinterpret_cast<const unsigned char*>(self->alpn_wire_.data()),
                            self->alpn_wire_.size(), in, inlen) != OPENSSL_NPN_NEGOTIATED) {
    // No overlap: carry on without ALPN rather than failing the handshake (RFC 7301 allows
    // either; clients that offer only protocols we lack get a clear HTTP error instead).
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

TransportSocketPtr TlsContext::newServerSocket() const {
  SSL* ssl = SSL_new(ctx_);
  CW_ASSERT(ssl != nullptr);
  SSL_set_accept_state(ssl);
  return std::make_unique<TlsTransportSocket>(ssl);
}

// --- TlsTransportSocket ------------------------------------------------------------------------

TlsTransportSocket::TlsTransportSocket(SSL* ssl) : ssl_(ssl) {}

TlsTransportSocket::~TlsTransportSocket() { SSL_free(ssl_); }

void TlsTransportSocket::setCallbacks(TransportSocketCallbacks& callbacks) {
  callbacks_ = &callbacks;
  SSL_set_fd(ssl_, callbacks.fd());
}

void TlsTransportSocket::onConnected() {
  // The handshake starts when the client's hello arrives (doRead).
}

void TlsTransportSocket::recordFailure(int ssl_error) {
  if (ssl_error == SSL_ERROR_SYSCALL) {
    failure_ = errno != 0 ? std::strerror(errno) : "unexpected EOF";
  } else {
    failure_ = opensslErrors();
  }
  ERR_clear_error();
}

bool TlsTransportSocket::doHandshake(IoResult& result) {
  ERR_clear_error();
  const int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    handshake_done_ = true;
    want_write_ = false;
    callbacks_->onTransportConnected();
    return true;
  }
  const int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ) {
    want_write_ = false;
    return true;
  }
  if (err == SSL_ERROR_WANT_WRITE) {
    want_write_ = true;
    return true;
  }
  recordFailure(err);
  result.action = PostIoAction::kClose;
  result.error = true;
  return false;
}

IoResult TlsTransportSocket::doRead(Buffer& buffer, uint64_t max_bytes) {
  IoResult result;
  if (!handshake_done_) {
    if (!doHandshake(result) || !handshake_done_) return result;
  }
  while (result.bytes < max_bytes) {
    iovec slices[1];
    buffer.reserve(kReadSlice, slices, 1);
    ERR_clear_error();
    const size_t reserved = slices[0].iov_len;  // commit() shortens the slice to what was read
    const int rc = SSL_read(ssl_, slices[0].iov_base, static_cast<int>(reserved));
    if (rc > 0) {
      buffer.commit(slices, 1, static_cast<size_t>(rc));
      result.bytes += rc;
      // A short read with no record left inside OpenSSL: the socket is drained, and asking
      // again would only cost a read(2) that says EAGAIN.
      if (static_cast<size_t>(rc) < reserved && !SSL_has_pending(ssl_)) return result;
      continue;
    }
    buffer.commit(slices, 1, 0);
    const int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_READ) {
      want_write_ = false;
      return result;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
      want_write_ = true;
      return result;
    }
    if (err == SSL_ERROR_ZERO_RETURN) {
      result.end_stream = true;
      return result;
    }
    if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0) {
      // TCP FIN without close_notify: a truncation attack is possible in theory, but HTTP has
      // its own framing; treat it as the peer closing.
      result.end_stream = true;
      return result;
    }
    recordFailure(err);
    result.action = PostIoAction::kClose;
    result.error = true;
    return result;
  }
  // Stopped at the per-event limit with decrypted or undecrypted bytes possibly still held by
  // OpenSSL: the socket may never signal them again.
  callbacks_->setReadBufferReady();
  return result;
}

IoResult TlsTransportSocket::doWrite(Buffer& buffer, bool end_stream) {
  IoResult result;
  if (!handshake_done_) {
    if (!doHandshake(result) || !handshake_done_) return result;
  }
  while (!buffer.empty()) {
    // One record per 16 KiB: a response head and its small body go out as one record and one
    // write(2), not one per buffer slice. A retried write passes the same bytes again
    // (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows their address to change).
    const size_t len = std::min<size_t>(buffer.length(), kRecordSize);
    const void* data = buffer.linearize(len);
    ERR_clear_error();
    const int rc = SSL_write(ssl_, data, static_cast<int>(len));
    if (rc > 0) {
      buffer.drain(static_cast<size_t>(rc));
      result.bytes += rc;
      continue;
    }
    const int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_WRITE) {
      want_write_ = true;
      return result;
    }
    if (err == SSL_ERROR_WANT_READ) {
      want_write_ = false;
      return result;
    }
    recordFailure(err);
    result.action = PostIoAction::kClose;
    result.error = true;
    return result;
  }
  want_write_ = false;
  if (end_stream && !shutdown_sent_) {
    shutdown_sent_ = true;
    ERR_clear_error();
    SSL_shutdown(ssl_);  // best effort close_notify; the TCP FIN follows
  }
  return result;
}

TlsInfo TlsTransportSocket::tlsInfo() const {
  TlsInfo info;
  info.version = SSL_get_version(ssl_);
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
  if (alpn != nullptr) info.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
  if (const char* sni = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name)) info.sni = sni;
  return info;
}

void TlsTransportSocket::releaseBuffers() {
  // Fails harmlessly (returns 0) while a record is partly read or written.
  SSL_free_buffers(ssl_);
}

}  // namespace connwarden::network
