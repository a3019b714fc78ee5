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
    case SessionState::kHibernating: return "hibernating";
  }
  return "unknown";
}

namespace {
constexpr http::Http1Limits kServerLimits{};
}  // namespace

ServerSession::ServerSession(WorkerHttpContext& context, const network::ListenerConfig& listener,
                             const ConnectionPolicy& policy, network::ConnectionPtr connection,
                             SessionObserver& observer, const History* history)
    : context_(context),
      listener_(listener),
      connection_(std::move(connection)),
      observer_(observer),
      policy_(&policy),
      timer_(context.dispatcher.base(), [this] {
        event::MemoryAccount::Scope scope(connection_->memoryAccount());
        onTimer();
      }) {
  createCodec();
  connection_->setCallbacks(*this);
  connection_->setBufferLimits(listener_.buffer_high_watermark);
  connection_->setWriteTimeout(policy_->write_timeout);
  opened_at_ = history != nullptr ? history->opened_at : context_.dispatcher.now();
  if (history != nullptr) requests_started_ = history->requests_started;
  state_since_ = context_.dispatcher.now();
  request_started_ = state_since_;
  // Until its first request, a connection is bounded by the header timeout from its opening (a
  // client that connects and says nothing holds a descriptor for nothing), then by idle rules.
  state_ = connection_->transportConnected() ? SessionState::kIdle : SessionState::kHandshake;
  armTimer();
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

void ServerSession::setPolicy(const ConnectionPolicy& policy) {
  policy_ = &policy;
  connection_->setWriteTimeout(policy.write_timeout);
  if (!closed_) armTimer();
}

void ServerSession::armTimer() {
  const ConnectionPolicy& policy = *policy_;
  event::MonotonicTime deadline = event::MonotonicTime::max();
  TimerAction action = TimerAction::kNone;
  network::CloseReason reason = network::CloseReason::kNone;
  auto consider = [&](std::chrono::milliseconds timeout, event::MonotonicTime since,
                      TimerAction what, network::CloseReason why) {
    if (timeout.count() <= 0 || since + timeout >= deadline) return;
    deadline = since + timeout;
    action = what;
    reason = why;
  };
  const bool first_request = requests_started_ == 0;
  switch (state_) {
    case SessionState::kHandshake:
      consider(policy.request_header_timeout, opened_at_, TimerAction::kClose,
               network::CloseReason::kHeaderTimeout);
      break;
    case SessionState::kIdle:
      if (policy.hibernate) {
        // `after` of 0 still goes through the timer: from the loop, never inside a response.
        const auto after = std::max(policy.hibernate_after, std::chrono::milliseconds(1));
        consider(after, std::max(state_since_, hibernate_not_before_), TimerAction::kHibernate,
                 network::CloseReason::kNone);
      }
      [[fallthrough]];
    case SessionState::kHibernating:
      if (first_request) {
        consider(policy.request_header_timeout, opened_at_, TimerAction::kClose,
                 network::CloseReason::kHeaderTimeout);
      }
      consider(policy.idle_timeout, state_since_, TimerAction::kClose,
               network::CloseReason::kIdleTimeout);
      break;
    case SessionState::kActive:
    case SessionState::kDraining:
      if (codec_ != nullptr && codec_->readingHeaders()) {
        consider(policy.request_header_timeout, request_started_, TimerAction::kClose,
                 network::CloseReason::kHeaderTimeout);
      }
      if (codec_ != nullptr && codec_->streamActive() && !request_received_) {
        consider(policy.request_timeout, request_started_, TimerAction::kClose,
                 network::CloseReason::kRequestTimeout);
      }
      break;
    case SessionState::kTunnel:
      if (policy.hibernate && !tunnel_hibernated_) {
        const auto after = std::max(policy.hibernate_after, std::chrono::milliseconds(1));
        consider(after, state_since_, TimerAction::kHibernate, network::CloseReason::kNone);
      }
      consider(policy.tunnel_idle_timeout, state_since_, TimerAction::kClose,
               network::CloseReason::kIdleTimeout);
      break;
  }
  if (drain_reason_ != network::CloseReason::kNone) {
    if (drain_deadline_ < deadline) {
      deadline = drain_deadline_;
      action = TimerAction::kDrainDeadline;
      reason = drain_reason_;
    }
  } else {
    consider(policy.max_connection_age, opened_at_, TimerAction::kStartDrain,
             network::CloseReason::kMaxAge);
  }
  timer_action_ = action;
  timer_reason_ = reason;
  if (action == TimerAction::kNone) {
    timer_.disable();
    return;
  }
  const auto now = context_.dispatcher.now();
  timer_.enable(deadline <= now ? std::chrono::milliseconds(0)
                                 : std::chrono::ceil<std::chrono::milliseconds>(deadline - now));
}

void ServerSession::onTimer() {
  if (closed_) return;
  switch (timer_action_) {
    case TimerAction::kNone:
      return;
    case TimerAction::kHibernate:
      hibernate();
      return;
    case TimerAction::kStartDrain:
      CW_LOG(kDebug, "connection %s: max age reached, draining",
             connection_->peerAddress().toString());
      drain(timer_reason_, policy_->drain_timeout);
      return;
    case TimerAction::kDrainDeadline:
      // Shutdown keeps its reason; an operator's drain that ran out of time is a kill.
      close(timer_reason_ == network::CloseReason::kShutdown ? timer_reason_
                                                             : network::CloseReason::kKilled,
            /*abort=*/true);
      return;
    case TimerAction::kClose:
      break;
  }
  CW_LOG(kDebug, "connection %s: %s", connection_->peerAddress().toString(),
         network::closeReasonName(timer_reason_));
  if (stream_ != nullptr && stream_->responseStarted()) {
    close(timer_reason_, /*abort=*/true);
  } else if ((timer_reason_ == network::CloseReason::kHeaderTimeout ||
              timer_reason_ == network::CloseReason::kRequestTimeout) &&
             connection_->transportConnected() && codec_ != nullptr && codec_->streamActive()) {
    // A partial request: tell the client why before closing.
    destroyStream();
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

void ServerSession::enterIdle() {
  state_since_ = context_.dispatcher.now();
  setState(SessionState::kIdle);
  armTimer();
}

void ServerSession::hibernate() {
  if (state_ == SessionState::kTunnel) {
    // Stays a tunnel; only the (empty) buffers go, on both sides, until bytes move again.
    tunnel_hibernated_ = true;
    connection_->releaseBuffers();
    if (codec_ != nullptr) codec_->releaseBuffers();
    if (stream_ != nullptr) stream_->releaseUpstreamBuffers();
    armTimer();
    observer_.onHibernated();
    return;
  }
  if (state_ != SessionState::kIdle || !connection_->readBuffer().empty() ||
      connection_->unsentBytes() > 0 || (codec_ != nullptr && codec_->streamActive())) {
    // Not quiet after all (the response is still draining to a slow client): try again later.
    hibernate_not_before_ = context_.dispatcher.now() + std::chrono::milliseconds(100);
    armTimer();
    return;
  }
  codec_.reset();
  resume_timer_.reset();
  client_ip_ = std::string();
  connection_->releaseBuffers();
  setState(SessionState::kHibernating);
  armTimer();
  observer_.onHibernated();
}

network::Connection::DetachedSocket ServerSession::detachSocket() {
  if (closed_ || state_ != SessionState::kHibernating || stream_ != nullptr ||
      !connection_->quiet()) {
    return {};
  }
  closed_ = true;
  timer_.disable();
  return connection_->detachSocket();
}

void ServerSession::createCodec() {
  {
    event::MemoryAccount::CategoryScope codec_memory(event::MemoryCategory::kCodec);
    codec_ = std::make_unique<Http1ServerCodec>(static_cast<ServerCodecCallbacks&>(*this),
                                                kServerLimits);
  }
  resume_timer_ = context_.dispatcher.createTimer([this] {
    event::MemoryAccount::Scope scope(connection_->memoryAccount());
    dispatchRequests();
  });
}

void ServerSession::wake() {
  createCodec();
  state_since_ = context_.dispatcher.now();
  setState(SessionState::kIdle);
}

void ServerSession::onEvent(network::ConnectionEvent event) {
  if (event == network::ConnectionEvent::kConnected) {
    if (state_ == SessionState::kHandshake) {
      setState(SessionState::kIdle);
      armTimer();  // idle rules (hibernate included) from now on
    }
    return;
  }
  if (closed_) return;
  closed_ = true;
  timer_.disable();
  if (resume_timer_ != nullptr) resume_timer_->disable();
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
    state_since_ = context_.dispatcher.now();
    tunnel_hibernated_ = false;
    armTimer();
    stream_->tunnelToUpstream(data, end_stream);
    if (downstream_end_stream_ && upstream_end_stream_) {
      connection_->close(network::Connection::CloseType::kFlushWrite,
                         network::CloseReason::kPeerClosed);
    }
    return;
  }
  downstream_end_stream_ = end_stream;
  if (state_ == SessionState::kHibernating) wake();
  dispatchRequests();
}

void ServerSession::dispatchRequests() {
  if (closed_ || state_ == SessionState::kTunnel || codec_ == nullptr) return;
  network::Buffer& data = connection_->readBuffer();
  const bool was_active = codec_->streamActive();
  const bool was_reading_headers = codec_->readingHeaders();
  if (!was_active && !data.empty()) request_started_ = context_.dispatcher.now();
  bool parsed = true;
  if (!data.empty()) {
    event::MemoryAccount::CategoryScope codec_memory(event::MemoryCategory::kCodec);
    parsed = codec_->dispatch(data);
  }
  if (!parsed) {
    onCodecError();
    return;
  }
  if (closed_ || state_ == SessionState::kTunnel) return;
  if (codec_->streamActive()) {
    // Deadlines change when a request starts, its head completes or its body ends.
    const bool received = codec_->requestComplete();
    if (!was_active || was_reading_headers != codec_->readingHeaders() ||
        received != request_received_) {
      request_received_ = received;
      if (!was_active && drain_reason_ == network::CloseReason::kNone) {
        setState(SessionState::kActive);
      }
      armTimer();
    }
  }
  if (downstream_end_stream_ && (!codec_->streamActive() || !codec_->requestComplete())) {
    // The client finished sending. With nothing in flight, a clean end. In the middle of a
    // request (its head or its body), the request can never complete: the client gave up, and
    // the exchange is abandoned now rather than at a timeout. (A client that half-closes after
    // a whole request still gets its response.)
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
  ++requests_started_;
  const uint32_t max_requests = policy_->max_requests_per_connection;
  if (max_requests > 0 && requests_started_ >= max_requests &&
      drain_reason_ == network::CloseReason::kNone) {
    // The last request this connection serves: its response says `Connection: close`.
    drain_reason_ = network::CloseReason::kMaxRequests;
    drain_deadline_ = event::MonotonicTime::max();
    encoder.setCloseAfterResponse();
    codec_->shutdownAfterCurrent();
  }
  stream_ = std::make_unique<ProxyStream>(*this, encoder);
  return *stream_;
}

void ServerSession::onStreamComplete(ResponseEncoder&) {
  if (context_.request_stats != nullptr && stream_ != nullptr) {
    context_.request_stats->record(stream_->route(), stream_->responseStatus(),
                                   context_.dispatcher.now() - request_started_);
  }
  observer_.onRequestComplete();
  destroyStream();
  request_received_ = false;
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
  enterIdle();
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

void ServerSession::drain(network::CloseReason reason, std::chrono::milliseconds deadline) {
  if (closed_) return;
  if (deadline.count() <= 0) {
    close(reason == network::CloseReason::kShutdown ? reason : network::CloseReason::kKilled,
          /*abort=*/true);
    return;
  }
  const event::MonotonicTime at = context_.dispatcher.now() + deadline;
  if (drain_reason_ != network::CloseReason::kNone &&
      drain_reason_ != network::CloseReason::kMaxRequests) {
    if (at < drain_deadline_) {
      drain_deadline_ = at;
      armTimer();
    }
    return;
  }
  drain_reason_ = reason;
  drain_deadline_ = at;
  if (state_ == SessionState::kTunnel) {
    armTimer();  // the peers decide when it ends, within the deadline
    return;
  }
  if (stream_ == nullptr) {
    // Nothing in flight (idle, hibernating, handshake, or a partial head that is dropped).
    connection_->close(network::Connection::CloseType::kFlushWrite, reason);
    return;
  }
  codec_->shutdownAfterCurrent();
  setState(SessionState::kDraining);
  armTimer();
}

void ServerSession::startTunnel() {
  state_since_ = context_.dispatcher.now();
  setState(SessionState::kTunnel);
  armTimer();
  network::Buffer& pending = connection_->readBuffer();
  if (!pending.empty() || downstream_end_stream_) {
    stream_->tunnelToUpstream(pending, downstream_end_stream_);
  }
}

void ServerSession::writeTunnel(network::Buffer& data, bool end_stream) {
  if (closed_) return;
  state_since_ = context_.dispatcher.now();
  tunnel_hibernated_ = false;
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
