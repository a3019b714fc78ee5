// Loading the configuration: YAML text -> JSON text -> connwarden.config.v1.Config (protobuf's JSON
// parser checks the schema) -> semantic checks -> the plain settings structs of the lower layers.
#include "sidecar/server/config.h"

#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "connwarden/config/v1/config.pb.h"
#include "sidecar/event/dispatcher.h"

namespace connwarden::server {

namespace {

namespace pb = ::connwarden::config::v1;
using std::chrono::milliseconds;

constexpr int64_t kMaxDurationSeconds = 365 * 24 * 3600;
constexpr uint32_t kMinWatermark = 1024;
constexpr uint32_t kMaxWatermark = 64 * 1024 * 1024;

constexpr char kDefaultConfigYaml[] =
    R"(# connwarden's built-in configuration, used when no --config is given.
listeners:
  - name: main
    address: 0.0.0.0:8080
clusters:
  - name: app
    addresses: [127.0.0.1:8081]
routes:
  - name: default
    cluster: app
)";

absl::Status fieldError(const std::string& path, const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", message));
}

std::string quote(const std::string& text) { return absl::StrCat("\"", absl::CEscape(text), "\""); }

std::string errnoText(int error) {
  char buffer[256];
  return strerror_r(error, buffer, sizeof(buffer));  // the GNU variant: returns the text
}

// The whole file, or the strerror() text of why it cannot be read.
absl::StatusOr<std::string> readFile(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return absl::InvalidArgumentError(errnoText(errno));
  std::string text;
  char buffer[16 * 1024];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) text.append(buffer, n);
  const int error = std::ferror(file) ? errno : 0;
  std::fclose(file);
  if (error != 0) return absl::InvalidArgumentError(errnoText(error));
  return text;
}

// --- YAML -> JSON ---------------------------------------------------------------------------

absl::Status yamlError(const std::string& source, const YAML::Mark& mark,
                       const std::string& message) {
  if (mark.is_null()) return absl::InvalidArgumentError(absl::StrCat(source, ": ", message));
  return absl::InvalidArgumentError(
      absl::StrCat(source, ":", mark.line + 1, ":", mark.column + 1, ": ", message));
}

void appendJsonString(const std::string& text, std::string* out) {
  *out += '"';
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      *out += '\\';
      *out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(out, "\\u00", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    } else {
      *out += c;
    }
  }
  *out += '"';
}

// YAML 1.2's core schema: a plain [-+]?[0-9]+ is an integer. JSON wants no "+" and no leading
// zeros, so the digits are normalised.
bool appendIfInteger(const std::string& text, std::string* out) {
  size_t first = (!text.empty() && (text[0] == '+' || text[0] == '-')) ? 1 : 0;
  if (first == text.size() || text.find_first_not_of("0123456789", first) != std::string::npos) {
    return false;
  }
  const size_t significant = text.find_first_not_of('0', first);
  if (significant == std::string::npos) {
    *out += '0';
  } else {
    if (text[0] == '-') *out += '-';
    out->append(text, significant, std::string::npos);
  }
  return true;
}

// yaml-cpp already turns plain null, ~ and empty values into Null nodes. Only plain scalars (tag
// "?") are resolved; quoted ones (tag "!") and explicitly tagged ones stay strings.
void appendScalar(const YAML::Node& node, std::string* out) {
  const std::string& text = node.Scalar();
  if (node.Tag() == "?") {
    if (text == "true" || text == "True" || text == "TRUE") {
      *out += "true";
      return;
    }
    if (text == "false" || text == "False" || text == "FALSE") {
      *out += "false";
      return;
    }
    if (appendIfInteger(text, out)) return;
  }
  appendJsonString(text, out);
}

// The schema nests a few levels and a config is a few KiB. Deeper or bigger is no config: an
// alias inside its own anchor (a cycle: endless recursion), or aliases of aliases that multiply
// a small file into gigabytes ("billion laughs").
constexpr int kMaxYamlDepth = 32;
constexpr size_t kMaxJsonBytes = 4 << 20;

absl::Status appendJson(const YAML::Node& node, const std::string& source, std::string* out,
                        int depth = 0) {
  if (depth > kMaxYamlDepth) {
    return yamlError(source, node.Mark(),
                     absl::StrCat("nested more than ", kMaxYamlDepth,
                                  " levels deep (an alias inside its own anchor?)"));
  }
  if (out->size() > kMaxJsonBytes) {
    return yamlError(source, node.Mark(),
                     absl::StrCat("expands to more than ", kMaxJsonBytes >> 20,
                                  " MiB (aliases of aliases?)"));
  }
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      *out += "null";
      return absl::OkStatus();
    case YAML::NodeType::Scalar:
      appendScalar(node, out);
      return absl::OkStatus();
    case YAML::NodeType::Sequence: {
      *out += '[';
      bool first = true;
      for (const YAML::Node& item : node) {
        if (!first) *out += ',';
        first = false;
        if (absl::Status status = appendJson(item, source, out, depth + 1); !status.ok()) {
          return status;
        }
      }
      *out += ']';
      return absl::OkStatus();
    }
    case YAML::NodeType::Map: {
      *out += '{';
      // yaml-cpp keeps both of two equal keys and protobuf would silently take the last one.
      std::set<std::string> keys;
      for (const auto& entry : node) {
        const YAML::Node& key = entry.first;
        if (!key.IsScalar()) return yamlError(source, key.Mark(), "a key must be a plain string");
        if (!keys.insert(key.Scalar()).second) {
          return yamlError(source, key.Mark(), absl::StrCat("duplicate key ", quote(key.Scalar())));
        }
        if (keys.size() > 1) *out += ',';
        appendJsonString(key.Scalar(), out);
        *out += ':';
        if (absl::Status status = appendJson(entry.second, source, out, depth + 1);
            !status.ok()) {
          return status;
        }
      }
      *out += '}';
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

// --- protobuf's JSON errors -> "path: what is wrong" ---------------------------------------

// The part of protobuf's "invalid value <value> for type <type>" after the path.
std::string describeInvalidValue(const std::string& detail) {
  constexpr absl::string_view kPrefix = "invalid value ";
  constexpr std::string_view kForType = " for type ";
  const size_t for_type = detail.rfind(kForType);
  if (!absl::StartsWith(detail, kPrefix) || for_type == std::string::npos) return detail;
  const std::string value = detail.substr(kPrefix.size(), for_type - kPrefix.size());
  const std::string type = detail.substr(for_type + kForType.size());
  if (type == "type.googleapis.com/google.protobuf.Duration") {
    // value reads "Field 'idle_timeout', Invalid duration format, ..."
    const size_t comma = value.find(", ");
    const std::string why = comma == std::string::npos ? value : value.substr(comma + 2);
    return absl::StrCat("expected a duration in seconds such as \"1.5s\" (", why, ")");
  }
  if (type == "TYPE_STRING") return absl::StrCat("expected a string, got ", value, " (quote it)");
  if (type == "TYPE_UINT32") {
    return absl::StrCat("expected an integer from 0 to 4294967295, got ", value);
  }
  if (absl::StartsWith(type, "type.googleapis.com/")) {
    return absl::StrCat("expected a mapping, got ", value);
  }
  return detail;
}

// Protobuf 3.21 words its JSON errors as "(listeners[0].max_connections): invalid value -1 for
// type TYPE_UINT32", "(listeners[0]) name: Proto field is not repeating, cannot start list.",
// "(listeners[0]) bogus: Cannot find field." or, at the top level, "bogus: Cannot find field.".
absl::Status schemaError(const std::string& message, const std::string& source) {
  constexpr absl::string_view kUnknownField = ": Cannot find field.";
  constexpr absl::string_view kObjectOnScalar =
      "invalid value Starting an object on a scalar field for type ";
  std::string path;
  std::string detail;
  if (absl::EndsWith(message, kUnknownField)) {
    // Split at the end: the unknown key is the user's text and may hold anything.
    path = message.substr(0, message.size() - kUnknownField.size());
    detail = "unknown field";
  } else {
    const size_t colon = message.find(": ");
    if (colon == std::string::npos) return fieldError(source, message);
    path = message.substr(0, colon);
    detail = message.substr(colon + 2);
  }
  // "(parent) field" -> "parent.field"; "(path)" -> "path".
  if (absl::StartsWith(path, "(")) {
    const size_t close = path.find(')');
    if (close == std::string::npos) return fieldError(source, message);
    std::string field = path.substr(close + 1);
    path = path.substr(1, close - 1);
    if (absl::StartsWith(field, " ")) absl::StrAppend(&path, ".", field.substr(1));
  }
  if (absl::StartsWith(detail, kObjectOnScalar)) {
    // Protobuf names the field in the type slot, and not always in the path.
    const std::string field = detail.substr(kObjectOnScalar.size());
    if (!absl::EndsWith(path, field)) absl::StrAppend(&path, ".", field);
    detail = "expected a single value, not a mapping";
  } else if (detail == "Proto field is not repeating, cannot start list.") {
    detail = "expected a single value, not a list";
  } else {
    detail = describeInvalidValue(detail);
  }
  if (path.empty()) return fieldError(source, detail);
  return fieldError(path, detail);
}

// --- semantic checks -------------------------------------------------------------------------

// A duration field (when `has` it): >= 0, or > 0 when `positive`, and at most a year. A fraction of
// a millisecond rounds up, so that a tiny timeout does not turn into 0 = off.
absl::Status setDuration(bool has, const google::protobuf::Duration& value, bool positive,
                         const std::string& path, milliseconds* out) {
  if (!has) return absl::OkStatus();
  if (value.seconds() < 0 || value.nanos() < 0) return fieldError(path, "must not be negative");
  if (positive && value.seconds() == 0 && value.nanos() == 0) {
    return fieldError(path, "must be positive");
  }
  if (value.seconds() > kMaxDurationSeconds ||
      (value.seconds() == kMaxDurationSeconds && value.nanos() > 0)) {
    return fieldError(path, absl::StrCat("must be at most 1 year (", kMaxDurationSeconds, "s)"));
  }
  *out = milliseconds(value.seconds() * 1000 + (value.nanos() + 999'999) / 1'000'000);
  return absl::OkStatus();
}

// Remembers the names seen in one list, for "already the name of listeners[0]" errors.
class UniqueNames {
 public:
  explicit UniqueNames(std::string list) : list_(std::move(list)) {}
  absl::Status add(const std::string& name, size_t index) {
    auto [it, inserted] = first_index_.emplace(name, index);
    if (inserted) return absl::OkStatus();
    return fieldError(
        absl::StrCat(list_, "[", index, "].name"),
        absl::StrCat(quote(name), " is already the name of ", list_, "[", it->second, "]"));
  }
  bool contains(const std::string& name) const { return first_index_.count(name) > 0; }

 private:
  std::string list_;
  std::map<std::string, size_t> first_index_;
};

absl::StatusOr<network::Address> parseAddress(const std::string& text, const std::string& path) {
  if (text.empty()) return fieldError(path, "required");
  absl::StatusOr<network::Address> address = network::Address::parse(text);
  if (!address.ok()) return fieldError(path, std::string(address.status().message()));
  return address;
}

absl::Status checkReadable(const std::string& file, const std::string& path) {
  if (file.empty()) return fieldError(path, "required");
  absl::StatusOr<std::string> text = readFile(file);
  if (!text.ok()) {
    return fieldError(path,
                      absl::StrCat("cannot read ", quote(file), ": ", text.status().message()));
  }
  return absl::OkStatus();
}

absl::Status convertTls(const pb::Tls& tls, const std::string& path, network::TlsConfig* out) {
  if (absl::Status s = checkReadable(tls.cert_file(), path + ".cert_file"); !s.ok()) return s;
  if (absl::Status s = checkReadable(tls.key_file(), path + ".key_file"); !s.ok()) return s;
  if (tls.min_version() != "" && tls.min_version() != "1.2" && tls.min_version() != "1.3") {
    return fieldError(path + ".min_version",
                      absl::StrCat("must be \"1.2\" or \"1.3\", got ", quote(tls.min_version())));
  }
  out->cert_file = tls.cert_file();
  out->key_file = tls.key_file();
  out->min_tls13 = tls.min_version() == "1.3";
  return absl::OkStatus();
}

absl::Status convertListener(const pb::Listener& in, const std::string& path,
                             network::ListenerConfig* out) {
  absl::StatusOr<network::Address> address = parseAddress(in.address(), path + ".address");
  if (!address.ok()) return address.status();
  out->address = *address;
  if (in.has_tls()) {
    if (absl::Status s = convertTls(in.tls(), path + ".tls", &out->tls.emplace()); !s.ok()) {
      return s;
    }
  }
  out->max_connections = in.max_connections();
  if (in.no_route_status() != 0) {
    if (in.no_route_status() < 400 || in.no_route_status() > 599) {
      return fieldError(path + ".no_route_status",
                        absl::StrCat("must be from 400 to 599, got ", in.no_route_status()));
    }
    out->no_route_status = in.no_route_status();
  }
  if (in.buffer_high_watermark() != 0) {
    if (in.buffer_high_watermark() < kMinWatermark || in.buffer_high_watermark() > kMaxWatermark) {
      return fieldError(path + ".buffer_high_watermark",
                        absl::StrCat("must be from ", kMinWatermark, " to ", kMaxWatermark,
                                     " bytes, got ", in.buffer_high_watermark()));
    }
    out->buffer_high_watermark = in.buffer_high_watermark();
  }
  return absl::OkStatus();
}

absl::Status setOptionalDuration(bool has, const google::protobuf::Duration& value,
                                const std::string& path, std::optional<milliseconds>* out) {
  if (!has) return absl::OkStatus();
  milliseconds converted{0};
  if (absl::Status s = setDuration(true, value, false, path, &converted); !s.ok()) return s;
  *out = converted;
  return absl::OkStatus();
}

}  // namespace

absl::Status convertRoutePolicy(const pb::RoutePolicy& in, const std::string& path,
                                http::RoutePolicy* out) {
  http::RoutePolicy policy;
  if (in.has_hibernate()) {
    const pb::Hibernate& hibernate = in.hibernate();
    if (hibernate.has_enabled()) policy.hibernate = hibernate.enabled();
    if (absl::Status s = setOptionalDuration(hibernate.has_after(), hibernate.after(),
                                             path + ".hibernate.after", &policy.hibernate_after);
        !s.ok()) {
      return s;
    }
  }
  for (absl::Status s : {
           setOptionalDuration(in.has_idle_timeout(), in.idle_timeout(), path + ".idle_timeout",
                               &policy.idle_timeout),
           setOptionalDuration(in.has_request_header_timeout(), in.request_header_timeout(),
                               path + ".request_header_timeout", &policy.request_header_timeout),
           setOptionalDuration(in.has_request_timeout(), in.request_timeout(),
                               path + ".request_timeout", &policy.request_timeout),
           setOptionalDuration(in.has_write_timeout(), in.write_timeout(),
                               path + ".write_timeout", &policy.write_timeout),
           setOptionalDuration(in.has_max_connection_age(), in.max_connection_age(),
                               path + ".max_connection_age", &policy.max_connection_age),
           setOptionalDuration(in.has_drain_timeout(), in.drain_timeout(),
                               path + ".drain_timeout", &policy.drain_timeout),
           setOptionalDuration(in.has_tunnel_idle_timeout(), in.tunnel_idle_timeout(),
                               path + ".tunnel_idle_timeout", &policy.tunnel_idle_timeout),
       }) {
    if (!s.ok()) return s;
  }
  if (in.has_max_requests_per_connection()) {
    policy.max_requests_per_connection = in.max_requests_per_connection();
  }
  *out = policy;
  return absl::OkStatus();
}

namespace {

absl::Status convertCluster(const pb::Cluster& in, const std::string& path,
                            http::ClusterConfig* out) {
  if (in.addresses().empty()) {
    return fieldError(path + ".addresses", "at least one address is required");
  }
  for (int i = 0; i < in.addresses_size(); ++i) {
    absl::StatusOr<network::Address> address =
        parseAddress(in.addresses(i), absl::StrCat(path, ".addresses[", i, "]"));
    if (!address.ok()) return address.status();
    out->addresses.push_back(*address);
  }
  for (absl::Status s : {
           setDuration(in.has_connect_timeout(), in.connect_timeout(), true,
                       path + ".connect_timeout", &out->connect_timeout),
           setDuration(in.has_response_timeout(), in.response_timeout(), true,
                       path + ".response_timeout", &out->response_timeout),
           setDuration(in.has_idle_timeout(), in.idle_timeout(), false, path + ".idle_timeout",
                       &out->idle_timeout),
           setDuration(in.has_response_idle_timeout(), in.response_idle_timeout(), false,
                       path + ".response_idle_timeout", &out->response_idle_timeout),
           setDuration(in.has_queue_timeout(), in.queue_timeout(), true, path + ".queue_timeout",
                       &out->queue_timeout),
       }) {
    if (!s.ok()) return s;
  }
  // proto3 cannot tell 0 from unset: 0 means the documented default.
  if (in.max_idle_connections() != 0) out->max_idle_connections = in.max_idle_connections();
  out->max_connections = in.max_connections();
  if (in.has_max_queued_requests()) out->max_queued_requests = in.max_queued_requests();
  return absl::OkStatus();
}

// "" or "*" (any host, stored as ""), "api.example.com" or "*.example.com"; lower-cased.
absl::StatusOr<std::string> normalizeHost(const std::string& host, const std::string& path) {
  const std::string lower = absl::AsciiStrToLower(host);
  if (lower.empty() || lower == "*") return std::string();
  const std::string name = absl::StartsWith(lower, "*.") ? lower.substr(2) : lower;
  if (name.find('*') != std::string::npos) {
    return fieldError(path, absl::StrCat(quote(host),
                                         ": \"*\" is allowed only as the whole host "
                                         "or as a leading \"*.\""));
  }
  if (name.empty() ||
      name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-._") != std::string::npos) {
    return fieldError(path, absl::StrCat(quote(host), " is not a host name (no port, no scheme)"));
  }
  return lower;
}

absl::Status convertRoute(const pb::Route& in, const std::string& path, const UniqueNames& clusters,
                          http::RouteConfig* out) {
  absl::StatusOr<std::string> host = normalizeHost(in.host(), path + ".host");
  if (!host.ok()) return host.status();
  out->host = *std::move(host);
  if (!in.path_prefix().empty() && in.path_prefix()[0] != '/') {
    return fieldError(path + ".path_prefix",
                      absl::StrCat("must start with \"/\", got ", quote(in.path_prefix())));
  }
  out->path_prefix = in.path_prefix();
  if (in.cluster().empty()) return fieldError(path + ".cluster", "required");
  if (!clusters.contains(in.cluster())) {
    return fieldError(path + ".cluster", absl::StrCat("no cluster named ", quote(in.cluster())));
  }
  out->cluster = in.cluster();
  return convertRoutePolicy(in.policy(), path + ".policy", &out->policy);
}

absl::StatusOr<ServerConfig> convert(const pb::Config& in) {
  ServerConfig out;
  if (in.listeners().empty()) return fieldError("listeners", "at least one listener is required");
  UniqueNames listener_names("listeners");
  for (int i = 0; i < in.listeners_size(); ++i) {
    const std::string path = absl::StrCat("listeners[", i, "]");
    network::ListenerConfig& listener = out.listeners.emplace_back();
    listener.name =
        in.listeners(i).name().empty() ? absl::StrCat("listener", i) : in.listeners(i).name();
    if (absl::Status s = listener_names.add(listener.name, i); !s.ok()) return s;
    if (absl::Status s = convertListener(in.listeners(i), path, &listener); !s.ok()) return s;
    if (absl::Status s = convertRoutePolicy(in.listeners(i).defaults(), path + ".defaults",
                                            &out.listener_policies.emplace_back());
        !s.ok()) {
      return s;
    }
  }

  if (in.clusters().empty()) return fieldError("clusters", "at least one cluster is required");
  UniqueNames cluster_names("clusters");
  for (int i = 0; i < in.clusters_size(); ++i) {
    const std::string path = absl::StrCat("clusters[", i, "]");
    http::ClusterConfig& cluster = out.clusters.emplace_back();
    cluster.name = in.clusters(i).name();
    if (cluster.name.empty()) return fieldError(path + ".name", "required");
    if (absl::Status s = cluster_names.add(cluster.name, i); !s.ok()) return s;
    if (absl::Status s = convertCluster(in.clusters(i), path, &cluster); !s.ok()) return s;
  }

  if (in.routes().empty()) {
    if (out.clusters.size() > 1) {
      return fieldError("routes", "required when there are several clusters");
    }
    out.routes.push_back({"default", "", "", out.clusters[0].name, {}});
    return out;
  }
  UniqueNames route_names("routes");
  for (int i = 0; i < in.routes_size(); ++i) {
    const std::string path = absl::StrCat("routes[", i, "]");
    http::RouteConfig& route = out.routes.emplace_back();
    route.name = in.routes(i).name().empty() ? absl::StrCat("route", i) : in.routes(i).name();
    if (absl::Status s = route_names.add(route.name, i); !s.ok()) return s;
    if (absl::Status s = convertRoute(in.routes(i), path, cluster_names, &route); !s.ok()) {
      return s;
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<ServerConfig> loadConfigFile(const std::string& path) {
  absl::StatusOr<std::string> text = readFile(path);
  if (!text.ok()) return fieldError(path, std::string(text.status().message()));
  return parseConfig(*text, path);
}

absl::StatusOr<ServerConfig> parseConfig(std::string_view yaml, std::string_view source_view) {
  const std::string source(source_view);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return yamlError(source, e.mark, e.msg);
  }
  std::string json;
  if (root.IsNull()) {
    json = "{}";
  } else if (!root.IsMap()) {
    return yamlError(source, root.Mark(),
                     "expected a mapping with listeners, clusters and routes at the top level");
  } else if (absl::Status status = appendJson(root, source, &json); !status.ok()) {
    return status;
  }

  pb::Config proto;
  const google::protobuf::util::Status parsed =
      google::protobuf::util::JsonStringToMessage(json, &proto);
  if (!parsed.ok()) return schemaError(parsed.message().ToString(), source);
  return convert(proto);
}

absl::Status checkForWorkers(const ServerConfig& config, uint32_t workers) {
  for (size_t i = 0; i < config.clusters.size(); ++i) {
    const uint32_t max = config.clusters[i].max_connections;
    if (max != 0 && max < workers) {
      return fieldError(absl::StrCat("clusters[", i, "].max_connections"),
                        absl::StrCat(max, " is fewer than the ", workers,
                                     " workers (--concurrency), and each worker needs one at "
                                     "least: raise it or lower --concurrency"));
    }
  }
  return absl::OkStatus();
}

ServerConfig defaultConfig() {
  absl::StatusOr<ServerConfig> config = parseConfig(kDefaultConfigYaml, "<built-in config>");
  CW_ASSERT(config.ok());
  return *std::move(config);
}

std::string_view defaultConfigYaml() { return kDefaultConfigYaml; }

namespace {
void setProtoDuration(const std::optional<milliseconds>& value, google::protobuf::Duration* out) {
  out->set_seconds(value->count() / 1000);
  out->set_nanos(static_cast<int32_t>(value->count() % 1000) * 1'000'000);
}
constexpr char kPoliciesFile[] = "policies.json";
}  // namespace

void routePolicyToProto(const http::RoutePolicy& in, pb::RoutePolicy* out) {
  out->Clear();
  if (in.hibernate) out->mutable_hibernate()->set_enabled(*in.hibernate);
  if (in.hibernate_after) setProtoDuration(in.hibernate_after, out->mutable_hibernate()->mutable_after());
  if (in.idle_timeout) setProtoDuration(in.idle_timeout, out->mutable_idle_timeout());
  if (in.request_header_timeout) {
    setProtoDuration(in.request_header_timeout, out->mutable_request_header_timeout());
  }
  if (in.request_timeout) setProtoDuration(in.request_timeout, out->mutable_request_timeout());
  if (in.write_timeout) setProtoDuration(in.write_timeout, out->mutable_write_timeout());
  if (in.max_connection_age) {
    setProtoDuration(in.max_connection_age, out->mutable_max_connection_age());
  }
  if (in.max_requests_per_connection) {
    out->set_max_requests_per_connection(*in.max_requests_per_connection);
  }
  if (in.drain_timeout) setProtoDuration(in.drain_timeout, out->mutable_drain_timeout());
  if (in.tunnel_idle_timeout) {
    setProtoDuration(in.tunnel_idle_timeout, out->mutable_tunnel_idle_timeout());
  }
}

absl::StatusOr<std::map<std::string, http::RoutePolicy>> loadStoredPolicies(
    const std::string& state_dir) {
  std::map<std::string, http::RoutePolicy> out;
  const std::string path = absl::StrCat(state_dir, "/", kPoliciesFile);
  std::FILE* probe = std::fopen(path.c_str(), "rb");
  if (probe == nullptr && errno == ENOENT) return out;
  if (probe != nullptr) std::fclose(probe);
  absl::StatusOr<std::string> text = readFile(path);
  if (!text.ok()) return fieldError(path, std::string(text.status().message()));
  pb::StoredPolicies stored;
  const google::protobuf::util::Status parsed =
      google::protobuf::util::JsonStringToMessage(*text, &stored);
  if (!parsed.ok()) return fieldError(path, parsed.message().ToString());
  for (const auto& [route, policy] : stored.routes()) {
    http::RoutePolicy converted;
    if (absl::Status s = convertRoutePolicy(policy, absl::StrCat(path, ": routes[\"", route, "\"]"),
                                            &converted);
        !s.ok()) {
      return s;
    }
    out.emplace(route, converted);
  }
  return out;
}

absl::Status storePolicies(const std::string& state_dir,
                           const std::map<std::string, http::RoutePolicy>& policies) {
  pb::StoredPolicies stored;
  for (const auto& [route, policy] : policies) {
    routePolicyToProto(policy, &(*stored.mutable_routes())[route]);
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(stored, &json, options).ok()) {
    return absl::InternalError("cannot encode the policies");
  }
  const std::string path = absl::StrCat(state_dir, "/", kPoliciesFile);
  const std::string temporary = path + ".tmp";
  std::FILE* file = std::fopen(temporary.c_str(), "wb");
  if (file == nullptr) return fieldError(temporary, errnoText(errno));
  const bool written = std::fwrite(json.data(), 1, json.size(), file) == json.size() &&
                       std::fflush(file) == 0 && fsync(fileno(file)) == 0;
  const int error = errno;
  std::fclose(file);
  if (!written) {
    std::remove(temporary.c_str());
    return fieldError(temporary, errnoText(error));
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    const int rename_error = errno;
    std::remove(temporary.c_str());
    return fieldError(path, errnoText(rename_error));
  }
  return absl::OkStatus();
}

}  // namespace connwarden::server
