#include "sidecar/network/tls_transport_socket.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "sidecar/event/dispatcher.h"
#include "sidecar/event/memory_account.h"

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

// OpenSSL's calls must start with an empty error queue for SSL_get_error() to be right. It is
// nearly always empty already (failures are read out where they happen): look before clearing.
void clearErrors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
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
  // (Writes never wait for the socket: our BIO keeps the records until they are sent.)
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  // Read ahead: OpenSSL takes whatever the BIO holds (a batched read whole, or from the socket
  // up to the record buffer) instead of asking for each record's 5-byte header and then its
  // body; SSL_has_pending() then says when undecrypted bytes are still inside OpenSSL.
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

struct TlsTransportSocket::Bio {
  static TlsTransportSocket& of(BIO* bio) {
    return *static_cast<TlsTransportSocket*>(BIO_get_data(bio));
  }
  static int write(BIO* bio, const char* data, int len) {
    BIO_clear_retry_flags(bio);
    of(bio).records_.add(data, static_cast<size_t>(len), event::MemoryCategory::kTls);
    return len;
  }
  static int read(BIO* bio, char* out, int len) {
    BIO_clear_retry_flags(bio);
    bool retry = false;
    const int n = of(bio).bioRead(out, len, retry);
    if (retry) BIO_set_retry_read(bio);
    return n;
  }
  static long ctrl(BIO* bio, int cmd, long, void*) {
    TlsTransportSocket& self = of(bio);
    switch (cmd) {
      case BIO_CTRL_FLUSH:
        return 1;
      case BIO_CTRL_EOF:  // as a socket BIO: OpenSSL tells a TCP FIN from a close_notify by it
        return self.input_eof_ && self.input_len_ == 0 ? 1 : 0;
      case BIO_CTRL_PENDING:
        return static_cast<long>(self.input_len_);
      default:
        return 0;
    }
  }
  static const BIO_METHOD* method() {
    // Made once, for the process, outside any connection's memory account.
    static const BIO_METHOD* const method = [] {
      event::MemoryAccount::Scope process_memory(nullptr);
      BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "connwarden");
      CW_ASSERT(m != nullptr);
      BIO_meth_set_write(m, &Bio::write);
      BIO_meth_set_read(m, &Bio::read);
      BIO_meth_set_ctrl(m, &Bio::ctrl);
      return m;
    }();
    return method;
  }
};

TlsTransportSocket::TlsTransportSocket(SSL* ssl) : ssl_(ssl) {}

TlsTransportSocket::~TlsTransportSocket() { SSL_free(ssl_); }

void TlsTransportSocket::setCallbacks(TransportSocketCallbacks& callbacks) {
  // Again when a hibernated connection wakes up in a new Connection: the BIO stays.
  callbacks_ = &callbacks;
  if (SSL_get_rbio(ssl_) != nullptr) return;
  BIO* bio = BIO_new(Bio::method());
  CW_ASSERT(bio != nullptr);
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_, bio, bio);  // one BIO both ways: SSL_set_bio takes its one reference
}

void TlsTransportSocket::onConnected() {
  // The handshake starts when the client's hello arrives (the first read).
}

int TlsTransportSocket::bioRead(char* out, int len, bool& retry) {
  const size_t want = static_cast<size_t>(len);
  if (input_len_ > 0) {
    const size_t n = std::min(want, input_len_);
    std::memcpy(out, input_, n);
    input_ += n;
    input_len_ -= n;
    return static_cast<int>(n);
  }
  if (input_eof_) return 0;
  if (!read_socket_) {
    retry = true;
    return -1;
  }
  ssize_t rc;
  do {
    rc = ::recv(callbacks_->fd(), out, want, 0);
  } while (rc < 0 && errno == EINTR);
  if (rc >= 0) {
    if (rc == 0) input_eof_ = true;
    return static_cast<int>(rc);
  }
  if (errno == EAGAIN) retry = true;
  return -1;  // errno says why: SSL_ERROR_SYSCALL
}

void TlsTransportSocket::recordFailure(int ssl_error) {
  if (ssl_error == SSL_ERROR_SYSCALL) {
    failure_ = errno != 0 ? std::strerror(errno) : "unexpected EOF";
  } else {
    failure_ = opensslErrors();
  }
  ERR_clear_error();
  // The alert, if OpenSSL made one, tells the peer why; best effort, the connection closes next.
  std::string ignored;
  sendFrom(callbacks_->fd(), records_, ignored);
}

bool TlsTransportSocket::doHandshake(IoResult& result) {
  clearErrors();
  const int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    handshake_done_ = true;
    callbacks_->onTransportConnected();
    return true;
  }
  const int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return true;
  recordFailure(err);
  result.action = PostIoAction::kClose;
  result.error = true;
  return false;
}

IoResult TlsTransportSocket::doRead(Buffer& buffer, uint64_t max_bytes) {
  read_socket_ = true;
  const IoResult result = decrypt(buffer, max_bytes);
  read_socket_ = false;
  return result;
}

IoResult TlsTransportSocket::completeBatchedRead(Buffer& buffer, const char* data,
                                                 ssize_t result) {
  if (result < 0 && result != -EAGAIN) {
    IoResult out;
    failure_ = std::strerror(static_cast<int>(-result));
    out.action = PostIoAction::kClose;
    out.error = true;
    return out;
  }
  if (result == 0) input_eof_ = true;
  input_ = data;
  input_len_ = result > 0 ? static_cast<size_t>(result) : 0;
  // No limit: it is at most a slot's worth of records, and decrypt() goes on until OpenSSL has
  // taken all of it (the batch reuses the slot).
  IoResult out = decrypt(buffer, UINT64_MAX);
  if (input_len_ > 0 && out.action == PostIoAction::kKeepOpen && !out.end_stream) {
    // Cannot happen (OpenSSL stops short only at a close_notify or a failure); if it ever did,
    // closing is better than a stream with bytes missing.
    failure_ = "TLS input left undecrypted";
    out.action = PostIoAction::kClose;
    out.error = true;
  }
  input_ = nullptr;
  input_len_ = 0;
  return out;
}

IoResult TlsTransportSocket::decrypt(Buffer& buffer, uint64_t max_bytes) {
  IoResult result;
  if (!handshake_done_) {
    if (!doHandshake(result) || !handshake_done_) return result;
  }
  while (result.bytes < max_bytes) {
    iovec slices[1];
    buffer.reserve(kReadSlice, slices, 1);
    clearErrors();
    const size_t reserved = slices[0].iov_len;  // commit() shortens the slice to what was read
    const int rc = SSL_read(ssl_, slices[0].iov_base, static_cast<int>(reserved));
    if (rc > 0) {
      buffer.commit(slices, 1, static_cast<size_t>(rc));
      result.bytes += rc;
      // A short read with no record left inside OpenSSL nor in the batch's bytes: the input is
      // drained, and asking again would only cost a read(2) that says EAGAIN.
      if (static_cast<size_t>(rc) < reserved && !SSL_has_pending(ssl_) && input_len_ == 0) {
        return result;
      }
      continue;
    }
    buffer.commit(slices, 1, 0);
    const int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return result;
    if (err == SSL_ERROR_ZERO_RETURN) {
      result.end_stream = true;
      return result;
    }
    recordFailure(err);
    result.action = PostIoAction::kClose;
    result.error = true;
    return result;
  }
  // Stopped at the limit with decrypted or undecrypted bytes possibly still held by OpenSSL:
  // the socket may never signal them again.
  callbacks_->setReadBufferReady();
  return result;
}

bool TlsTransportSocket::encrypt(Buffer& buffer, bool end_stream) {
  if (!handshake_done_) return true;  // the handshake's messages go out; the rest waits for it
  while (!buffer.empty()) {
    // One record per 16 KiB: a response head and its small body go out as one record, not one
    // per buffer slice.
    const size_t len = std::min<size_t>(buffer.length(), kRecordSize);
    const void* data = buffer.linearize(len);
    clearErrors();
    const int rc = SSL_write(ssl_, data, static_cast<int>(len));
    if (rc > 0) {
      buffer.drain(static_cast<size_t>(rc));
      encrypted_ += rc;
      continue;
    }
    const int err = SSL_get_error(ssl_, rc);
    // The BIO takes every record, so nothing waits for the socket; a write can only wait for
    // the peer (renegotiation, which is refused): it goes on after the next read.
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return true;
    recordFailure(err);
    return false;
  }
  if (end_stream && !shutdown_sent_) {
    shutdown_sent_ = true;
    clearErrors();
    SSL_shutdown(ssl_);  // best effort close_notify; the TCP FIN follows
  }
  return true;
}

IoResult TlsTransportSocket::doWrite(Buffer& buffer, bool end_stream) {
  const bool encrypted = encrypt(buffer, end_stream);
  IoResult result = sendFrom(callbacks_->fd(), records_, failure_);
  result.bytes = std::exchange(encrypted_, 0);
  if (!encrypted) {
    result.action = PostIoAction::kClose;
    result.error = true;
  }
  return result;
}

Buffer& TlsTransportSocket::prepareBatchedWrite(Buffer& buffer, bool end_stream) {
  if (!encrypt(buffer, end_stream)) write_failed_ = true;
  return records_;
}

IoResult TlsTransportSocket::completeBatchedWrite(Buffer&, ssize_t result) {
  IoResult out = applySend(records_, result, failure_);
  out.bytes = std::exchange(encrypted_, 0);
  if (write_failed_) {
    out.action = PostIoAction::kClose;
    out.error = true;
  }
  return out;
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
  records_.release();
}

}  // namespace connwarden::network
