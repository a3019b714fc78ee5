#include "sidecar/http/proxy_stream.h"

#include "absl/strings/str_cat.h"
#include "sidecar/event/log.h"
#include "sidecar/http/server_session.h"

namespace connwarden::http {

ProxyStream::ProxyStream(ServerSession& session, ResponseEncoder& encoder)
    : session_(session), encoder_(encoder) {}

ProxyStream::~ProxyStream() {
  stopWaiting();
  releaseUpstream();
}

void ProxyStream::stopWaiting() {
  if (waitingForConnection()) pool_->cancelWait(*this);
  if (paused_while_queued_) {
    paused_while_queued_ = false;
    session_.readDisableDownstream(false);
  }
}

void ProxyStream::releaseUpstream() {
  if (upstream_ == nullptr) return;
  if (upstream_paused_by_downstream_) {
    upstream_->readDisable(false);
    upstream_paused_by_downstream_ = false;
  }
  UpstreamClient* upstream = upstream_;
  upstream_ = nullptr;
  pool_->release(upstream);
}

void ProxyStream::decodeHeaders(std::unique_ptr<RequestHead> request, bool end_stream) {
  request_complete_ = end_stream;
  head_ = std::move(request);
  RequestHead* head = head_.get();
  WorkerHttpContext& context = session_.context();
  const Route* route = context.router.match(head->host, head->path);
  route_ = route;
  session_.setRoute(route);
  if (route == nullptr) {
    const uint32_t status = session_.listener().no_route_status;
    localReply(status, absl::StrCat("no route for ", head->host, head->path, "\n"));
    return;
  }
  pool_ = context.pools[route->cluster_index].get();

  prepareUpstreamRequest(*head, session_.clientIp(), session_.connection().transport().isTls());

  if (head->expect_continue && !end_stream) encoder_.encode100Continue();
  sendToUpstream();
}

void ProxyStream::sendToUpstream() {
  UpstreamClient* client = nullptr;
  switch (pool_->acquire(*this, session_.connection().memoryAccount(), &client)) {
    case UpstreamPool::Acquired::kConnection:
      onUpstreamReady(client);
      return;
    case UpstreamPool::Acquired::kQueued:
      return;
    case UpstreamPool::Acquired::kQueueFull:
      onUpstreamFailure(UpstreamFailure::kQueueFull);
      return;
  }
}

void ProxyStream::onUpstreamReady(UpstreamClient* client) {
  // From the pool's queue this runs from the loop: what the request makes is still its
  // client connection's.
  event::MemoryAccount::Scope scope(session_.connection().memoryAccount());
  upstream_ = client;
  upstream_->encodeHeaders(*head_);
  if (!queued_body_.empty() || queued_end_) {
    body_started_ = body_started_ || !queued_body_.empty();
    upstream_->encodeData(queued_body_, queued_end_);
    queued_end_ = false;
  }
  stopWaiting();
  if (request_complete_) upstream_->startResponseTimeout();
}

void ProxyStream::decodeData(network::Buffer& data, bool end_stream) {
  if (waitingForConnection()) {
    queued_body_.move(data);
    if (end_stream) request_complete_ = queued_end_ = true;
    if (!paused_while_queued_ &&
        queued_body_.length() > session_.listener().buffer_high_watermark) {
      paused_while_queued_ = true;
      session_.readDisableDownstream(true);
    }
    return;
  }
  if (response_complete_ || upstream_ == nullptr) {
    // Answered locally (or the upstream failed): the rest of the body goes nowhere.
    data.drain(data.length());
    request_complete_ = request_complete_ || end_stream;
    return;
  }
  body_started_ = body_started_ || !data.empty();
  upstream_->encodeData(data, end_stream);
  if (end_stream) {
    request_complete_ = true;
    upstream_->startResponseTimeout();
  }
}

void ProxyStream::decodeResponseHeaders(std::unique_ptr<ResponseHead> head, bool end_stream) {
  event::MemoryAccount::Scope scope(session_.connection().memoryAccount());
  response_started_ = true;
  response_status_ = static_cast<int>(head->status);
  if (head->status == 101 && head_->upgrade) {
    removeHopByHopHeaders(head->headers, /*keep_upgrade=*/true);
    upstream_->setTunnel();
    encoder_.encodeHeaders(*head, false);
    session_.startTunnel();
    return;
  }
  removeHopByHopHeaders(head->headers, false);
  if (end_stream) response_complete_ = true;
  encoder_.encodeHeaders(*head, end_stream);  // may complete the stream
}

void ProxyStream::decodeResponseData(network::Buffer& data, bool end_stream) {
  event::MemoryAccount::Scope scope(session_.connection().memoryAccount());
  if (end_stream) response_complete_ = true;
  encoder_.encodeData(data, end_stream);  // may complete the stream
  if (upstream_ != nullptr && !response_complete_) {
    // Take from the application no more than the client's buffer has room for below its
    // watermark (8 KiB at least): reading stops at the watermark, and the read that crosses
    // it then adds little. A slow client holds about the watermark, not twice it.
    constexpr size_t kMinRead = 8 * 1024;
    const size_t unsent = session_.connection().unsentBytes();
    const size_t high = session_.listener().buffer_high_watermark;
    upstream_->connection().setReadLimit(unsent + kMinRead < high ? high - unsent : kMinRead);
  }
}

void ProxyStream::onUpstreamFailure(UpstreamFailure failure) {
  event::MemoryAccount::Scope scope(session_.connection().memoryAccount());
  const bool reused = upstream_ != nullptr && upstream_->reused();
  stopWaiting();
  queued_body_.drain(queued_body_.length());
  releaseUpstream();
  // An idle keep-alive connection may have been closed by the application just as we sent on
  // it. Without a body sent, the request can go again on a new connection, once.
  if (reused && !retried_ && !body_started_ && !response_started_ && request_complete_ &&
      failure == UpstreamFailure::kClosedBeforeResponse) {
    retried_ = true;
    sendToUpstream();
    return;
  }
  CW_LOG(kInfo, "upstream failure (%s) for %s %s", upstreamFailureName(failure), head_->method,
         head_->target);
  if (response_started_) {
    session_.resetAfterResponseStarted(network::CloseReason::kUpstreamError);
    return;
  }
  if (failure == UpstreamFailure::kQueueFull || failure == UpstreamFailure::kQueueTimeout) {
    localReply(503, absl::StrCat("upstream busy: every connection the cluster allows is in use (",
                                 std::string(upstreamFailureName(failure)), ")\n"));
    return;
  }
  const bool timeout =
      failure == UpstreamFailure::kConnectTimeout || failure == UpstreamFailure::kResponseTimeout;
  localReply(timeout ? 504 : 502,
             absl::StrCat(timeout ? "upstream timeout: " : "upstream unavailable: ",
                          std::string(upstreamFailureName(failure)), "\n"));
}

void ProxyStream::onUpstreamTunnelData(network::Buffer& data, bool end_stream) {
  event::MemoryAccount::Scope scope(session_.connection().memoryAccount());
  session_.writeTunnel(data, end_stream);
}

void ProxyStream::tunnelToUpstream(network::Buffer& data, bool end_stream) {
  if (upstream_ == nullptr) {
    data.drain(data.length());
    return;
  }
  upstream_->sendTunnelData(data, end_stream);
}

void ProxyStream::onUpstreamAboveWriteHighWatermark() {
  if (!downstream_paused_by_upstream_) {
    downstream_paused_by_upstream_ = true;
    session_.readDisableDownstream(true);
  }
}

void ProxyStream::onUpstreamBelowWriteLowWatermark() {
  if (downstream_paused_by_upstream_) {
    downstream_paused_by_upstream_ = false;
    session_.readDisableDownstream(false);
  }
}

void ProxyStream::onDownstreamWatermark(bool above) {
  if (upstream_ == nullptr || above == upstream_paused_by_downstream_) return;
  upstream_paused_by_downstream_ = above;
  upstream_->readDisable(above);
}

void ProxyStream::releaseUpstreamBuffers() {
  if (upstream_ != nullptr) upstream_->releaseBuffers();
}

void ProxyStream::cancel() {
  stopWaiting();
  if (downstream_paused_by_upstream_) {
    downstream_paused_by_upstream_ = false;
    session_.readDisableDownstream(false);
  }
  releaseUpstream();
}

void ProxyStream::localReply(int status, std::string_view body) {
  response_started_ = true;
  response_status_ = status;
  response_complete_ = true;
  if (!request_complete_) {
    // The rest of the request body will not be read: this must be the last response.
    encoder_.setCloseAfterResponse();
  }
  ResponseHead head;
  head.status = status;
  head.reason = std::string(reasonPhrase(status));
  head.headers.add("Content-Type", "text/plain");
  head.content_length = body.size();
  network::Buffer data;
  data.add(body);
  encoder_.encodeHeaders(head, false);
  encoder_.encodeData(data, true);  // completes the stream
}

}  // namespace connwarden::http
