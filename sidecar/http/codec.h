// The codec interfaces: how bytes on a connection become requests and responses, and back.
// HTTP/1.1 implements them now; HTTP/2 will implement the same server-side interfaces, one
// stream per request.
//
// Server side, per downstream connection:
//
//   bytes ──dispatch()──▶ ServerCodec ──newStream()──▶ RequestDecoder (the proxy's stream)
//                                         ◀──encodeHeaders/encodeData── ResponseEncoder
//
// All calls happen on the connection's worker thread. A decoder callback may call back into the
// codec (e.g. encode a local reply) but must not destroy it; the session owning the codec does
// that through deferred deletion.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "sidecar/http/headers.h"
#include "sidecar/network/buffer.h"

namespace connwarden::http {

// Writes one response on the downstream connection. Owned by the codec; valid until the
// stream's response is complete or the stream is reset.
class ResponseEncoder {
 public:
  virtual ~ResponseEncoder() = default;
  // Sends `100 Continue` (for a request that asked with Expect: 100-continue).
  virtual void encode100Continue() = 0;
  // Sends the head. The encoder sets framing: Content-Length when head.content_length is set,
  // otherwise chunked (HTTP/1.1 client) or close-delimited (HTTP/1.0 client); no body for
  // HEAD requests, 1xx, 204 and 304. For 101, the connection becomes a tunnel after it.
  // Adds `Connection: close` when the connection will close after this response.
  virtual void encodeHeaders(ResponseHead& head, bool end_stream) = 0;
  // Sends body bytes (drained from `data`); `end_stream` ends the response.
  virtual void encodeData(network::Buffer& data, bool end_stream) = 0;
  // The response must be the last on this connection (drain, or the request asked to close).
  virtual void setCloseAfterResponse() = 0;
};

// Receives one request. Implemented by the proxy.
class RequestDecoder {
 public:
  virtual ~RequestDecoder() = default;
  virtual void decodeHeaders(std::unique_ptr<RequestHead> head, bool end_stream) = 0;
  // Body bytes, de-chunked (drain what you take; the codec drains the rest).
  virtual void decodeData(network::Buffer& data, bool end_stream) = 0;
};

// What a server codec asks of the session that owns it.
class ServerCodecCallbacks {
 public:
  virtual ~ServerCodecCallbacks() = default;
  // A request begins. Returns the decoder that receives it; it must stay valid until
  // onStreamComplete() for it.
  virtual RequestDecoder& newStream(ResponseEncoder& encoder) = 0;
  // The response on `encoder` was fully written to the connection's write buffer.
  virtual void onStreamComplete(ResponseEncoder& encoder) = 0;
  // Encoded bytes to send on the connection.
  virtual void writeToConnection(network::Buffer& data, bool end_stream) = 0;
};

// Why parsing stopped for good; the session answers `status` (if no response has started) and
// closes the connection.
struct CodecError {
  int status = 400;
  std::string detail;  // for logs: what was wrong
};

class ServerCodec {
 public:
  virtual ~ServerCodec() = default;
  // Parses what it can of `data`, draining what it consumed. Returns false on a protocol error
  // (see error()); the codec must not be fed again after that.
  virtual bool dispatch(network::Buffer& data) = 0;
  virtual const CodecError& error() const = 0;
  // True while a request has begun (first byte seen) and its response is not complete.
  virtual bool streamActive() const = 0;
  // True between a request's first byte and the end of its header section.
  virtual bool readingHeaders() const = 0;
  // True once the current request (head and body) has been fully received.
  virtual bool requestComplete() const = 0;
  // HTTP/1: after the in-flight response, accept no new request; pipelined requests not yet
  // started are dropped.
  virtual void shutdownAfterCurrent() = 0;
  // True once no further request will be read (an error, `Connection: close`, a tunnel, or
  // shutdownAfterCurrent()) and the last response is complete.
  virtual bool wantsClose() const = 0;
  // After a 101 response the connection is a byte tunnel; the codec is no longer used.
  virtual bool upgraded() const = 0;
  // Frees internal buffers that are empty (an idle tunnel hibernating); made again on use.
  virtual void releaseBuffers() = 0;
};

}  // namespace connwarden::http
