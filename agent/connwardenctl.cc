// connwardenctl: the operator's CLI over the gRPC admin API (connwarden.admin.v1), kubectl-like.
//
//   connwardenctl [global flags] get connections [--state S] [--route R] [--selector SEL]
//                                 [--sort id|memory|age|idle] [--asc|--desc] [--limit N]
//   connwardenctl describe connection ID
//   connwardenctl drain ID... | --selector SEL  [--deadline 30s] [--wait]
//   connwardenctl kill ID... | --selector SEL
//   connwardenctl get policies [ROUTE]
//   connwardenctl set policy ROUTE [--idle-timeout 60s] [--hibernate true] [--hibernate-after 0s]
//                                  [--unset FIELD]... (only the fields given change)
//   connwardenctl reset policy ROUTE
//   connwardenctl watch [--selector SEL] [--count N]
//   connwardenctl top [--limit N] [--interval 2s] [--count N]
//   connwardenctl info
//
// Global flags: --target ADDR (repeatable; "dns:NAME:PORT" means every address NAME resolves to,
// one per pod), --token-file F, --tls, --tls-ca F, --tls-cert F, --tls-key F,
// --tls-server-name N, -o table|wide|json, --timeout D. With several sidecars, results are merged
// and a POD column says which one answered.
//
// Exit codes: 0 everything done; 1 partly done (a sidecar down, an ID not found, a call failed);
// 2 usage (unknown command or flag, malformed selector, CIDR, duration or ID).
#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "connwarden/admin/v1/admin.grpc.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"

namespace {

namespace pb = ::connwarden::admin::v1;
namespace cfg = ::connwarden::config::v1;

constexpr int kExitOk = 0;

// One line of `watch`: time, event, ID, state, route, peer, close reason.
std::string watchLine(const std::string& time, const std::string& event, const std::string& id,
                      const std::string& state, const std::string& route,
                      const std::string& peer, const std::string& reason) {
  return absl::StrFormat("%-24s  %-13s  %6s  %-11s  %-8s  %-21s  %s", time, event, id, state,
                         route, peer, reason);
}
constexpr int kExitPartial = 1;
constexpr int kExitUsage = 2;

constexpr char kUsage[] = R"(connwardenctl: see and steer the connections of connwarden sidecars

Commands:
  get connections [--state S] [--route R] [--selector SEL] [--sort id|memory|age|idle]
                  [--asc|--desc] [--limit N]
  describe connection ID
  drain (ID... | --selector SEL) [--deadline 30s] [--wait]
  kill (ID... | --selector SEL)
  get policies [ROUTE]
  set policy ROUTE [--hibernate true|false] [--hibernate-after D] [--idle-timeout D]
                   [--request-header-timeout D] [--request-timeout D] [--write-timeout D]
                   [--max-connection-age D] [--max-requests N] [--drain-timeout D]
                   [--tunnel-idle-timeout D] [--unset FIELD]...
  reset policy ROUTE
  watch [--selector SEL] [--count N]
  top [--limit N] [--interval D] [--count N]   (refreshes every D until Ctrl-C, or N times)
  info

Selectors: comma-separated terms: state=idle, route=R, listener=L, peer=10.0.0.0/8,
  idle>=30s, age>=1h, memory>=64KiB; or "all" (drain and kill everything).
States: handshake, idle, active, tunnel, draining, hibernating.
Durations: 300ms, 1.5s, 2m, 1h30m.

Global flags:
  --target ADDR      sidecar admin address (repeatable; default 127.0.0.1:9090); unix:/path;
                     dns:NAME:PORT = every address NAME resolves to (one per pod)
  --token-file F     bearer token (first non-comment line of F)
  --tls, --tls-ca F, --tls-cert F, --tls-key F, --tls-server-name NAME
  -o, --output       table (default), wide or json
  --timeout D        per call (default 10s)

Exit codes: 0 ok, 1 partial (a sidecar down, an ID not found), 2 usage.
)";

struct UsageError {
  std::string message;
};

[[noreturn]] void usage(const std::string& message) { throw UsageError{message}; }

// ---- Units ----------------------------------------------------------------------------------------

std::string humanBytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (std::abs(value) >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0) return absl::StrCat(bytes, " B");
  return absl::StrFormat(value < 10 ? "%.1f %s" : "%.0f %s", value, units[unit]);
}

int64_t millisOf(const google::protobuf::Duration& d) {
  return d.seconds() * 1000 + d.nanos() / 1'000'000;
}

std::string humanDuration(int64_t ms) {
  if (ms < 1000) return absl::StrCat(ms, "ms");
  int64_t s = ms / 1000;
  if (s < 60) return ms % 1000 == 0 || s >= 10 ? absl::StrCat(s, "s")
                                               : absl::StrFormat("%.1fs", ms / 1000.0);
  if (s < 3600) return s % 60 ? absl::StrCat(s / 60, "m", s % 60, "s") : absl::StrCat(s / 60, "m");
  if (s < 86400) {
    return (s % 3600) / 60 ? absl::StrCat(s / 3600, "h", (s % 3600) / 60, "m")
                           : absl::StrCat(s / 3600, "h");
  }
  return (s % 86400) / 3600 ? absl::StrCat(s / 86400, "d", (s % 86400) / 3600, "h")
                            : absl::StrCat(s / 86400, "d");
}

std::string humanDuration(const google::protobuf::Duration& d) { return humanDuration(millisOf(d)); }

absl::Duration parseDuration(const std::string& text, const std::string& flag) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d == absl::InfiniteDuration()) {
    usage(absl::StrCat(flag, ": \"", text, "\" is not a duration (e.g. 300ms, 1.5s, 2m, 1h30m)"));
  }
  if (d < absl::ZeroDuration()) usage(absl::StrCat(flag, ": must not be negative"));
  return d;
}

void setDuration(absl::Duration d, google::protobuf::Duration* out) {
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  out->set_seconds(ns / 1'000'000'000);
  out->set_nanos(static_cast<int32_t>(ns % 1'000'000'000));
}

uint64_t parseBytes(const std::string& text, const std::string& flag) {
  static const std::vector<std::pair<std::string, uint64_t>> suffixes = {
      {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"KB", 1000},
      {"MB", 1000'000},    {"GB", 1000'000'000}, {"K", 1ull << 10},  {"M", 1ull << 20},
      {"G", 1ull << 30},   {"B", 1}};
  std::string number = text;
  uint64_t scale = 1;
  for (const auto& [suffix, factor] : suffixes) {
    if (absl::EndsWith(text, suffix)) {
      number = text.substr(0, text.size() - suffix.size());
      scale = factor;
      break;
    }
  }
  double value = 0;
  if (!absl::SimpleAtod(number, &value) || value < 0) {
    usage(absl::StrCat(flag, ": \"", text, "\" is not a size (e.g. 4096, 64KiB, 1.5MiB)"));
  }
  return static_cast<uint64_t>(value * static_cast<double>(scale));
}

const std::map<std::string, pb::ConnectionState>& stateNames() {
  static const auto* names = new std::map<std::string, pb::ConnectionState>{
      {"handshake", pb::CONNECTION_STATE_HANDSHAKE}, {"idle", pb::CONNECTION_STATE_IDLE},
      {"active", pb::CONNECTION_STATE_ACTIVE},       {"tunnel", pb::CONNECTION_STATE_TUNNEL},
      {"draining", pb::CONNECTION_STATE_DRAINING},   {"hibernating", pb::CONNECTION_STATE_HIBERNATING},
  };
  return *names;
}

pb::ConnectionState parseState(const std::string& text, const std::string& flag) {
  auto it = stateNames().find(absl::AsciiStrToLower(text));
  if (it == stateNames().end()) {
    usage(absl::StrCat(flag, ": unknown state \"", text,
                       "\" (handshake, idle, active, tunnel, draining, hibernating)"));
  }
  return it->second;
}

std::string stateName(pb::ConnectionState state) {
  for (const auto& [name, value] : stateNames()) {
    if (value == state) return name;
  }
  return "-";
}

std::string closeReasonName(pb::CloseReason reason) {
  std::string name = pb::CloseReason_Name(reason);
  if (absl::StartsWith(name, "CLOSE_REASON_")) name = name.substr(13);
  return absl::AsciiStrToLower(name);
}

// Checked here so that a typo is a usage error before any call; the server checks again.
void checkCidr(const std::string& text, const std::string& flag) {
  std::string address = text;
  if (size_t slash = text.find('/'); slash != std::string::npos) {
    address = text.substr(0, slash);
    int prefix = -1;
    const int max = address.find(':') != std::string::npos ? 128 : 32;
    if (!absl::SimpleAtoi(text.substr(slash + 1), &prefix) || prefix < 0 || prefix > max) {
      usage(absl::StrCat(flag, ": \"", text, "\" has a bad prefix length (0..", max, ")"));
    }
  }
  addrinfo hints{};
  hints.ai_flags = AI_NUMERICHOST;
  addrinfo* result = nullptr;
  if (getaddrinfo(address.c_str(), nullptr, &hints, &result) != 0) {
    usage(absl::StrCat(flag, ": \"", text, "\" is not an address or CIDR (e.g. 10.0.0.0/8)"));
  }
  freeaddrinfo(result);
}

// "state=idle,route=api,peer=10.0.0.0/8,idle>=30s,age>=1h,memory>=64KiB" or "all".
pb::ConnectionSelector parseSelector(const std::string& text) {
  pb::ConnectionSelector selector;
  if (absl::StripAsciiWhitespace(text).empty()) usage("--selector: empty");
  for (absl::string_view raw : absl::StrSplit(text, ',')) {
    const std::string term(absl::StripAsciiWhitespace(raw));
    if (term == "all") {
      selector.set_all(true);
      continue;
    }
    std::string key, value;
    bool at_least = false;
    if (size_t ge = term.find(">="); ge != std::string::npos) {
      key = term.substr(0, ge);
      value = term.substr(ge + 2);
      at_least = true;
    } else if (size_t eq = term.find('='); eq != std::string::npos) {
      key = term.substr(0, eq);
      value = term.substr(eq + 1);
    } else {
      usage(absl::StrCat("--selector: \"", term,
                         "\" is not key=value or key>=value (state=, route=, listener=, peer=, "
                         "idle>=, age>=, memory>=, all)"));
    }
    const std::string field = absl::StrCat("--selector ", key);
    if (value.empty()) usage(absl::StrCat(field, ": no value"));
    if (!at_least && key == "state") {
      selector.set_state(parseState(value, field));
    } else if (!at_least && key == "route") {
      selector.set_route(value);
    } else if (!at_least && key == "listener") {
      selector.set_listener(value);
    } else if (!at_least && (key == "peer" || key == "cidr")) {
      checkCidr(value, field);
      selector.set_peer_cidr(value);
    } else if (at_least && key == "idle") {
      setDuration(parseDuration(value, field), selector.mutable_min_idle());
    } else if (at_least && key == "age") {
      setDuration(parseDuration(value, field), selector.mutable_min_age());
    } else if (at_least && key == "memory") {
      selector.set_min_memory_bytes(parseBytes(value, field));
    } else {
      usage(absl::StrCat("--selector: unknown term \"", term,
                         "\" (state=, route=, listener=, peer=, idle>=, age>=, memory>=, all)"));
    }
  }
  return selector;
}

uint64_t parseId(const std::string& text) {
  uint64_t id = 0;
  if (!absl::SimpleAtoi(text, &id) || id == 0) {
    usage(absl::StrCat("\"", text, "\" is not a connection ID (a positive integer)"));
  }
  return id;
}

// ---- Arguments ------------------------------------------------------------------------------------

// Flags anywhere on the line (kubectl-like); the rest are positional words.
class Args {
 public:
  Args(int argc, char** argv) {
    static const std::set<std::string> kBool = {"--tls", "--wait", "--asc", "--desc", "--help",
                                                "-h"};
    static const std::set<std::string> kValued = {
        "--target", "--token-file", "--tls-ca", "--tls-cert", "--tls-key", "--tls-server-name",
        "--output", "--timeout", "--selector", "--state", "--route", "--sort", "--limit",
        "--deadline", "--count", "--interval", "--unset", "--hibernate", "--hibernate-after", "--idle-timeout",
        "--request-header-timeout", "--request-timeout", "--write-timeout",
        "--max-connection-age", "--max-requests", "--drain-timeout", "--tunnel-idle-timeout"};
    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg == "--") {
        for (++i; i < argc; ++i) words_.push_back(argv[i]);
        break;
      }
      if (arg.size() > 1 && arg[0] == '-' && !std::isdigit(static_cast<unsigned char>(arg[1]))) {
        std::string name = arg;
        std::optional<std::string> value;
        if (size_t eq = arg.find('='); eq != std::string::npos) {
          name = arg.substr(0, eq);
          value = arg.substr(eq + 1);
        }
        if (name == "-o") name = "--output";
        if (!kBool.count(name) && !kValued.count(name)) usage(absl::StrCat("unknown flag ", name));
        if (kBool.count(name)) {
          flags_[name].push_back(value.value_or("true"));
          continue;
        }
        if (!value) {
          if (i + 1 >= argc) usage(absl::StrCat(name, ": needs a value"));
          value = argv[++i];
        }
        flags_[name].push_back(*value);
      } else {
        words_.push_back(arg);
      }
    }
  }

  const std::vector<std::string>& words() const { return words_; }
  std::optional<std::string> take(const std::string& name) {
    auto it = flags_.find(name);
    if (it == flags_.end()) return std::nullopt;
    if (it->second.size() > 1) usage(absl::StrCat(name, ": given more than once"));
    std::string value = it->second.front();
    flags_.erase(it);
    return value;
  }
  std::vector<std::string> takeAll(const std::string& name) {
    auto it = flags_.find(name);
    if (it == flags_.end()) return {};
    std::vector<std::string> values = std::move(it->second);
    flags_.erase(it);
    return values;
  }
  bool takeBool(const std::string& name) {
    auto value = take(name);
    if (!value) return false;
    if (*value == "true" || *value == "1") return true;
    if (*value == "false" || *value == "0") return false;
    usage(absl::StrCat(name, ": \"", *value, "\" is not true or false"));
  }
  // Every flag must have been taken by the command.
  void done() const {
    if (!flags_.empty()) usage(absl::StrCat("unknown flag ", flags_.begin()->first));
  }

 private:
  std::vector<std::string> words_;
  std::map<std::string, std::vector<std::string>> flags_;
};

// ---- Targets ---------------------------------------------------------------------------------------

struct Target {
  std::string pod;  // as shown in the POD column
  std::unique_ptr<pb::ConnectionAdmin::Stub> stub;
};

struct Options {
  std::string token;
  absl::Duration timeout = absl::Seconds(10);
  std::string output = "table";
  bool multi = false;  // several sidecars: a POD column
};

std::vector<std::string> resolveAll(const std::string& spec) {
  // dns:NAME:PORT
  const std::string rest = spec.substr(4);
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos) usage(absl::StrCat("--target ", spec, ": want dns:NAME:PORT"));
  const std::string host = rest.substr(0, colon);
  const std::string port = rest.substr(colon + 1);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &result); rc != 0) {
    std::cerr << "connwardenctl: --target " << spec << ": " << gai_strerror(rc) << "\n";
    return {};
  }
  std::set<std::string> seen;
  std::vector<std::string> out;
  for (addrinfo* a = result; a != nullptr; a = a->ai_next) {
    char name[NI_MAXHOST];
    if (getnameinfo(a->ai_addr, a->ai_addrlen, name, sizeof(name), nullptr, 0, NI_NUMERICHOST) !=
        0) {
      continue;
    }
    std::string address = a->ai_family == AF_INET6 ? absl::StrCat("[", name, "]:", port)
                                                   : absl::StrCat(name, ":", port);
    if (seen.insert(address).second) out.push_back(address);
  }
  freeaddrinfo(result);
  return out;
}

std::string readFile(const std::string& path, const std::string& flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) usage(absl::StrCat(flag, ": cannot read \"", path, "\""));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// ---- Output ------------------------------------------------------------------------------------------

class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print() const {
    std::vector<size_t> widths;
    for (const auto& row : rows_) {
      widths.resize(std::max(widths.size(), row.size()));
      for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
    }
    for (const auto& row : rows_) {
      std::string line;
      for (size_t i = 0; i < row.size(); ++i) {
        line += row[i];
        if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
      }
      std::cout << line << "\n";
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

std::string toJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

void printJsonItems(const std::vector<std::pair<std::string, std::string>>& items,
                    const char* key) {
  std::cout << "{\"items\": [";
  for (size_t i = 0; i < items.size(); ++i) {
    std::cout << (i ? ",\n  " : "\n  ") << "{\"pod\": \"" << items[i].first << "\", \"" << key
              << "\": " << items[i].second << "}";
  }
  std::cout << (items.empty() ? "]}\n" : "\n]}\n");
}

// ---- Calls ---------------------------------------------------------------------------------------------

class Ctl {
 public:
  Ctl(Options options, std::vector<Target> targets)
      : options_(std::move(options)), targets_(std::move(targets)) {}

  std::unique_ptr<grpc::ClientContext> context() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
    if (!options_.token.empty()) ctx->AddMetadata("authorization", "Bearer " + options_.token);
    return ctx;
  }
  // Reports a failed call; INVALID_ARGUMENT is the caller's mistake (exit 2), the rest partial.
  void failed(const Target& target, const grpc::Status& status) {
    std::cerr << "connwardenctl: " << target.pod << ": " << codeName(status.error_code()) << ": "
              << status.error_message() << "\n";
    exit_ = std::max(exit_, status.error_code() == grpc::StatusCode::INVALID_ARGUMENT
                                ? kExitUsage
                                : kExitPartial);
  }
  static std::string codeName(grpc::StatusCode code) {
    switch (code) {
      case grpc::StatusCode::NOT_FOUND: return "not found";
      case grpc::StatusCode::INVALID_ARGUMENT: return "invalid argument";
      case grpc::StatusCode::UNAUTHENTICATED: return "unauthenticated";
      case grpc::StatusCode::PERMISSION_DENIED: return "permission denied";
      case grpc::StatusCode::DEADLINE_EXCEEDED: return "deadline exceeded";
      case grpc::StatusCode::UNAVAILABLE: return "unavailable (is the sidecar up?)";
      case grpc::StatusCode::RESOURCE_EXHAUSTED: return "resource exhausted";
      default: return absl::StrCat("error ", static_cast<int>(code));
    }
  }
  int exitCode() const { return exit_; }
  bool wide() const { return options_.output == "wide"; }
  bool json() const { return options_.output == "json"; }

  struct Listed {
    std::string pod;
    pb::Connection connection;
  };

  // Every page, from every target (at most `limit` from each when limit > 0).
  std::vector<Listed> listConnections(const pb::ListConnectionsRequest& base, size_t limit) {
    std::vector<Listed> out;
    for (Target& target : targets_) {
      pb::ListConnectionsRequest request = base;
      size_t got = 0;
      for (;;) {
        request.set_page_size(limit > 0 ? static_cast<uint32_t>(std::min<size_t>(limit - got, 1000))
                                        : 1000);
        pb::ListConnectionsResponse response;
        auto ctx = context();
        grpc::Status status = target.stub->ListConnections(ctx.get(), request, &response);
        if (!status.ok()) {
          failed(target, status);
          break;
        }
        for (const auto& c : response.connections()) out.push_back({target.pod, c});
        got += response.connections_size();
        if (response.next_page_token().empty() || (limit > 0 && got >= limit)) break;
        request.set_page_token(response.next_page_token());
      }
    }
    return out;
  }

  void printConnections(std::vector<Listed> list, pb::ListConnectionsRequest::SortBy sort,
                        bool descending, size_t limit) {
    auto key = [sort](const Listed& l) -> int64_t {
      switch (sort) {
        case pb::ListConnectionsRequest::SORT_BY_MEMORY: return l.connection.memory().total_bytes();
        case pb::ListConnectionsRequest::SORT_BY_AGE: return millisOf(l.connection.age());
        case pb::ListConnectionsRequest::SORT_BY_IDLE: return millisOf(l.connection.idle());
        default: return static_cast<int64_t>(l.connection.id());
      }
    };
    std::stable_sort(list.begin(), list.end(), [&](const Listed& a, const Listed& b) {
      return descending ? key(a) > key(b) : key(a) < key(b);
    });
    if (limit > 0 && list.size() > limit) list.resize(limit);
    if (json()) {
      std::vector<std::pair<std::string, std::string>> items;
      for (const Listed& l : list) items.push_back({l.pod, toJson(l.connection)});
      printJsonItems(items, "connection");
      return;
    }
    std::vector<std::string> header;
    if (options_.multi) header.push_back("POD");
    for (const char* h : {"ID", "STATE", "ROUTE", "PEER", "AGE", "IDLE", "REQS", "MEMORY"}) {
      header.push_back(h);
    }
    if (wide()) {
      for (const char* h : {"LISTENER", "WORKER", "TLS", "IN", "OUT", "BUFFERS", "TLS-MEM",
                            "PEAK"}) {
        header.push_back(h);
      }
    }
    Table table(header);
    for (const Listed& l : list) {
      const pb::Connection& c = l.connection;
      std::vector<std::string> row;
      if (options_.multi) row.push_back(l.pod);
      row.insert(row.end(), {absl::StrCat(c.id()), stateName(c.state()),
                             c.route().empty() ? "-" : c.route(), c.peer_address(),
                             humanDuration(c.age()), humanDuration(c.idle()),
                             absl::StrCat(c.requests()), humanBytes(c.memory().total_bytes())});
      if (wide()) {
        row.insert(row.end(), {c.listener(), absl::StrCat(c.worker()),
                               c.tls() ? (c.tls_version().empty() ? "yes" : c.tls_version()) : "-",
                               humanBytes(static_cast<int64_t>(c.bytes_in())),
                               humanBytes(static_cast<int64_t>(c.bytes_out())),
                               humanBytes(c.memory().buffer_bytes()),
                               humanBytes(c.memory().tls_bytes()),
                               humanBytes(c.memory().peak_bytes())});
      }
      table.add(std::move(row));
    }
    if (list.empty()) {
      std::cerr << "No connections.\n";
    } else {
      table.print();
    }
  }

  int getConnections(Args& args) {
    pb::ListConnectionsRequest request;
    if (auto sel = args.take("--selector")) *request.mutable_selector() = parseSelector(*sel);
    if (auto state = args.take("--state")) {
      request.mutable_selector()->set_state(parseState(*state, "--state"));
    }
    if (auto route = args.take("--route")) request.mutable_selector()->set_route(*route);
    pb::ListConnectionsRequest::SortBy sort = pb::ListConnectionsRequest::SORT_BY_ID;
    bool descending = false;
    if (auto by = args.take("--sort")) {
      static const std::map<std::string, pb::ListConnectionsRequest::SortBy> kSorts = {
          {"id", pb::ListConnectionsRequest::SORT_BY_ID},
          {"memory", pb::ListConnectionsRequest::SORT_BY_MEMORY},
          {"age", pb::ListConnectionsRequest::SORT_BY_AGE},
          {"idle", pb::ListConnectionsRequest::SORT_BY_IDLE}};
      auto it = kSorts.find(*by);
      if (it == kSorts.end()) usage(absl::StrCat("--sort: \"", *by, "\" is not id, memory, age or idle"));
      sort = it->second;
      descending = sort != pb::ListConnectionsRequest::SORT_BY_ID;  // largest first
    }
    if (args.takeBool("--asc")) descending = false;
    if (args.takeBool("--desc")) descending = true;
    size_t limit = 0;
    if (auto l = args.take("--limit")) {
      if (!absl::SimpleAtoi(*l, &limit) || limit == 0) usage("--limit: a positive integer");
    }
    args.done();
    request.set_sort_by(sort);
    request.set_descending(descending);
    printConnections(listConnections(request, limit), sort, descending, limit);
    return exit_;
  }

  // A live view sorted by memory: on a terminal each frame replaces the last; otherwise (a
  // pipe, -o json) frames follow each other. Until Ctrl-C, or --count frames.
  int top(Args& args) {
    size_t limit = 20;
    if (auto l = args.take("--limit")) {
      if (!absl::SimpleAtoi(*l, &limit) || limit == 0) usage("--limit: a positive integer");
    }
    absl::Duration interval = absl::Seconds(2);
    if (auto d = args.take("--interval")) {
      interval = parseDuration(*d, "--interval");
      if (interval < absl::Milliseconds(100)) usage("--interval: at least 100ms");
    }
    size_t count = 0;  // 0: until interrupted
    if (auto n = args.take("--count")) {
      if (!absl::SimpleAtoi(*n, &count) || count == 0) usage("--count: a positive integer");
    }
    args.done();
    const bool redraw = !json() && isatty(STDOUT_FILENO);
    for (size_t frame = 1;; ++frame) {
      if (redraw) std::cout << "\033[H\033[2J";  // home, clear: the frame replaces the last
      topFrame(limit);
      std::cout.flush();
      if (count != 0 && frame >= count) break;
      absl::SleepFor(interval);
    }
    return exit_;
  }

  void topFrame(size_t limit) {
    pb::ListConnectionsRequest request;
    request.set_sort_by(pb::ListConnectionsRequest::SORT_BY_MEMORY);
    request.set_descending(true);
    if (!json()) {
      int64_t total = 0;
      uint64_t count = 0;
      for (Target& target : targets_) {
        pb::ServerInfo info;
        auto ctx = context();
        if (grpc::Status s = target.stub->GetServerInfo(ctx.get(), {}, &info); s.ok()) {
          total += info.memory().total_bytes();
          count += info.connections();
        }
      }
      std::cout << count << " connections, " << humanBytes(total) << " held; top " << limit
                << " by memory:\n";
    }
    printConnections(listConnections(request, limit), request.sort_by(), true, limit);
  }

  int describe(const std::vector<std::string>& ids, Args& args) {
    args.done();
    if (ids.size() != 1) usage("describe connection: give one connection ID");
    const uint64_t id = parseId(ids[0]);
    size_t found = 0;
    for (Target& target : targets_) {
      pb::GetConnectionRequest request;
      request.set_id(id);
      pb::Connection c;
      auto ctx = context();
      grpc::Status status = target.stub->GetConnection(ctx.get(), request, &c);
      if (status.error_code() == grpc::StatusCode::NOT_FOUND && targets_.size() > 1) continue;
      if (!status.ok()) {
        failed(target, status);
        continue;
      }
      ++found;
      if (json()) {
        std::cout << toJson(c) << "\n";
        continue;
      }
      auto line = [](const std::string& key, const std::string& value) {
        std::cout << absl::StrFormat("%-15s %s\n", key + ":", value);
      };
      if (options_.multi) line("Pod", target.pod);
      line("ID", absl::StrCat(c.id()));
      line("State", stateName(c.state()));
      line("Route", c.route().empty() ? "-" : c.route());
      line("Listener", c.listener());
      line("Worker", absl::StrCat(c.worker()));
      line("Peer", c.peer_address());
      line("Local", c.local_address());
      line("Protocol", c.protocol());
      if (c.tls()) {
        line("TLS", absl::StrCat(c.tls_version(), c.alpn().empty() ? "" : " alpn=" + c.alpn(),
                                 c.sni().empty() ? "" : " sni=" + c.sni()));
      }
      line("Age", humanDuration(c.age()));
      line("Idle", humanDuration(c.idle()));
      line("Requests", absl::StrCat(c.requests()));
      line("Bytes in/out", absl::StrCat(humanBytes(static_cast<int64_t>(c.bytes_in())), " / ",
                                        humanBytes(static_cast<int64_t>(c.bytes_out()))));
      const pb::MemoryUsage& m = c.memory();
      line("Memory", absl::StrCat(humanBytes(m.total_bytes()), " (buffers ",
                                  humanBytes(m.buffer_bytes()), ", tls ", humanBytes(m.tls_bytes()),
                                  ", codec ", humanBytes(m.codec_bytes()), ", other ",
                                  humanBytes(m.other_bytes()), "; peak ",
                                  humanBytes(m.peak_bytes()), ")"));
    }
    if (found == 0 && exit_ == kExitOk) {
      std::cerr << "connwardenctl: connection " << id << ": not found\n";
      exit_ = kExitPartial;
    }
    return exit_;
  }

  // drain or kill.
  int command(bool kill, const std::vector<std::string>& words, Args& args) {
    std::optional<pb::ConnectionSelector> selector;
    if (auto sel = args.take("--selector")) selector = parseSelector(*sel);
    std::optional<absl::Duration> deadline;
    bool wait = false;
    if (!kill) {
      if (auto d = args.take("--deadline")) deadline = parseDuration(*d, "--deadline");
      wait = args.takeBool("--wait");
    }
    args.done();
    std::vector<uint64_t> ids;
    for (const std::string& word : words) ids.push_back(parseId(word));
    if (selector && !ids.empty()) usage("give connection IDs or --selector, not both");
    if (!selector && ids.empty()) usage("give connection IDs or --selector (\"all\" for every connection)");
    if (selector && !selector->all() && selector->ByteSizeLong() == 0) usage("--selector: empty");

    std::vector<std::pair<std::string, pb::CommandResult>> results;
    std::set<uint64_t> found_ids;
    std::vector<Target*> draining_on;
    for (Target& target : targets_) {
      pb::CommandResponse response;
      auto ctx = context();
      grpc::Status status;
      if (kill) {
        pb::KillConnectionsRequest request;
        for (uint64_t id : ids) request.add_ids(id);
        if (selector) *request.mutable_selector() = *selector;
        status = target.stub->KillConnections(ctx.get(), request, &response);
      } else {
        pb::DrainConnectionsRequest request;
        for (uint64_t id : ids) request.add_ids(id);
        if (selector) *request.mutable_selector() = *selector;
        if (deadline) setDuration(*deadline, request.mutable_deadline());
        status = target.stub->DrainConnections(ctx.get(), request, &response);
      }
      // With several sidecars an ID lives on one of them: NOT_FOUND elsewhere is expected.
      if (status.error_code() == grpc::StatusCode::NOT_FOUND && !ids.empty()) continue;
      if (!status.ok()) {
        failed(target, status);
        continue;
      }
      for (const auto& r : response.results()) {
        if (r.outcome() != pb::CommandResult::OUTCOME_NOT_FOUND) found_ids.insert(r.id());
        results.push_back({target.pod, r});
      }
      if (response.draining() > 0) draining_on.push_back(&target);
    }
    // IDs found nowhere.
    for (uint64_t id : ids) {
      if (!found_ids.count(id)) {
        std::cerr << "connwardenctl: connection " << id << ": not found\n";
        exit_ = std::max(exit_, kExitPartial);
      }
    }
    if (json()) {
      std::vector<std::pair<std::string, std::string>> items;
      for (const auto& [pod, r] : results) {
        if (r.outcome() != pb::CommandResult::OUTCOME_NOT_FOUND) items.push_back({pod, toJson(r)});
      }
      printJsonItems(items, "result");
    } else {
      for (const auto& [pod, r] : results) {
        if (r.outcome() == pb::CommandResult::OUTCOME_NOT_FOUND) continue;
        std::cout << (options_.multi ? pod + " " : "") << "connection " << r.id() << " ("
                  << stateName(r.state_before()) << "): "
                  << (r.outcome() == pb::CommandResult::OUTCOME_CLOSED ? "closed" : "draining")
                  << "\n";
      }
      if (selector && results.empty()) std::cout << "No connection matched.\n";
    }
    if (wait && !draining_on.empty()) waitForDrained(results, deadline);
    return exit_;
  }

  // Polls until every draining connection is gone (the deadline plus a margin at most).
  void waitForDrained(const std::vector<std::pair<std::string, pb::CommandResult>>& results,
                      std::optional<absl::Duration> deadline) {
    const absl::Time until = absl::Now() + deadline.value_or(absl::Seconds(30)) + absl::Seconds(5);
    std::vector<std::pair<Target*, uint64_t>> pending;
    for (const auto& [pod, r] : results) {
      if (r.outcome() != pb::CommandResult::OUTCOME_DRAINING) continue;
      for (Target& t : targets_) {
        if (t.pod == pod) pending.push_back({&t, r.id()});
      }
    }
    while (!pending.empty() && absl::Now() < until) {
      std::vector<std::pair<Target*, uint64_t>> still;
      for (auto& [target, id] : pending) {
        pb::GetConnectionRequest request;
        request.set_id(id);
        pb::Connection c;
        auto ctx = context();
        grpc::Status status = target->stub->GetConnection(ctx.get(), request, &c);
        if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
          if (!json()) std::cout << "connection " << id << ": closed\n";
        } else {
          still.push_back({target, id});
        }
      }
      pending = std::move(still);
      if (!pending.empty()) absl::SleepFor(absl::Milliseconds(100));
    }
    if (!pending.empty()) {
      std::cerr << "connwardenctl: " << pending.size() << " connection(s) still open\n";
      exit_ = std::max(exit_, kExitPartial);
    }
  }

  void printPolicy(const std::string& pod, const pb::RoutePolicyEntry& e, Table& table) {
    const cfg::RoutePolicy& p = e.effective();
    auto d = [](bool has, const google::protobuf::Duration& v) {
      return has ? humanDuration(v) : std::string("-");
    };
    std::string hibernate = "-";
    if (p.has_hibernate() && p.hibernate().has_enabled()) {
      hibernate = p.hibernate().enabled()
                      ? absl::StrCat("after ", p.hibernate().has_after()
                                                   ? humanDuration(p.hibernate().after())
                                                   : "0s")
                      : "off";
    }
    std::vector<std::string> row;
    if (options_.multi) row.push_back(pod);
    row.insert(row.end(), {e.route(), e.has_override() ? "override" : "config", hibernate,
                           d(p.has_idle_timeout(), p.idle_timeout()),
                           d(p.has_request_timeout(), p.request_timeout()),
                           d(p.has_drain_timeout(), p.drain_timeout())});
    if (wide()) {
      row.insert(row.end(),
                 {d(p.has_request_header_timeout(), p.request_header_timeout()),
                  d(p.has_write_timeout(), p.write_timeout()),
                  d(p.has_max_connection_age(), p.max_connection_age()),
                  p.has_max_requests_per_connection() ? absl::StrCat(p.max_requests_per_connection())
                                                      : "-",
                  d(p.has_tunnel_idle_timeout(), p.tunnel_idle_timeout())});
    }
    table.add(row);
  }

  Table policyTable() {
    std::vector<std::string> header;
    if (options_.multi) header.push_back("POD");
    for (const char* h : {"ROUTE", "SOURCE", "HIBERNATE", "IDLE", "REQUEST", "DRAIN"}) {
      header.push_back(h);
    }
    if (wide()) {
      for (const char* h : {"HEADER", "WRITE", "MAX-AGE", "MAX-REQS", "TUNNEL-IDLE"}) {
        header.push_back(h);
      }
    }
    return Table(header);
  }

  int getPolicies(const std::vector<std::string>& words, Args& args) {
    args.done();
    if (words.size() > 1) usage("get policies: at most one ROUTE");
    Table table = policyTable();
    std::vector<std::pair<std::string, std::string>> items;
    for (Target& target : targets_) {
      pb::ListRoutePoliciesRequest request;
      if (!words.empty()) request.set_route(words[0]);
      pb::ListRoutePoliciesResponse response;
      auto ctx = context();
      grpc::Status status = target.stub->ListRoutePolicies(ctx.get(), request, &response);
      if (!status.ok()) {
        failed(target, status);
        continue;
      }
      for (const auto& e : response.policies()) {
        printPolicy(target.pod, e, table);
        items.push_back({target.pod, toJson(e)});
      }
    }
    if (json()) {
      printJsonItems(items, "policy");
    } else {
      table.print();
    }
    return exit_;
  }

  int setPolicy(const std::vector<std::string>& words, Args& args) {
    if (words.size() != 1) usage("set policy: give one ROUTE");
    pb::SetRoutePolicyRequest request;
    request.set_route(words[0]);
    cfg::RoutePolicy* p = request.mutable_policy();
    auto mask = request.mutable_update_mask();
    struct DurationFlag {
      const char* flag;
      const char* path;
      google::protobuf::Duration* (*field)(cfg::RoutePolicy*);
    };
    const DurationFlag durations[] = {
        {"--hibernate-after", "hibernate.after",
         [](cfg::RoutePolicy* p) { return p->mutable_hibernate()->mutable_after(); }},
        {"--idle-timeout", "idle_timeout", [](cfg::RoutePolicy* p) { return p->mutable_idle_timeout(); }},
        {"--request-header-timeout", "request_header_timeout",
         [](cfg::RoutePolicy* p) { return p->mutable_request_header_timeout(); }},
        {"--request-timeout", "request_timeout",
         [](cfg::RoutePolicy* p) { return p->mutable_request_timeout(); }},
        {"--write-timeout", "write_timeout",
         [](cfg::RoutePolicy* p) { return p->mutable_write_timeout(); }},
        {"--max-connection-age", "max_connection_age",
         [](cfg::RoutePolicy* p) { return p->mutable_max_connection_age(); }},
        {"--drain-timeout", "drain_timeout",
         [](cfg::RoutePolicy* p) { return p->mutable_drain_timeout(); }},
        {"--tunnel-idle-timeout", "tunnel_idle_timeout",
         [](cfg::RoutePolicy* p) { return p->mutable_tunnel_idle_timeout(); }},
    };
    for (const DurationFlag& f : durations) {
      if (auto value = args.take(f.flag)) {
        setDuration(parseDuration(*value, f.flag), f.field(p));
        mask->add_paths(f.path);
      }
    }
    if (auto h = args.take("--hibernate")) {
      if (*h != "true" && *h != "false") usage("--hibernate: true or false");
      p->mutable_hibernate()->set_enabled(*h == "true");
      mask->add_paths("hibernate.enabled");
    }
    if (auto n = args.take("--max-requests")) {
      uint32_t value = 0;
      if (!absl::SimpleAtoi(*n, &value)) usage("--max-requests: a non-negative integer");
      p->set_max_requests_per_connection(value);
      mask->add_paths("max_requests_per_connection");
    }
    for (const std::string& field : args.takeAll("--unset")) mask->add_paths(field);
    args.done();
    if (mask->paths().empty()) usage("set policy: give at least one field to change");
    return applyPolicy(request);
  }

  int applyPolicy(const pb::SetRoutePolicyRequest& request) {
    Table table = policyTable();
    std::vector<std::pair<std::string, std::string>> items;
    for (Target& target : targets_) {
      pb::RoutePolicyEntry entry;
      auto ctx = context();
      grpc::Status status = target.stub->SetRoutePolicy(ctx.get(), request, &entry);
      if (!status.ok()) {
        failed(target, status);
        continue;
      }
      printPolicy(target.pod, entry, table);
      items.push_back({target.pod, toJson(entry)});
    }
    if (json()) {
      printJsonItems(items, "policy");
    } else if (!items.empty()) {
      table.print();
    }
    return exit_;
  }

  int resetPolicy(const std::vector<std::string>& words, Args& args) {
    args.done();
    if (words.size() != 1) usage("reset policy: give one ROUTE");
    Table table = policyTable();
    std::vector<std::pair<std::string, std::string>> items;
    for (Target& target : targets_) {
      pb::ResetRoutePolicyRequest request;
      request.set_route(words[0]);
      pb::RoutePolicyEntry entry;
      auto ctx = context();
      grpc::Status status = target.stub->ResetRoutePolicy(ctx.get(), request, &entry);
      if (!status.ok()) {
        failed(target, status);
        continue;
      }
      printPolicy(target.pod, entry, table);
      items.push_back({target.pod, toJson(entry)});
    }
    if (json()) {
      printJsonItems(items, "policy");
    } else if (!items.empty()) {
      table.print();
    }
    return exit_;
  }

  int info(Args& args) {
    args.done();
    std::vector<std::string> header;
    if (options_.multi) header.push_back("POD");
    for (const char* h : {"VERSION", "INSTANCE", "UPTIME", "WORKERS", "CONNECTIONS", "MEMORY"}) {
      header.push_back(h);
    }
    if (wide()) {
      for (const char* h : {"OPENED", "BY-STATE", "LISTENERS"}) header.push_back(h);
    }
    Table table(header);
    std::vector<std::pair<std::string, std::string>> items;
    for (Target& target : targets_) {
      pb::ServerInfo info;
      auto ctx = context();
      grpc::Status status = target.stub->GetServerInfo(ctx.get(), {}, &info);
      if (!status.ok()) {
        failed(target, status);
        continue;
      }
      items.push_back({target.pod, toJson(info)});
      std::vector<std::string> row;
      if (options_.multi) row.push_back(target.pod);
      row.insert(row.end(), {info.version(), info.instance_id(), humanDuration(info.uptime()),
                             absl::StrCat(info.workers()), absl::StrCat(info.connections()),
                             humanBytes(info.memory().total_bytes())});
      if (wide()) {
        std::vector<std::string> states, listeners;
        for (const auto& s : info.connections_by_state()) {
          if (s.count() > 0) states.push_back(absl::StrCat(stateName(s.state()), "=", s.count()));
        }
        for (const auto& l : info.listeners()) {
          listeners.push_back(absl::StrCat(l.name(), "=", l.address(), l.tls() ? "(tls)" : ""));
        }
        row.insert(row.end(), {absl::StrCat(info.connections_opened()),
                               states.empty() ? "-" : absl::StrJoin(states, ","),
                               absl::StrJoin(listeners, ",")});
      }
      table.add(row);
    }
    if (json()) {
      printJsonItems(items, "info");
    } else if (!items.empty()) {
      table.print();
    }
    return exit_;
  }

  int watch(Args& args) {
    pb::WatchConnectionsRequest request;
    if (auto sel = args.take("--selector")) *request.mutable_selector() = parseSelector(*sel);
    size_t count = 0;
    if (auto n = args.take("--count")) {
      if (!absl::SimpleAtoi(*n, &count) || count == 0) usage("--count: a positive integer");
    }
    args.done();
    std::mutex out_mutex;
    std::atomic<size_t> printed{0};
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
    for (size_t i = 0; i < targets_.size(); ++i) {
      contexts.push_back(std::make_unique<grpc::ClientContext>());
      if (!options_.token.empty()) {
        contexts.back()->AddMetadata("authorization", "Bearer " + options_.token);
      }
    }
    if (!json()) {
      std::cout << (options_.multi ? "POD  " : "")
                << watchLine("TIME", "EVENT", "ID", "STATE", "ROUTE", "PEER",
                                   "REASON")
                << "\n";
      std::cout.flush();
    }
    auto cancel_all = [&] {
      for (auto& ctx : contexts) ctx->TryCancel();
    };
    std::vector<std::thread> threads;
    std::mutex status_mutex;
    for (size_t i = 0; i < targets_.size(); ++i) {
      threads.emplace_back([&, i] {
        Target& target = targets_[i];
        auto reader = target.stub->WatchConnections(contexts[i].get(), request);
        pb::ConnectionEvent event;
        while (reader->Read(&event)) {
          std::lock_guard<std::mutex> lock(out_mutex);
          if (count > 0 && printed >= count) break;
          if (json()) {
            std::cout << "{\"pod\": \"" << target.pod << "\", \"event\": " << toJson(event)
                      << "}\n";
          } else {
            const pb::Connection& c = event.connection();
            std::string kind = pb::ConnectionEvent::Kind_Name(event.kind()).substr(5);
            const std::string time = absl::FormatTime(
                "%Y-%m-%dT%H:%M:%E3SZ",
                absl::FromUnixSeconds(event.time().seconds()) +
                    absl::Nanoseconds(event.time().nanos()),
                absl::UTCTimeZone());
            std::cout << (options_.multi ? target.pod + "  " : "")
                      << watchLine(
                             time, absl::AsciiStrToLower(kind), absl::StrCat(c.id()),
                             stateName(c.state()), c.route().empty() ? "-" : c.route(),
                             c.peer_address().empty() ? "-" : c.peer_address(),
                             event.kind() == pb::ConnectionEvent::KIND_CLOSED
                                 ? closeReasonName(c.close_reason())
                                 : "-")
                      << "\n";
          }
          std::cout.flush();
          if (count > 0 && ++printed >= count) {
            cancel_all();
            break;
          }
        }
        grpc::Status status = reader->Finish();
        if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
          std::lock_guard<std::mutex> lock(status_mutex);
          failed(target, status);
        }
      });
    }
    for (auto& t : threads) t.join();
    return exit_;
  }

 private:
  Options options_;
  std::vector<Target> targets_;
  int exit_ = kExitOk;
};

int run(int argc, char** argv) {
  Args args(argc, argv);
  if (args.takeBool("--help") || args.takeBool("-h") || args.words().empty()) {
    std::cout << kUsage;
    return args.words().empty() ? kExitUsage : kExitOk;
  }
  Options options;
  if (auto output = args.take("--output")) {
    if (*output != "table" && *output != "wide" && *output != "json") {
      usage(absl::StrCat("-o: \"", *output, "\" is not table, wide or json"));
    }
    options.output = *output;
  }
  if (auto timeout = args.take("--timeout")) options.timeout = parseDuration(*timeout, "--timeout");
  if (auto file = args.take("--token-file")) {
    for (absl::string_view line : absl::StrSplit(readFile(*file, "--token-file"), '\n')) {
      line = absl::StripAsciiWhitespace(line);
      if (!line.empty() && line[0] != '#') {
        options.token = std::string(line);
        break;
      }
    }
    if (options.token.empty()) usage(absl::StrCat("--token-file: no token in \"", *file, "\""));
  }
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments channel_args;
  const bool tls = args.takeBool("--tls");
  auto ca = args.take("--tls-ca");
  auto cert = args.take("--tls-cert");
  auto key = args.take("--tls-key");
  auto server_name = args.take("--tls-server-name");
  if (tls || ca || cert || key) {
    grpc::SslCredentialsOptions ssl;
    if (ca) ssl.pem_root_certs = readFile(*ca, "--tls-ca");
    if (cert.has_value() != key.has_value()) usage("--tls-cert and --tls-key: give both");
    if (cert) {
      ssl.pem_cert_chain = readFile(*cert, "--tls-cert");
      ssl.pem_private_key = readFile(*key, "--tls-key");
    }
    creds = grpc::SslCredentials(ssl);
    if (server_name) channel_args.SetSslTargetNameOverride(*server_name);
  }
  std::vector<std::string> specs = args.takeAll("--target");
  if (specs.empty()) specs.push_back("127.0.0.1:9090");
  std::vector<std::string> addresses;
  int exit_code = kExitOk;
  for (const std::string& spec : specs) {
    if (absl::StartsWith(spec, "dns:")) {
      std::vector<std::string> resolved = resolveAll(spec);
      if (resolved.empty()) exit_code = kExitPartial;
      options.multi = true;
      addresses.insert(addresses.end(), resolved.begin(), resolved.end());
    } else {
      addresses.push_back(spec);
    }
  }
  if (addresses.size() > 1) options.multi = true;
  std::vector<Target> targets;
  for (const std::string& address : addresses) {
    targets.push_back(
        {address, pb::ConnectionAdmin::NewStub(grpc::CreateCustomChannel(address, creds, channel_args))});
  }

  std::vector<std::string> words = args.words();
  const std::string verb = words[0];
  const std::string noun = words.size() > 1 ? words[1] : "";
  auto rest = [&](size_t from) {
    return std::vector<std::string>(words.begin() + std::min(from, words.size()), words.end());
  };
  auto singular = [](const std::string& n, const std::string& want) {
    return n == want || n == want + "s";
  };
  Ctl ctl(options, std::move(targets));
  if (addresses.empty()) {
    std::cerr << "connwardenctl: no sidecar to ask\n";
    return kExitPartial;
  }
  int code = kExitOk;
  if (verb == "get" && singular(noun, "connection")) {
    if (words.size() > 2) usage("get connections: takes no argument (use describe connection ID)");
    code = ctl.getConnections(args);
  } else if (verb == "get" && (noun == "policy" || noun == "policies")) {
    code = ctl.getPolicies(rest(2), args);
  } else if (verb == "describe" && singular(noun, "connection")) {
    code = ctl.describe(rest(2), args);
  } else if (verb == "drain") {
    code = ctl.command(false, rest(noun == "connection" || noun == "connections" ? 2 : 1), args);
  } else if (verb == "kill") {
    code = ctl.command(true, rest(noun == "connection" || noun == "connections" ? 2 : 1), args);
  } else if (verb == "set" && noun == "policy") {
    code = ctl.setPolicy(rest(2), args);
  } else if (verb == "reset" && noun == "policy") {
    code = ctl.resetPolicy(rest(2), args);
  } else if (verb == "watch") {
    if (words.size() > 1 && noun != "connections") usage("watch: takes no argument");
    code = ctl.watch(args);
  } else if (verb == "top") {
    code = ctl.top(args);
  } else if (verb == "info") {
    code = ctl.info(args);
  } else {
    usage(absl::StrCat("unknown command \"", absl::StrJoin(words, " "),
                       "\" (get connections, describe connection, drain, kill, get policies, "
                       "set policy, reset policy, watch, top, info; --help)"));
  }
  return std::max(code, exit_code);
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  try {
    return run(argc, argv);
  } catch (const UsageError& error) {
    std::cerr << "connwardenctl: " << error.message << "\n(connwardenctl --help for usage)\n";
    return kExitUsage;
  }
}
