// Fuzzes the HTTP/1.1 server codec (requests from clients) with what a client could send, cut
// into reads of varying size, answered in the callbacks or after them, and checks what reaches
// the proxy and what it sends on:
//  - every request head handed on is well-formed: a token method; a target with no whitespace
//    or control bytes; field names that are tokens, values with no control bytes but HTAB; no
//    framing fields left among them; never both a length and chunked;
//  - the request forwarded upstream (prepareUpstreamRequest, then Http1ClientCodec) parses back,
//    in a fresh server codec, to the same method, target, fields, framing and body: what we send
//    on means what we understood, so nobody smuggles a second request through us;
//  - a rejection has a 4xx or 5xx status, and nothing is handed on after it.
// The first input byte picks the read size and the answering; the rest is what the client sends.
#include <cstdint>
#include <functional>
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

void checkHead(const RequestHead& head) {
  FUZZ_CHECK(isToken(head.method), "method '" + head.method + "'");
  FUZZ_CHECK(!head.target.empty(), "empty target");
  for (unsigned char c : head.target) {
    FUZZ_CHECK(c > 0x20 && c != 0x7f, "target '" + head.target + "'");
  }
  FUZZ_CHECK(head.version_minor <= 1, "version");
  FUZZ_CHECK(!(head.content_length && head.chunked), "both a length and chunked");
  for (const HeaderMap::Field& field : head.headers.fields()) {
    FUZZ_CHECK(isToken(field.name), "field name '" + field.name + "'");
    FUZZ_CHECK(isFieldValue(field.value), "value of " + field.name);
    FUZZ_CHECK(!equalsIgnoreCase(field.name, "content-length") &&
                   !equalsIgnoreCase(field.name, "transfer-encoding"),
               "a framing field was left in the headers");
  }
}

// The session and the proxy stream in one, as in the unit tests: records what arrives.
class Recorder : public ServerCodecCallbacks, public RequestDecoder {
 public:
  RequestDecoder& newStream(ResponseEncoder& encoder) override {
    FUZZ_CHECK(encoder_ == nullptr, "a stream began before the previous one completed");
    encoder_ = &encoder;
    head_.reset();
    body_.clear();
    ended_ = responded_ = false;
    ++streams;
    return *this;
  }
  void onStreamComplete(ResponseEncoder& encoder) override {
    FUZZ_CHECK(&encoder == encoder_, "another stream completed");
    encoder_ = nullptr;
    ++completions;
  }
  void writeToConnection(network::Buffer& data, bool end_stream) override {
    data.drain(data.length());
  }
  void decodeHeaders(std::unique_ptr<RequestHead> head, bool end_stream) override {
    FUZZ_CHECK(encoder_ != nullptr && head_ == nullptr, "a head outside a stream, or two");
    head_ = std::move(head);
    onHead(*head_);
    if (end_stream) onEnd();
    if (encoder_ != nullptr && head_->expect_continue && (flags & kSendContinue) != 0) {
      encoder_->encode100Continue();
    }
    if (encoder_ != nullptr && (flags & kAnswerEarly) != 0 && (flags & kAnswerLater) == 0) {
      respond();
    }
  }
  void decodeData(network::Buffer& data, bool end_stream) override {
    FUZZ_CHECK(encoder_ != nullptr && head_ != nullptr && !ended_, "body outside a request");
    body_ += data.toString();
    data.drain(data.length());
    if (end_stream) onEnd();
  }

  // After dispatch() returns: an answer that waits for that (as the proxy's waits for the
  // application).
  void afterDispatch() {
    if (encoder_ != nullptr && !responded_ && (flags & kAnswerLater) != 0 &&
        (ended_ || (flags & kAnswerEarly) != 0) && head_ != nullptr) {
      respond();
    }
  }

  static constexpr uint8_t kAnswerEarly = 1 << 3;  // before the body has come
  static constexpr uint8_t kAnswerLater = 1 << 4;  // after dispatch() returns, not inside it
  static constexpr uint8_t kSendContinue = 1 << 5;
  uint8_t flags = 0;
  int streams = 0;
  int completions = 0;
  std::function<void(const RequestHead&)> on_head;
  std::function<void(const RequestHead&, const std::string&)> on_request;

 private:
  void onHead(const RequestHead& head) {
    if (on_head) on_head(head);
  }
  void onEnd() {
    ended_ = true;
    if (on_request) on_request(*head_, body_);
    if ((flags & kAnswerLater) == 0 && !responded_) respond();
  }
  void respond() {
    responded_ = true;
    ResponseHead head;
    head.status = 200;
    head.content_length = 2;
    encoder_->encodeHeaders(head, false);
    network::Buffer body;
    body.add("ok");
    encoder_->encodeData(body, true);
  }

  ResponseEncoder* encoder_ = nullptr;
  std::unique_ptr<RequestHead> head_;
  std::string body_;
  bool ended_ = false;
  bool responded_ = false;
};

class NoResponse : public ResponseDecoder {
 public:
  void decodeResponseHeaders(std::unique_ptr<ResponseHead>, bool) override {}
  void decodeResponseData(network::Buffer& data, bool) override { data.drain(data.length()); }
};

// Feeds `bytes` to `codec` `step` bytes at a time, dispatching as a session does: again after a
// response completed, until nothing moves. Returns false at an error (checked).
bool feed(Http1ServerCodec& codec, Recorder& recorder, std::string_view bytes, size_t step) {
  network::Buffer data;
  for (size_t at = 0; at < bytes.size(); at += step) {
    data.add(bytes.substr(at, step));
    for (int rounds = 0;; ++rounds) {
      FUZZ_CHECK(rounds < 100000, "dispatch() makes no progress");
      if (codec.upgraded() || codec.wantsClose()) return true;
      const size_t before = data.length();
      const int completions = recorder.completions;
      if (!codec.dispatch(data)) {
        const int status = codec.error().status;
        FUZZ_CHECK(status >= 400 && status <= 599, "rejected with " + std::to_string(status));
        return false;
      }
      recorder.afterDispatch();
      if (data.length() == before && completions == recorder.completions) break;
    }
  }
  return true;
}

// The request the proxy sends upstream for `head` and `body`, parsed by a fresh server codec:
// the same request.
void checkForwarded(const RequestHead& received, const std::string& body) {
  RequestHead head = received;
  prepareUpstreamRequest(head, "192.0.2.1", false);
  Http1ClientCodec client;
  NoResponse responses;
  network::Buffer wire;
  client.encodeHeaders(head, responses, wire);
  if (head.chunked || !body.empty()) {
    network::Buffer data;
    data.add(body);
    client.encodeData(data, true, wire);
  }
  const std::string sent = wire.toString();

  Recorder upstream;
  std::unique_ptr<RequestHead> parsed;
  std::string parsed_body;
  int requests = 0;
  upstream.on_request = [&](const RequestHead& h, const std::string& b) {
    parsed = std::make_unique<RequestHead>(h);
    parsed_body = b;
    ++requests;
  };
  Http1ServerCodec codec(upstream);
  FUZZ_CHECK(feed(codec, upstream, sent, sent.size()),
             "what we forward does not parse: " + codec.error().detail + "\n" + sent);
  FUZZ_CHECK(requests == 1 && upstream.streams == 1,
             "forwarded as " + std::to_string(upstream.streams) + " requests:\n" + sent);
  FUZZ_CHECK(parsed->method == head.method && parsed->target == head.target,
             "start line changed:\n" + sent);
  const auto& want = head.headers.fields();
  const auto& got = parsed->headers.fields();
  FUZZ_CHECK(want.size() == got.size(), "field count changed:\n" + sent);
  for (size_t i = 0; i < want.size(); ++i) {
    FUZZ_CHECK(want[i].name == got[i].name && want[i].value == got[i].value,
               "field " + want[i].name + " changed:\n" + sent);
  }
  FUZZ_CHECK(parsed->content_length == head.content_length && parsed->chunked == head.chunked,
             "framing changed:\n" + sent);
  FUZZ_CHECK(parsed_body == body, "body changed:\n" + sent);
  FUZZ_CHECK(parsed->upgrade == head.upgrade, "upgrade changed:\n" + sent);
  if (!received.host.empty()) FUZZ_CHECK(parsed->host == received.host, "host changed:\n" + sent);
}

}  // namespace
}  // namespace connwarden::http

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace connwarden::http;
  connwarden::fuzz::FuzzInput input(data, size);
  const uint8_t flags = input.takeByte();
  const std::string_view bytes = input.rest();
  const size_t step = connwarden::fuzz::readSize(flags, bytes.size());

  Recorder recorder;
  recorder.flags = flags;
  recorder.on_head = checkHead;
  recorder.on_request = checkForwarded;
  Http1ServerCodec codec(recorder, Http1Limits{4096, 32});
  feed(codec, recorder, bytes, step);
  return 0;
}
