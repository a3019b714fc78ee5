// Header map lookups, list tokens, hop-by-hop removal and reason phrases.
#include "sidecar/http/headers.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace connwarden::http {
namespace {

std::string dump(const HeaderMap& headers) {
  std::string out;
  for (const HeaderMap::Field& field : headers.fields()) {
    out += field.name + ": " + field.value + "\n";
  }
  return out;
}

HeaderMap makeHeaders(const std::vector<std::pair<std::string, std::string>>& fields) {
  HeaderMap headers;
  for (const auto& [name, value] : fields) headers.add(name, value);
  return headers;
}

TEST(HeadersTest, EqualsIgnoreCase) {
  struct Case {
    std::string_view a, b;
    bool equal;
  };
  const Case cases[] = {
      {"Content-Length", "content-length", true},
      {"HOST", "host", true},
      {"", "", true},
      {"host", "hosts", false},
      {"a-b", "a_b", false},
      // Only ASCII letters fold: '@' (0x40) and '`' (0x60) differ by the same bit.
      {"@", "`", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.a) + " vs " + std::string(c.b));
    EXPECT_EQ(equalsIgnoreCase(c.a, c.b), c.equal);
  }
}

TEST(HeadersTest, GetAndRemove) {
  HeaderMap headers = makeHeaders({{"Host", "a"}, {"X-A", "1"}, {"x-a", "2"}, {"Accept", "*/*"}});
  ASSERT_NE(headers.get("x-A"), nullptr);
  EXPECT_EQ(*headers.get("x-A"), "1");  // the first one
  EXPECT_EQ(headers.get("missing"), nullptr);
  EXPECT_EQ(headers.remove("X-a"), 2u);
  EXPECT_EQ(headers.remove("X-a"), 0u);
  EXPECT_EQ(dump(headers), "Host: a\nAccept: */*\n");
}

TEST(HeadersTest, HasToken) {
  struct Case {
    std::string_view value, token;
    bool found;
  };
  const Case cases[] = {
      {"close", "close", true},
      {"Keep-Alive, Upgrade", "upgrade", true},
      {"keep-alive ,\tclose ", "close", true},
      {" , ,close", "close", true},
      {"closed", "close", false},
      {"not-close", "close", false},
      {"", "close", false},
      {"upgrade-insecure", "upgrade", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.value) + " / " + std::string(c.token));
    EXPECT_EQ(hasToken(c.value, c.token), c.found);
  }
}

TEST(HeadersTest, RemoveHopByHopHeaders) {
  struct Case {
    std::string name;
    std::vector<std::pair<std::string, std::string>> in;
    bool keep_upgrade;
    std::string out;
  };
  const Case cases[] = {
      {"fixed fields",
       {{"Host", "a"},
        {"Connection", "keep-alive"},
        {"Keep-Alive", "timeout=5"},
        {"Proxy-Connection", "keep-alive"},
        {"TE", "trailers"},
        {"Trailer", "X"},
        {"Transfer-Encoding", "chunked"},
        {"Upgrade", "websocket"},
        {"Accept", "*/*"}},
       false,
       "Host: a\nAccept: */*\n"},
      {"fields named by Connection, any case, several Connection fields",
       {{"Connection", "close, X-Secret"},
        {"x-secret", "1"},
        {"X-Other", "2"},
        {"CONNECTION", "x-other"},
        {"X-Kept", "3"}},
       false,
       "X-Kept: 3\n"},
      {"Connection cannot remove Host",
       {{"Host", "a"}, {"Connection", "host"}},
       false,
       "Host: a\n"},
      {"websocket handshake forwarded",
       {{"Host", "a"},
        {"Connection", "keep-alive, Upgrade"},
        {"Upgrade", "websocket"},
        {"Sec-WebSocket-Key", "k"},
        {"Keep-Alive", "5"}},
       true,
       "Host: a\nUpgrade: websocket\nSec-WebSocket-Key: k\nConnection: upgrade\n"},
      {"keep_upgrade without an Upgrade field adds no Connection",
       {{"Host", "a"}, {"Connection", "close"}},
       true,
       "Host: a\n"},
      {"nothing to remove", {{"Host", "a"}, {"Accept", "*/*"}}, false, "Host: a\nAccept: */*\n"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    HeaderMap headers = makeHeaders(c.in);
    removeHopByHopHeaders(headers, c.keep_upgrade);
    EXPECT_EQ(dump(headers), c.out);
  }
}

TEST(HeadersTest, PrepareUpstreamRequest) {
  struct Case {
    const char* name;
    std::string target;
    std::vector<std::pair<std::string, std::string>> in;
    bool tls;
    std::string out;
  };
  const Case cases[] = {
      {"forwarding fields added",
       "/",
       {{"Host", "a"}, {"Connection", "close"}},
       false,
       "Host: a\nX-Forwarded-For: 192.0.2.1\nX-Forwarded-Proto: http\n"},
      {"X-Forwarded-For extended, the client's X-Forwarded-Proto replaced",
       "/",
       {{"Host", "a"}, {"X-Forwarded-Proto", "https"}, {"X-Forwarded-For", "10.0.0.1"}},
       true,
       "Host: a\nX-Forwarded-For: 10.0.0.1, 192.0.2.1\nX-Forwarded-Proto: https\n"},
      // HTTP/1.0 requests may come without Host; HTTP/1.1 upstream needs one (RFC 9112 §3.2).
      {"no Host: empty",
       "/old",
       {},
       false,
       "X-Forwarded-For: 192.0.2.1\nX-Forwarded-Proto: http\nHost: \n"},
      {"no Host, absolute form: its authority",
       "http://Example.com:8080/p?q",
       {},
       false,
       "X-Forwarded-For: 192.0.2.1\nX-Forwarded-Proto: http\nHost: Example.com:8080\n"},
      {"no Host, a scheme in the path is no authority",
       "/go?to=http://b",
       {},
       false,
       "X-Forwarded-For: 192.0.2.1\nX-Forwarded-Proto: http\nHost: \n"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    RequestHead head;
    head.target = c.target;
    head.version_minor = c.in.empty() ? 0 : 1;  // only HTTP/1.0 may come without Host
    head.keep_alive = false;
    head.headers = makeHeaders(c.in);
    prepareUpstreamRequest(head, "192.0.2.1", c.tls);
    EXPECT_EQ(dump(head.headers), c.out);
    EXPECT_TRUE(head.keep_alive);
  }
}

TEST(HeadersTest, ReasonPhrase) {
  EXPECT_EQ(reasonPhrase(200), "OK");
  EXPECT_EQ(reasonPhrase(101), "Switching Protocols");
  EXPECT_EQ(reasonPhrase(400), "Bad Request");
  EXPECT_EQ(reasonPhrase(417), "Expectation Failed");
  EXPECT_EQ(reasonPhrase(431), "Request Header Fields Too Large");
  EXPECT_EQ(reasonPhrase(502), "Bad Gateway");
  EXPECT_EQ(reasonPhrase(505), "HTTP Version Not Supported");
  EXPECT_EQ(reasonPhrase(299), "Unknown");
}

}  // namespace
}  // namespace connwarden::http
