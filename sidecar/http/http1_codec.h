// HTTP/1.1 on llhttp (Debian's node-llhttp sources): the server codec that reads requests from
// clients and writes responses, and the client codec that writes requests to the application
// and reads its responses.
//
// Strictness (RFC 9112): where the RFC lets a recipient repair or reject, we reject, because a
// proxy that repairs can be smuggled through: both Content-Length and Transfer-Encoding, a
// Transfer-Encoding other than a final `chunked`, a bad chunk, conflicting Content-Lengths,
// obs-fold, a missing or repeated Host on HTTP/1.1, bare LF — each is a 400 and the connection
// closes. More than `max_headers` fields or a header section over `max_header_bytes` is a 431.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "sidecar/http/codec.h"

namespace connwarden::http {

struct Http1Limits {
  uint32_t max_header_bytes = 64 * 1024;  // request line + fields
  uint32_t max_headers = 100;
};

class Http1ServerCodec : public ServerCodec, private ResponseEncoder {
 public:
  Http1ServerCodec(ServerCodecCallbacks& callbacks, Http1Limits limits = {});
  ~Http1ServerCodec() override;

  // ServerCodec. dispatch() handles one request at a time: after a request's end it stops
  // (leaving pipelined bytes in `data`) until that request's response is complete; the session
  // then calls dispatch() again with what is left.
  bool dispatch(network::Buffer& data) override;
  const CodecError& error() const override { return error_; }
  bool streamActive() const override;
  bool readingHeaders() const override;
  void shutdownAfterCurrent() override;
  bool wantsClose() const override;
  bool upgraded() const override;
  void releaseBuffers() override;

  // Also: dispatch() will not consume more bytes until the response completes.
  bool requestComplete() const override;

 private:
  struct Impl;
  // ResponseEncoder
  void encode100Continue() override;
  void encodeHeaders(ResponseHead& head, bool end_stream) override;
  void encodeData(network::Buffer& data, bool end_stream) override;
  void setCloseAfterResponse() override;

  std::unique_ptr<Impl> impl_;
  CodecError error_;
};

// Receives one response from the application.
class ResponseDecoder {
 public:
  virtual ~ResponseDecoder() = default;
  // 1xx responses other than 101 are not passed on (we never forward Expect upstream).
  virtual void decodeResponseHeaders(std::unique_ptr<ResponseHead> head, bool end_stream) = 0;
  // Body bytes, de-chunked; drain what you take (the codec drains the rest).
  virtual void decodeResponseData(network::Buffer& data, bool end_stream) = 0;
};

class Http1ClientCodec {
 public:
  explicit Http1ClientCodec(Http1Limits limits = {});
  ~Http1ClientCodec();

  // Starts a request: serializes the request line and `head.headers` as given (the caller has
  // already removed hop-by-hop fields and added forwarding fields), then framing: Content-Length
  // when head.content_length is set, `Transfer-Encoding: chunked` when head.chunked, nothing
  // otherwise. `decoder` receives the response and must outlive it (or call reset()).
  void encodeHeaders(const RequestHead& head, ResponseDecoder& decoder, network::Buffer& out);
  // Body bytes, chunk-encoded if the request is chunked; `end_stream` writes the last chunk.
  void encodeData(network::Buffer& data, bool end_stream, network::Buffer& out);

  // Parses response bytes, draining what it consumed. Returns false if the application sent
  // something that is not HTTP (error() says what); the connection must not be reused then.
  bool dispatch(network::Buffer& data);
  // The application closed the connection: completes a close-delimited body. Returns true if
  // the response ended cleanly, false if it was cut short.
  bool onConnectionClosed();
  const std::string& error() const { return error_; }

  // The last response was complete and the connection may carry another request.
  bool reusable() const;
  bool responseComplete() const;
  bool responseStarted() const;  // any byte of a response arrived
  // The final response's header section has arrived (its body may still be coming).
  bool responseHeadComplete() const;
  // Forgets the decoder (the stream went away); the connection is no longer reusable.
  void reset();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string error_;
};

}  // namespace connwarden::http
