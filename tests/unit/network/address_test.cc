#include "sidecar/network/address.h"

#include <gtest/gtest.h>

namespace connwarden::network {
namespace {

TEST(AddressTest, ParsesAndFormats) {
  struct Case {
    const char* input;
    const char* formatted;  // nullptr: must be rejected
  };
  const Case cases[] = {
      {"127.0.0.1:8080", "127.0.0.1:8080"},
      {"0.0.0.0:0", "0.0.0.0:0"},
      {"localhost:81", "127.0.0.1:81"},
      {"[::1]:9090", "[::1]:9090"},
      {"[::]:80", "[::]:80"},
      {"127.0.0.1", nullptr},
      {"127.0.0.1:", nullptr},
      {"127.0.0.1:65536", nullptr},
      {"127.0.0.1:-1", nullptr},
      {"example.com:80", nullptr},
      {"[::1:80", nullptr},
      {"::1:80", nullptr},
      {"", nullptr},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.input);
    auto address = Address::parse(c.input);
    if (c.formatted == nullptr) {
      EXPECT_FALSE(address.ok());
      continue;
    }
    ASSERT_TRUE(address.ok()) << address.status();
    EXPECT_EQ(address->toString(), c.formatted);
  }
}

TEST(CidrTest, MatchesRanges) {
  auto loopback = Cidr::parse("127.0.0.0/8");
  ASSERT_TRUE(loopback.ok()) << loopback.status();
  EXPECT_TRUE(loopback->contains(*Address::parse("127.0.0.1:80")));
  EXPECT_TRUE(loopback->contains(*Address::parse("127.255.1.2:1")));
  EXPECT_FALSE(loopback->contains(*Address::parse("128.0.0.1:80")));
  EXPECT_FALSE(loopback->contains(*Address::parse("[::1]:80")));
  // IPv4 ranges match IPv4-mapped IPv6 peers.
  EXPECT_TRUE(loopback->contains(*Address::parse("[::ffff:127.0.0.9]:80")));
  EXPECT_EQ(loopback->toString(), "127.0.0.0/8");

  auto odd = Cidr::parse("10.1.2.128/25");
  ASSERT_TRUE(odd.ok());
  EXPECT_TRUE(odd->contains(*Address::parse("10.1.2.200:1")));
  EXPECT_FALSE(odd->contains(*Address::parse("10.1.2.127:1")));

  auto host = Cidr::parse("::1");
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(host->toString(), "::1/128");
  EXPECT_TRUE(host->contains(*Address::parse("[::1]:5")));
  EXPECT_FALSE(host->contains(*Address::parse("[::2]:5")));

  auto all = Cidr::parse("0.0.0.0/0");
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->contains(*Address::parse("1.2.3.4:5")));
}

TEST(CidrTest, RejectsMalformedRanges) {
  for (const char* bad : {"", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0/8", "host/8",
                          "10.0.0.0/-1", "10.0.0.0/8x", "1.2.3.4:80"}) {
    EXPECT_FALSE(Cidr::parse(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace connwarden::network
