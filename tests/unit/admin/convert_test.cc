// The admin API's conversions of untrusted input: durations, selectors and page tokens, one row a
// case. Part of admin_tests (it needs the generated admin API, which unit_tests does not link).
#include "sidecar/admin/convert.h"

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace connwarden::admin {
namespace {

TEST(ConvertTest, Durations) {
  struct Case {
    int64_t seconds;
    int32_t nanos;
    int64_t want_ms;        // when valid
    const char* want_error;  // substring, or nullptr when valid
  };
  const Case cases[] = {
      {0, 0, 0, nullptr},
      {1, 500'000'000, 1500, nullptr},
      {0, 999'999, 0, nullptr},  // below a millisecond: rounds down
      {31'536'000, 0, 31'536'000'000, nullptr},
      {31'536'001, 0, 0, "at most 1 year"},
      {-1, 0, 0, "must not be negative"},
      {0, -5, 0, "must not be negative"},
      {1, -5, 0, "not a valid duration"},
      {-1, 5, 0, "not a valid duration"},
      {0, 1'000'000'000, 0, "not a valid duration"},
      {INT64_MAX, 0, 0, "at most 1 year"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << c.seconds << "s " << c.nanos << "ns");
    google::protobuf::Duration d;
    d.set_seconds(c.seconds);
    d.set_nanos(c.nanos);
    auto got = fromProto(d, "selector.min_idle");
    if (c.want_error == nullptr) {
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(got->count(), c.want_ms);
    } else {
      ASSERT_FALSE(got.ok());
      EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(got.status().message().find("selector.min_idle: "), std::string::npos);
      EXPECT_NE(got.status().message().find(c.want_error), std::string::npos)
          << got.status().message();
    }
  }
}

TEST(ConvertTest, Selectors) {
  const KnownNames names{{"api", "default"}, {"web"}};
  struct Case {
    std::function<void(pb::ConnectionSelector&)> set;
    const char* want_error;  // nullptr when valid
  };
  const Case cases[] = {
      {[](auto&) {}, nullptr},
      {[](auto& s) { s.set_state(pb::CONNECTION_STATE_HIBERNATING); }, nullptr},
      {[](auto& s) { s.set_state(static_cast<pb::ConnectionState>(99)); }, "selector.state:"},
      {[](auto& s) { s.set_route("api"); }, nullptr},
      {[](auto& s) { s.set_route("API"); }, "selector.route: no route named \"API\""},
      {[](auto& s) { s.set_listener("web"); }, nullptr},
      {[](auto& s) { s.set_listener("x"); }, "selector.listener:"},
      {[](auto& s) { s.set_peer_cidr("10.0.0.0/8"); }, nullptr},
      {[](auto& s) { s.set_peer_cidr("::1/128"); }, nullptr},
      {[](auto& s) { s.set_peer_cidr("10.0.0.0/33"); }, "selector.peer_cidr:"},
      {[](auto& s) { s.set_peer_cidr("10.0.0.0/"); }, "selector.peer_cidr:"},
      {[](auto& s) { s.set_peer_cidr("example.com"); }, "selector.peer_cidr:"},
      {[](auto& s) { s.mutable_min_age()->set_seconds(-3); }, "selector.min_age:"},
      {[](auto& s) { s.set_min_memory_bytes(UINT64_MAX); }, "selector.min_memory_bytes:"},
      {[](auto& s) { s.set_min_memory_bytes(4096); }, nullptr},
  };
  for (size_t i = 0; i < std::size(cases); ++i) {
    SCOPED_TRACE(i);
    pb::ConnectionSelector selector;
    cases[i].set(selector);
    auto got = fromProto(selector, names, "selector");
    if (cases[i].want_error == nullptr) {
      EXPECT_TRUE(got.ok()) << got.status();
    } else {
      ASSERT_FALSE(got.ok());
      EXPECT_NE(got.status().message().find(cases[i].want_error), std::string::npos)
          << got.status().message();
    }
  }
  pb::ConnectionSelector full;
  full.set_state(pb::CONNECTION_STATE_IDLE);
  full.set_route("api");
  full.mutable_min_idle()->set_seconds(2);
  full.set_min_memory_bytes(100);
  auto converted = fromProto(full, names, "selector");
  ASSERT_TRUE(converted.ok());
  EXPECT_EQ(converted->state, http::SessionState::kIdle);
  EXPECT_EQ(converted->route, "api");
  EXPECT_EQ(converted->idle_at_least, std::chrono::milliseconds(2000));
  EXPECT_EQ(converted->memory_at_least, 100);
  EXPECT_FALSE(converted->listener.has_value());
  EXPECT_FALSE(selectsEverything(full));
  pb::ConnectionSelector all;
  all.set_all(true);
  EXPECT_TRUE(selectsEverything(all));
}

TEST(ConvertTest, PageTokensAreBoundToTheirQuery) {
  pb::ListConnectionsRequest query;
  query.mutable_selector()->set_route("api");
  query.set_sort_by(pb::ListConnectionsRequest::SORT_BY_MEMORY);
  const uint64_t hash = queryHash(query, "instance-a");
  const std::string token = encodePageToken(700, hash);
  auto offset = decodePageToken(token, hash);
  ASSERT_TRUE(offset.ok()) << offset.status();
  EXPECT_EQ(*offset, 700u);

  // The page size and token themselves are not part of the query; `all` is not either.
  pb::ListConnectionsRequest same = query;
  same.set_page_size(5);
  same.set_page_token(token);
  same.mutable_selector()->set_all(true);
  EXPECT_EQ(queryHash(same, "instance-a"), hash);
  pb::ListConnectionsRequest by_id, unspecified;
  by_id.set_sort_by(pb::ListConnectionsRequest::SORT_BY_ID);
  EXPECT_EQ(queryHash(by_id, "x"), queryHash(unspecified, "x"));

  // Anything else that changes makes another query.
  std::vector<std::function<void(pb::ListConnectionsRequest&)>> changes = {
      [](auto& q) { q.mutable_selector()->set_route("default"); },
      [](auto& q) { q.mutable_selector()->set_state(pb::CONNECTION_STATE_IDLE); },
      [](auto& q) { q.set_sort_by(pb::ListConnectionsRequest::SORT_BY_AGE); },
      [](auto& q) { q.set_descending(true); },
  };
  for (size_t i = 0; i < changes.size(); ++i) {
    SCOPED_TRACE(i);
    pb::ListConnectionsRequest other = query;
    changes[i](other);
    auto got = decodePageToken(token, queryHash(other, "instance-a"));
    ASSERT_FALSE(got.ok());
    EXPECT_NE(got.status().message().find("page_token: made for another query"),
              std::string::npos);
  }
  EXPECT_FALSE(decodePageToken(token, queryHash(query, "instance-b")).ok());

  // Malformed tokens.
  for (const std::string& bad :
       {std::string("%%%"), std::string("not a token"), absl::WebSafeBase64Escape("cw1:12"),
        absl::WebSafeBase64Escape("cw2:1:ff"), absl::WebSafeBase64Escape("cw1:x:ff"),
        absl::WebSafeBase64Escape("cw1:1:zz"),
        absl::WebSafeBase64Escape("cw1:99999999999999999999999:ff"),
        absl::WebSafeBase64Escape("cw1:-1:ff")}) {
    SCOPED_TRACE(bad);
    auto got = decodePageToken(bad, hash);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(got.status().message().find("page_token: malformed"), std::string::npos);
  }
}

}  // namespace
}  // namespace connwarden::admin
