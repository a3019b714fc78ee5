// What the fuzz targets share: a check that fails loudly (the fuzzer keeps the input), a reader
// of the fuzzer's bytes for the choices a target makes besides its main input, and HTTP's
// grammar for tokens and field values.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

// An invariant of the code under test. A failure prints what and where, then aborts: libFuzzer
// and tests/fuzz/fuzz_main.cc both save the input that did it.
#define FUZZ_CHECK(cond, what)                                                              \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: %s\n", __FILE__, __LINE__, #cond, \
                   std::string(what).c_str());                                              \
      std::abort();                                                                         \
    }                                                                                       \
  } while (false)

namespace connwarden::fuzz {

// The fuzzer's bytes: a few leading ones for choices, the rest as the main input.
class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : bytes_(reinterpret_cast<const char*>(data), size) {}
  // The next byte (0 once none is left).
  uint8_t takeByte() {
    if (bytes_.empty()) return 0;
    const uint8_t b = static_cast<uint8_t>(bytes_.front());
    bytes_.remove_prefix(1);
    return b;
  }
  std::string_view rest() const { return bytes_; }

 private:
  std::string_view bytes_;
};

// The size of the reads `total` bytes arrive in, from the low 3 bits of `flags`: all at once,
// or 1, 2, 3, 7, 16, 64 or 512 bytes at a time.
inline size_t readSize(uint8_t flags, size_t total) {
  static constexpr size_t kSizes[] = {0, 1, 2, 3, 7, 16, 64, 512};
  const size_t size = kSizes[flags & 7];
  return size != 0 ? size : std::max<size_t>(total, 1);
}

// RFC 9110 §5.1 and §5.5: a token (a method, a field name) and a field value as we accept one:
// no control bytes but HTAB (obs-text is allowed).
inline bool isToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    const bool alnum = (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
    if (!alnum &&
        std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}
inline bool isFieldValue(std::string_view s) {
  for (unsigned char c : s) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

}  // namespace connwarden::fuzz
