// Fuzzes the HTTP/1.1 client codec (responses from the application) with what an application
// could answer, over a keep-alive connection that carries request after request, and checks:
//  - every response head handed on is well-formed: token field names, values with no control
//    bytes but HTAB, no framing fields left, never both a length and chunked;
//  - one head per request, at most one end, nothing after an error;
//  - the response forwarded to the client (hop-by-hop fields removed, then Http1ServerCodec's
//    encoder) parses back, in a fresh client codec, to the same status, fields and body;
//  - a connection is reusable only after a complete response.
// The first input byte picks the read size, the request (GET or HEAD, upgrade or not) and
// whether the application closes at the end; the rest is what the application sends.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "sidecar/http/headers.h"
#include "sidecar/http/http1_codec.h"
#include "tests/fuzz/fuzz_check.h"

namespace connwarden::http {
namespace {

using fuzz::isFieldValue;
using fuzz::isToken;

constexpr Http1Limits kLimits;  // the application's responses are read with the defaults

struct Received {
  std::unique_ptr<ResponseHead> head;
  bool end_at_head = false;
  std::string body;
  int ends = 0;
  bool complete() const { return end_at_head || ends > 0; }
};

class Collector : public ResponseDecoder {
 public:
  void decodeResponseHeaders(std::unique_ptr<ResponseHead> head, bool end_stream) override {
    FUZZ_CHECK(got.head == nullptr, "two response heads for one request");
    FUZZ_CHECK(head->status >= 101 && head->status <= 999, std::to_string(head->status));
    FUZZ_CHECK(!(head->content_length && head->chunked), "both a length and chunked");
    for (const HeaderMap::Field& field : head->headers.fields()) {
      FUZZ_CHECK(isToken(field.name), "field name '" + field.name + "'");
      FUZZ_CHECK(isFieldValue(field.value), "value of " + field.name);
      FUZZ_CHECK(!equalsIgnoreCase(field.name, "content-length") &&
                     !equalsIgnoreCase(field.name, "transfer-encoding"),
                 "a framing field was left in the headers");
    }
    got.head = std::move(head);
    got.end_at_head = end_stream;
  }
  void decodeResponseData(network::Buffer& data, bool end_stream) override {
    FUZZ_CHECK(got.head != nullptr && !got.complete(), "body outside a response");
    got.body += data.toString();
    data.drain(data.length());
    if (end_stream) ++got.ends;
  }
  Received got;
};

// A client connection of ours, one request in flight: what its encoder writes is kept.
class Downstream : public ServerCodecCallbacks, public RequestDecoder {
 public:
  RequestDecoder& newStream(ResponseEncoder& encoder) override {
    encoder_ = &encoder;
    return *this;
  }
  void onStreamComplete(ResponseEncoder&) override { encoder_ = nullptr; }
  void writeToConnection(network::Buffer& data, bool) override {
    written += data.toString();
    data.drain(data.length());
  }
  void decodeHeaders(std::unique_ptr<RequestHead>, bool) override {}
  void decodeData(network::Buffer& data, bool) override { data.drain(data.length()); }
  ResponseEncoder* encoder() { return encoder_; }
  std::string written;

 private:
  ResponseEncoder* encoder_ = nullptr;
};

RequestHead makeRequest(bool head_method, bool upgrade) {
  RequestHead request;
  request.method = head_method ? "HEAD" : "GET";
  request.target = "/";
  request.head_method = head_method;
  request.headers.add("Host", "app");
  if (upgrade) {
    request.upgrade = true;
    request.headers.add("Connection", "upgrade");
    request.headers.add("Upgrade", "websocket");
  }
  return request;
}

// Sends `response` on to a client as the proxy does, and parses what the client gets.
void checkForwarded(const RequestHead& request, const Received& response) {
  const int status = response.head->status;
  ResponseHead head = *response.head;
  removeHopByHopHeaders(head.headers, false);

  Downstream downstream;
  Http1ServerCodec server(downstream);
  network::Buffer client_bytes;
  client_bytes.add(std::string(request.method) + " / HTTP/1.1\r\nHost: app\r\n\r\n");
  FUZZ_CHECK(server.dispatch(client_bytes) && downstream.encoder() != nullptr, "no stream");
  downstream.encoder()->encodeHeaders(head, response.end_at_head);
  if (!response.end_at_head && downstream.encoder() != nullptr) {
    network::Buffer body;
    body.add(response.body);
    downstream.encoder()->encodeData(body, true);
  }
  FUZZ_CHECK(downstream.encoder() == nullptr, "the forwarded response did not complete");
  const std::string& sent = downstream.written;

  // Room for the fields the encoder adds (framing, Connection) to a head at the limits.
  Http1ClientCodec client(Http1Limits{kLimits.max_header_bytes + 1024, kLimits.max_headers + 4});
  Collector parsed;
  network::Buffer out, wire;
  client.encodeHeaders(makeRequest(request.head_method, false), parsed, out);
  wire.add(sent);
  FUZZ_CHECK(client.dispatch(wire),
             "what we forward does not parse: " + client.error() + "\n" + sent);
  if (!parsed.got.complete()) client.onConnectionClosed();
  FUZZ_CHECK(parsed.got.head != nullptr && parsed.got.complete(),
             "the forwarded response is cut short:\n" + sent);
  FUZZ_CHECK(parsed.got.head->status == status, "status changed:\n" + sent);
  FUZZ_CHECK(parsed.got.body == response.body, "body changed:\n" + sent);
  size_t matched = 0;
  for (const HeaderMap::Field& field : parsed.got.head->headers.fields()) {
    if (equalsIgnoreCase(field.name, "connection")) continue;  // the encoder's own
    FUZZ_CHECK(matched < head.headers.size(), "a field was added: " + field.name + "\n" + sent);
    const HeaderMap::Field& want = head.headers.fields()[matched++];
    FUZZ_CHECK(field.name == want.name && field.value == want.value,
               "field " + want.name + " changed:\n" + sent);
  }
  FUZZ_CHECK(matched == head.headers.size(), "a field was lost:\n" + sent);
}

}  // namespace
}  // namespace connwarden::http

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace connwarden::http;
  namespace network = connwarden::network;
  connwarden::fuzz::FuzzInput input(data, size);
  const uint8_t flags = input.takeByte();
  const std::string_view bytes = input.rest();
  const size_t step = connwarden::fuzz::readSize(flags, bytes.size());
  const RequestHead request = makeRequest((flags & 8) != 0, (flags & 16) != 0);
  const bool closes_at_end = (flags & 32) != 0;

  Http1ClientCodec client(kLimits);
  auto collector = std::make_unique<Collector>();
  network::Buffer out, wire;
  client.encodeHeaders(request, *collector, out);
  // A complete response: compared, then the next request goes out if the connection allows.
  auto onComplete = [&] {
    checkForwarded(request, collector->got);
    if (!client.reusable()) return false;
    collector = std::make_unique<Collector>();
    client.encodeHeaders(request, *collector, out);
    return true;
  };
  for (size_t at = 0; at < bytes.size(); at += step) {
    wire.add(bytes.substr(at, step));
    for (int rounds = 0;; ++rounds) {
      FUZZ_CHECK(rounds < 100000, "dispatch() makes no progress");
      const size_t before = wire.length();
      if (!client.dispatch(wire)) {
        FUZZ_CHECK(!client.error().empty() && !client.reusable(), "an error without a cause");
        return 0;
      }
      if (collector->got.head != nullptr && collector->got.head->status == 101 && request.upgrade) {
        return 0;  // a tunnel from here on: the bytes are not HTTP
      }
      if (collector->got.complete()) {
        FUZZ_CHECK(client.responseComplete(), "an end the codec does not know of");
        if (!onComplete()) return 0;
      } else {
        FUZZ_CHECK(!client.reusable(), "reusable in the middle of a response");
      }
      if (wire.length() == before) break;
    }
  }
  if (closes_at_end && client.responseStarted() && !collector->got.complete() &&
      client.onConnectionClosed()) {
    FUZZ_CHECK(collector->got.complete(), "a clean close without the response's end");
    checkForwarded(request, collector->got);
  }
  return 0;
}
