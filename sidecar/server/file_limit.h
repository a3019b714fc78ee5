// Raising the process's limit on open descriptors at start. Every client connection holds one
// descriptor (and one to the application while a request is in flight), and the soft limit a
// process inherits is often 1024, far below what a sidecar in front of 100 000 keep-alive
// connections needs. Like nginx (worker_rlimit_nofile) and HAProxy (from maxconn), connwarden
// raises its soft RLIMIT_NOFILE to the hard limit, which only an operator can change.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"

namespace connwarden::server {

struct FileLimit {
  uint64_t before = 0;  // the soft limit the process started with
  uint64_t now = 0;     // the soft limit in force after the call
};

// Sets the soft RLIMIT_NOFILE to the hard one (to fs.nr_open when the hard limit is unlimited,
// which is the most the kernel grants). Call before threads open descriptors. An error (the
// limit could not be read or set) leaves the limit as it was; the caller decides whether that
// matters.
absl::StatusOr<FileLimit> raiseOpenFileLimit();

}  // namespace connwarden::server
