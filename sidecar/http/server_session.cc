#include "sidecar/http/server_session.h"

#include "absl/strings/str_format.h"
#include "sidecar/event/log.h"
#include "sidecar/http/http1_codec.h"
#include "sidecar/http/proxy_stream.h"

namespace connwarden::http {

std::string_view sessionStateName(SessionState state) {
  switch (state) {
    case SessionState::kHandshake: return "handshake";
    case SessionState::kIdle: return "idle";
    case SessionState::kActive: return "active";
    case SessionState::kTunnel: return "tunnel";
    case SessionState::kDraining: return "draining";
  }
  return "unknown";
}

ServerSession::ServerSession(WorkerHttpContext& context, const network::ListenerConfig& listener,
                             network::ConnectionPtr connection, SessionObserver& observer)
    : context_(context),
      listener_(listener),
      connection_(std::move(connection)),
      observer_(observer),
      codec_(std::make_unique<Http1ServerCodec>(static_cast<ServerCodecCallbacks&>(*this))) {
  connection_->setCallbacks(*this);
  connection_->setBufferLimits(listener_.buffer_high_watermark);
  timer_ = context_.dispatcher.createTimer([this] { onTimer(); });
  resume_timer_ = context_.dispatcher.createTimer([this] { dispatchRequests(); });
  state_ = connection_->transportConnected() ? SessionState::kIdle : SessionState::kHandshake;
  // The first request head (and the TLS handshake before it) must come within the header
  // timeout: a client that connects and says nothing holds a descriptor for nothing.
  if (listener_.request_header_timeout.count() > 0) {
    timer_reason_ = network::CloseReason::kHeaderTimeout;
    timer_->enable(listener_.request_header_timeout);
  } else {
    armTimer();
  }
}

const std::string& ServerSession::clientIp() {
  if (client_ip_.empty()) client_ip_ = connection_->peerAddress().ipString();
  return client_ip_;
}

ServerSession::~ServerSession() {
  if (stream_ != nullptr) stream_->cancel();
}

void ServerSession::setState(SessionState state) {
  if (state_ == state) return;
  state_ = state;
  observer_.onSessionStateChanged(state);
}

void ServerSession::armTimer() {
  std::chrono::milliseconds timeout{0};
  switch (state_) {
    case SessionState::kIdle:
      timeout = listener_.idle_timeout;
      timer_reason_ = network::CloseReason::kIdleTimeout;
      break;
    case SessionState::kTunnel:
      timeout = listener_.tunnel_idle_timeout;
      timer_reason_ = network::CloseReason::kIdleTimeout;
      break;
    default:
      break;
  }
  if (timeout.count() > 0) {
    timer_->enable(timeout);
  } else {
    timer_->disable();
  }
}

void ServerSession::onTimer() {
  CW_LOG(kDebug, "connection %s: %s", connection_->peerAddress().toString(),
         network::closeReasonName(timer_reason_));
  if (stream_ != nullptr && stream_->responseStarted()) {
    close(timer_reason_, /*abort=*/true);
  } else if (timer_reason_ == network::CloseReason::kHeaderTimeout &&
             connection_->transportConnected() && codec_->readingHeaders()) {
    // A partial request head: tell the client why before closing.
    const std::string response =
        "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    network::Buffer out;
    out.add(response);
    connection_->write(out);
    connection_->close(network::Connection::CloseType::kFlushWrite, timer_reason_);
  } else {
    close(timer_reason_, /*abort=*/false);
  }
}

void ServerSession::onEvent(network::ConnectionEvent event) {
  if (event == network::ConnectionEvent::kConnected) {
    if (state_ == SessionState::kHandshake) setState(SessionState::kIdle);
    return;
  }
  if (closed_) return;
  closed_ = true;
  timer_->disable();
  resume_timer_->disable();
  destroyStream();
  observer_.onSessionClosed(connection_->closeReason());  // may schedule our deletion
}

void ServerSession::destroyStream() {
  if (stream_ == nullptr) return;
  stream_->cancel();
  context_.dispatcher.deferredDelete(std::move(stream_));
}

void ServerSession::onData(network::Buffer& data, bool end_stream) {
  if (closed_) return;
  if (state_ == SessionState::kTunnel) {
    downstream_end_stream_ = end_stream;
    armTimer();
    stream_->tunnelToUpstream(data, end_stream);
    if (downstream_end_stream_ && upstream_end_stream_) {
      connection_->close(network::Connection::CloseType::kFlushWrite,
                         network::CloseReason::kPeerClosed);
    }
    return;
  }
  downstream_end_stream_ = end_stream;
  dispatchRequests();
}

void ServerSession::dispatchRequests() {
  if (closed_ || state_ == SessionState::kTunnel) return;
  network::Buffer& data = connection_->readBuffer();
  const bool was_reading_request = codec_->streamActive();
  if (!data.empty() && !codec_->dispatch(data)) {
    onCodecError();
    return;
  }
  if (closed_ || state_ == SessionState::kTunnel) return;
  if (!was_reading_request && codec_->readingHeaders()) {
    // First bytes of a new request head.
    setState(SessionState::kActive);
    if (listener_.request_header_timeout.count() > 0) {
      timer_reason_ = network::CloseReason::kHeaderTimeout;
      timer_->enable(listener_.request_header_timeout);
    } else {
      timer_->disable();
    }
  }
  if (!codec_->streamActive() && downstream_end_stream_) {
    // The client finished sending and nothing is in flight: a clean end.
    connection_->close(network::Connection::CloseType::kFlushWrite,
                       network::CloseReason::kPeerClosed);
    return;
  }
  // Pipelined requests wait in the read buffer while one is served; stop reading beyond the
  // watermark so a client cannot make us buffer without bound.
  if (!pipeline_read_disabled_ && data.length() > listener_.buffer_high_watermark) {
    pipeline_read_disabled_ = true;
    connection_->readDisable(true);
  }
}

RequestDecoder& ServerSession::newStream(ResponseEncoder& encoder) {
  CW_ASSERT(stream_ == nullptr);
  setState(SessionState::kActive);
  // The head is complete; from here on the exchange is bounded by the upstream's timeouts.
  timer_->disable();
  stream_ = std::make_unique<ProxyStream>(*this, encoder);
  return *stream_;
}

void ServerSession::onStreamComplete(ResponseEncoder&) {
  observer_.onRequestComplete();
  destroyStream();
  if (codec_->wantsClose()) {
    connection_->close(network::Connection::CloseType::kFlushWrite,
                       drain_reason_ != network::CloseReason::kNone
                           ? drain_reason_
                           : network::CloseReason::kPeerClosed);
    return;
  }
  if (pipeline_read_disabled_) {
    pipeline_read_disabled_ = false;
    connection_->readDisable(false);
  }
  if (drain_reason_ != network::CloseReason::kNone) {
    connection_->close(network::Connection::CloseType::kFlushWrite, drain_reason_);
    return;
  }
  setState(SessionState::kIdle);
  armTimer();
  if (!connection_->readBuffer().empty() || downstream_end_stream_) {
    // A pipelined request is waiting; start it from the loop, not from inside this response.
    resume_timer_->enable(std::chrono::milliseconds(0));
  }
}

void ServerSession::writeToConnection(network::Buffer& data, bool end_stream) {
  connection_->write(data, end_stream);
}

void ServerSession::onCodecError() {
  const CodecError& error = codec_->error();
  CW_LOG(kDebug, "connection %s: %d %s", connection_->peerAddress().toString(), error.status,
         error.detail);
  const bool response_started = stream_ != nullptr && stream_->responseStarted();
  destroyStream();
  if (response_started) {
    close(network::CloseReason::kProtocolError, /*abort=*/true);
    return;
  }
  const std::string_view reason = reasonPhrase(error.status);
  const std::string body = absl::StrFormat("%d %s\n", error.status, reason);
  const std::string response = absl::StrFormat(
      "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: "
      "close\r\n\r\n%s",
      error.status, reason, body.size(), body);
  network::Buffer out;
  out.add(response);
  connection_->write(out);
  connection_->close(network::Connection::CloseType::kFlushWrite,
                     network::CloseReason::kProtocolError);
}

void ServerSession::close(network::CloseReason reason, bool abort) {
  if (closed_) return;
  destroyStream();
  connection_->close(abort ? network::Connection::CloseType::kAbort
                           : network::Connection::CloseType::kNoFlush,
                     reason);
}

void ServerSession::drain(network::CloseReason reason) {
  if (closed_ || drain_reason_ != network::CloseReason::kNone) return;
  drain_reason_ = reason;
  if (state_ == SessionState::kTunnel) return;
  if (stream_ == nullptr) {
    // Nothing in flight (idle, handshake, or a partial head that would be dropped anyway).
    connection_->close(network::Connection::CloseType::kFlushWrite, reason);
    return;
  }
  codec_->shutdownAfterCurrent();
  setState(SessionState::kDraining);
}

void ServerSession::startTunnel() {
  setState(SessionState::kTunnel);
  armTimer();
  network::Buffer& pending = connection_->readBuffer();
  if (!pending.empty() || downstream_end_stream_) {
    stream_->tunnelToUpstream(pending, downstream_end_stream_);
  }
}

void ServerSession::writeTunnel(network::Buffer& data, bool end_stream) {
  if (closed_) return;
  armTimer();
  upstream_end_stream_ = upstream_end_stream_ || end_stream;
  connection_->write(data, end_stream);
  if (downstream_end_stream_ && upstream_end_stream_) {
    connection_->close(network::Connection::CloseType::kFlushWrite,
                       network::CloseReason::kPeerClosed);
  }
}

void ServerSession::resetAfterResponseStarted(network::CloseReason reason) {
  close(reason, /*abort=*/true);
}

void ServerSession::readDisableDownstream(bool disable) {
  if (!closed_) connection_->readDisable(disable);
}

void ServerSession::onAboveWriteBufferHighWatermark() {
  if (stream_ != nullptr) stream_->onDownstreamWatermark(true);
}

void ServerSession::onBelowWriteBufferLowWatermark() {
  if (stream_ != nullptr) stream_->onDownstreamWatermark(false);
}

}  // namespace connwarden::http
