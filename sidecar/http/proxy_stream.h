// One request proxied to the application: routes it, takes an upstream connection from the
// pool, forwards the request (head with hop-by-hop fields removed and X-Forwarded-* added, then
// the body, streamed) and relays the response back. Answers locally when it must: no route
// (404 or the listener's status), upstream refused or broke before responding (502), upstream
// too slow (504), no upstream connection free in time under the cluster's max_connections (503).
// While such a request waits its turn, its body is held here up to the listener's high
// watermark, and reading the client pauses beyond it. Owned by its ServerSession; worker thread
// only.
#pragma once

#include <memory>

#include "sidecar/event/dispatcher.h"
#include "sidecar/http/codec.h"
#include "sidecar/http/upstream_pool.h"

namespace connwarden::http {

class ServerSession;
struct Route;

class ProxyStream : public RequestDecoder,
                    public UpstreamCallbacks,
                    public event::DeferredDeletable {
 public:
  ProxyStream(ServerSession& session, ResponseEncoder& encoder);
  ~ProxyStream() override;

  // RequestDecoder
  void decodeHeaders(std::unique_ptr<RequestHead> head, bool end_stream) override;
  void decodeData(network::Buffer& data, bool end_stream) override;

  // The client's side broke (reset, protocol error, kill): drop the upstream connection.
  void cancel();
  bool responseStarted() const { return response_started_; }
  // Tunnel mode: bytes from the client to the application.
  void tunnelToUpstream(network::Buffer& data, bool end_stream);
  // The client's write buffer crossed its watermarks: pause / resume reading the application.
  void onDownstreamWatermark(bool above);
  // An idle tunnel hibernates: the upstream connection's empty buffers are freed too.
  void releaseUpstreamBuffers();
  // For the request metrics: the route matched (null: none) and the status sent to the client
  // (0 before the response head).
  const Route* route() const { return route_; }
  int responseStatus() const { return response_status_; }

 private:
  // UpstreamCallbacks
  void decodeResponseHeaders(std::unique_ptr<ResponseHead> head, bool end_stream) override;
  void decodeResponseData(network::Buffer& data, bool end_stream) override;
  void onUpstreamFailure(UpstreamFailure failure) override;
  void onUpstreamTunnelData(network::Buffer& data, bool end_stream) override;
  void onUpstreamAboveWriteHighWatermark() override;
  void onUpstreamBelowWriteLowWatermark() override;
  void onUpstreamReady(UpstreamClient* client) override;

  void sendToUpstream();
  // Leaves the pool's queue, and lets the client be read again if the wait had paused it.
  void stopWaiting();
  void localReply(int status, std::string_view body);
  void releaseUpstream();

  ServerSession& session_;
  ResponseEncoder& encoder_;
  std::unique_ptr<RequestHead> head_;  // kept to retry once on a reused connection
  const Route* route_ = nullptr;
  int response_status_ = 0;
  UpstreamPool* pool_ = nullptr;
  UpstreamClient* upstream_ = nullptr;
  network::Buffer queued_body_;  // body bytes that came while waiting for a connection
  bool queued_end_ = false;      // the request's end came while waiting too
  bool paused_while_queued_ = false;
  bool request_complete_ = false;
  bool body_started_ = false;  // body bytes went upstream: no retry possible
  bool response_started_ = false;
  bool response_complete_ = false;
  bool retried_ = false;
  bool downstream_paused_by_upstream_ = false;
  bool upstream_paused_by_downstream_ = false;
};

}  // namespace connwarden::http
