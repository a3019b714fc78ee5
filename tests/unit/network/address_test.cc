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

}  // namespace
}  // namespace connwarden::network
