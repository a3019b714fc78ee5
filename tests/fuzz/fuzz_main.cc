// The driver of a fuzz target when it is not built with libFuzzer (gcc: `make test` and
// `make test-asan` run every target through it). It runs each input under the files and
// directories given, then `-runs=N` inputs made from them by cheap mutations: bit flips, byte
// changes, insertions and deletions, copies inside an input, splices of two inputs, and tokens
// of a `-dict=` file (libFuzzer's format). The mutations come from a fixed `-seed`, so a run is
// repeatable. It has no coverage guidance: that is `make fuzz` (clang and libFuzzer).
//
//   fuzz_http1_request [-runs=N] [-seed=S] [-max_len=L] [-dict=FILE] FILE_OR_DIR...
//
// When an input makes the target fail (a sanitizer report, an assertion, a signal), the input
// is first written to ./crash-<target>-<seed>-<run> (./crash-<target>-input-<n> for the n-th
// input given), which the target takes back as a file:
//   fuzz_http1_request ./crash-fuzz_http1_request-1-523
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
// From the sanitizers' runtime, when the target is built with one.
extern "C" void __sanitizer_set_death_callback(void (*callback)()) __attribute__((weak));

namespace {

using Bytes = std::string;

// The input in progress, for the death callback and the signal handlers (which may only make
// async-signal-safe calls: the path is made before the run).
const Bytes* g_current = nullptr;
char g_crash_path[256];

void saveCurrentInput() {
  static volatile sig_atomic_t saved = 0;
  if (g_current == nullptr || saved) return;
  saved = 1;
  const int fd = open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  for (size_t done = 0; done < g_current->size();) {
    const ssize_t n = write(fd, g_current->data() + done, g_current->size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
  static const char kSaved[] = "\nfuzz: the failing input is in ";
  (void)!write(2, kSaved, sizeof(kSaved) - 1);
  (void)!write(2, g_crash_path, strlen(g_crash_path));
  (void)!write(2, "\n", 1);
}

void onFatalSignal(int sig) {
  saveCurrentInput();
  raise(sig);  // SA_RESETHAND: the default action now
}

bool readFile(const std::string& path, Bytes* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream text;
  text << in.rdbuf();
  *out = text.str();
  return true;
}

// The files at `path`: itself, or the regular files directly inside it.
bool collect(const std::string& path, std::vector<Bytes>* corpus) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return false;
  std::vector<std::string> files;
  if (S_ISDIR(st.st_mode)) {
    DIR* dir = opendir(path.c_str());
    if (dir == nullptr) return false;
    while (dirent* entry = readdir(dir)) {
      const std::string file = path + "/" + entry->d_name;
      if (entry->d_name[0] != '.' && stat(file.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
        files.push_back(file);
      }
    }
    closedir(dir);
  } else {
    files.push_back(path);
  }
  for (const std::string& file : files) {
    Bytes bytes;
    if (!readFile(file, &bytes)) return false;
    corpus->push_back(std::move(bytes));
  }
  return true;
}

// A libFuzzer dictionary: one token per line, `name="value"` or `"value"`, with \\, \" and \xNN
// escapes; `#` starts a comment line.
bool readDictionary(const std::string& path, std::vector<Bytes>* tokens) {
  std::ifstream in(path);
  if (!in) return false;
  std::string line;
  while (std::getline(in, line)) {
    const size_t open = line.find('"');
    const size_t close = line.rfind('"');
    if (line.empty() || line[0] == '#' || open == std::string::npos || close <= open) continue;
    Bytes token;
    for (size_t i = open + 1; i < close; ++i) {
      if (line[i] != '\\' || i + 1 >= close) {
        token.push_back(line[i]);
      } else if (line[i + 1] == 'x' && i + 3 < close) {
        token.push_back(static_cast<char>(std::stoi(line.substr(i + 2, 2), nullptr, 16)));
        i += 3;
      } else {
        token.push_back(line[++i]);
      }
    }
    if (!token.empty()) tokens->push_back(std::move(token));
  }
  return true;
}

class Mutator {
 public:
  Mutator(uint64_t seed, size_t max_len, const std::vector<Bytes>& corpus,
          const std::vector<Bytes>& tokens)
      : rng_(seed), max_len_(max_len), corpus_(corpus), tokens_(tokens) {}

  Bytes next() {
    Bytes b = corpus_[below(corpus_.size())];
    for (size_t n = 1 + below(4); n > 0; --n) mutate(b);
    if (b.size() > max_len_) b.resize(max_len_);
    return b;
  }

 private:
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng_() % n); }

  void mutate(Bytes& b) {
    const size_t at = below(b.size() + 1);
    switch (below(8)) {
      case 0:  // flip a bit
        if (!b.empty()) b[below(b.size())] ^= static_cast<char>(1u << below(8));
        break;
      case 1:  // an interesting byte
        if (!b.empty()) b[below(b.size())] = kInteresting[below(sizeof(kInteresting) - 1)];
        break;
      case 2:  // insert bytes
        b.insert(at, 1 + below(4), kInteresting[below(sizeof(kInteresting) - 1)]);
        break;
      case 3:  // delete a range
        if (!b.empty()) b.erase(below(b.size()), 1 + below(16));
        break;
      case 4:  // copy a range of itself elsewhere
        if (!b.empty()) {
          const size_t from = below(b.size());
          b.insert(at, b.substr(from, 1 + below(32)));
        }
        break;
      case 5:  // splice with another input
        if (!corpus_.empty()) {
          const Bytes& other = corpus_[below(corpus_.size())];
          b = b.substr(0, at) + other.substr(below(other.size() + 1));
        }
        break;
      default:  // a dictionary token, inserted or written over
        if (!tokens_.empty()) {
          const Bytes& token = tokens_[below(tokens_.size())];
          if (below(2) == 0 || at + token.size() > b.size()) {
            b.insert(at, token);
          } else {
            b.replace(at, token.size(), token);
          }
        }
        break;
    }
  }

  static constexpr char kInteresting[] =
      "\r\n\t \0:;,=\"\\/?#@%\x7f\x80\xff"
      "0129aAzZ-";
  std::mt19937_64 rng_;
  size_t max_len_;
  const std::vector<Bytes>& corpus_;
  const std::vector<Bytes>& tokens_;
};

void run(const Bytes& input) {
  g_current = &input;
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  g_current = nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t runs = 0, seed = 1;
  size_t max_len = 8192;
  std::vector<Bytes> corpus, tokens;
  auto usage = [&] {
    std::fprintf(stderr, "usage: %s [-runs=N] [-seed=S] [-max_len=L] [-dict=FILE] FILE_OR_DIR...\n",
                 argv[0]);
    return 2;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* flag) -> const char* {
      const size_t n = std::strlen(flag);
      return arg.compare(0, n, flag) == 0 ? argv[i] + n : nullptr;
    };
    if (const char* v = value("-runs=")) {
      runs = std::strtoull(v, nullptr, 10);
    } else if (const char* v = value("-seed=")) {
      seed = std::strtoull(v, nullptr, 10);
    } else if (const char* v = value("-max_len=")) {
      max_len = std::strtoull(v, nullptr, 10);
    } else if (const char* v = value("-dict=")) {
      if (!readDictionary(v, &tokens)) {
        std::fprintf(stderr, "fuzz: cannot read the dictionary %s\n", v);
        return 2;
      }
    } else if (arg[0] == '-') {
      return usage();
    } else if (!collect(arg, &corpus)) {
      std::fprintf(stderr, "fuzz: cannot read %s\n", arg.c_str());
      return 2;
    }
  }
  if (corpus.empty()) return usage();
  if (__sanitizer_set_death_callback != nullptr) __sanitizer_set_death_callback(saveCurrentInput);
  // On a stack of their own: a stack overflow is one of the failures to catch.
  static char alt_stack[64 * 1024];
  stack_t ss{};
  ss.ss_sp = alt_stack;
  ss.ss_size = sizeof(alt_stack);
  sigaltstack(&ss, nullptr);
  struct sigaction action {};
  action.sa_handler = onFatalSignal;
  action.sa_flags = SA_ONSTACK | SA_RESETHAND;
  for (int sig : {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL}) sigaction(sig, &action, nullptr);
  const char* slash = std::strrchr(argv[0], '/');
  const char* name = slash == nullptr ? argv[0] : slash + 1;

  uint64_t done = 0;
  for (const Bytes& input : corpus) {
    std::snprintf(g_crash_path, sizeof(g_crash_path), "crash-%s-input-%llu", name,
                  static_cast<unsigned long long>(done++));
    run(input);
  }
  Mutator mutator(seed, max_len, corpus, tokens);
  for (uint64_t i = 0; i < runs; ++i) {
    std::snprintf(g_crash_path, sizeof(g_crash_path), "crash-%s-%llu-%llu", name,
                  static_cast<unsigned long long>(seed), static_cast<unsigned long long>(i));
    run(mutator.next());
  }
  std::printf("fuzz: %s: %zu inputs and %llu mutations (seed %llu), no failure\n", name,
              corpus.size(), static_cast<unsigned long long>(runs),
              static_cast<unsigned long long>(seed));
  return 0;
}
