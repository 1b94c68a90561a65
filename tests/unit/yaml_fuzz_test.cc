// Malformed YAML: the project's own example files (policy, agent config, plugin manifests)
// mutated at random for a fixed time (EW_FUZZ_SECONDS, default 2; EW_FUZZ_SEED repeats a run).
// No reader crashes or throws; every refusal is one line that names the file; a policy that
// parses also compiles or is refused the same way.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "agent/config.h"
#include "common/yaml_reader.h"
#include "policy/compiler.h"
#include "policy/policy.h"
#include "wasm/manifest.h"
#include "support/fuzz.h"

namespace edgeward {
namespace {

// Pieces of YAML syntax worth dropping into a document: anchors and aliases, merge keys,
// tags, flow collections, block scalars, odd scalars and the characters that end a token.
const std::vector<std::string> kTokens = {"&a ",         "*a",
                                          "<<: *a",      "!!binary ",
                                          "!!str ",      "!custom ",
                                          "{",           "}",
                                          "[",           "]",
                                          ": ",          "- ",
                                          "? ",          "|\n",
                                          ">-\n",        "\t",
                                          "\n",          "\"",
                                          "'",           "#",
                                          "---\n",       "...\n",
                                          "%YAML 1.1\n", "~",
                                          "null",        "true",
                                          "0x1F",        "-1",
                                          "1e309",       "99999999999999999999",
                                          "0.0.0.0/0",   "::/0",
                                          "65535",       "65536",
                                          "1-65535",     "\\u0000",
                                          "\xc3\x28",    "\xef\xbb\xbf",
                                          ",",           "@",
                                          "`",           "{{{{{{{{",
                                          "]]]]]]]]"};

std::string mutate(std::string s, std::mt19937_64& rng) {
  auto pick = [&](size_t n) {
    return n ? std::uniform_int_distribution<size_t>(0, n - 1)(rng) : 0;
  };
  auto lines = [&] {
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t nl; (nl = s.find('\n', start)) != std::string::npos; start = nl + 1)
      out.push_back(s.substr(start, nl - start + 1));
    if (start < s.size()) out.push_back(s.substr(start));
    return out;
  };
  int rounds = 1 + static_cast<int>(pick(4));
  for (int i = 0; i < rounds; i++) {
    switch (pick(7)) {
      case 0:  // a random byte
        if (!s.empty()) s[pick(s.size())] = static_cast<char>(rng());
        break;
      case 1:  // a token of YAML syntax
        s.insert(pick(s.size() + 1), kTokens[pick(kTokens.size())]);
        break;
      case 2: {  // delete a range
        size_t at = pick(s.size() + 1);
        s.erase(at, 1 + pick(32));
        break;
      }
      case 3:  // truncate
        s.resize(pick(s.size() + 1));
        break;
      case 4: {  // repeat a line (a duplicate key, an extra list item)
        auto ls = lines();
        if (ls.empty()) break;
        size_t k = pick(ls.size());
        ls.insert(ls.begin() + static_cast<long>(pick(ls.size() + 1)), ls[k]);
        s.clear();
        for (auto& l : ls) s += l;
        break;
      }
      case 5: {  // move a line (indentation now wrong, keys out of place)
        auto ls = lines();
        if (ls.size() < 2) break;
        std::swap(ls[pick(ls.size())], ls[pick(ls.size())]);
        s.clear();
        for (auto& l : ls) s += l;
        break;
      }
      case 6: {  // change a line's indentation
        auto ls = lines();
        if (ls.empty()) break;
        auto& l = ls[pick(ls.size())];
        if (pick(2) && l.starts_with(' '))
          l.erase(0, 1 + pick(std::min<size_t>(l.find_first_not_of(' '), 4)));
        else
          l.insert(0, std::string(1 + pick(4), ' '));
        s.clear();
        for (auto& l2 : ls) s += l2;
        break;
      }
    }
  }
  return s;
}

struct Format {
  const char* file;  // under the source tree
  // Parses (and for a policy compiles) the text; the error's message, or "" when it is accepted.
  std::function<std::string(const std::string& text, const std::string& source)> read;
};

std::string readPolicy(const std::string& text, const std::string& source) {
  auto p = policy::parsePolicy(text, source);
  if (!p) return p.error().str();
  auto c = policy::compile(*p);
  return c ? "" : "compile: " + c.error().str();
}

std::string readConfig(const std::string& text, const std::string& source) {
  auto c = agent::parseAgentConfig(text, source);
  return c ? "" : c.error().str();
}

std::string readManifest(const std::string& text, const std::string& source) {
  auto m = wasm::parseManifest(text, source);
  return m ? "" : m.error().str();
}

const std::vector<Format> kFormats = {
    {"examples/policy.yaml", readPolicy},
    {"examples/agent.yaml", readConfig},
    {"examples/agent-local.yaml", readConfig},
    {"plugins/examples/enricher.yaml", readManifest},
    {"plugins/examples/wordcount.yaml", readManifest},
};

TEST(YamlFuzz, MutatedFilesAreRefusedWithOneLineThatNamesTheFile) {
  const auto run = testing::fuzzRun(2);
  SCOPED_TRACE(run.trace());
  std::mt19937_64 rng(run.seed);

  std::vector<std::string> originals;
  for (const auto& f : kFormats) {
    auto text = yaml::readFile(std::string(EW_SOURCE_DIR) + "/" + f.file, 1 << 20);
    ASSERT_TRUE(text) << text.error().str();
    ASSERT_EQ(f.read(*text, f.file), "") << f.file << " itself must be accepted";
    originals.push_back(std::move(*text));
  }

  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(run.seconds);
  std::vector<uint64_t> tries(kFormats.size()), accepted(kFormats.size());
  for (size_t n = 0; std::chrono::steady_clock::now() < end; n++) {
    const size_t k = n % kFormats.size();
    const std::string text = mutate(originals[k], rng);
    const std::string source = "fuzz.yaml";
    std::string msg;
    try {
      msg = kFormats[k].read(text, source);
    } catch (const std::exception& e) {
      FAIL() << kFormats[k].file << ": an exception escaped: " << e.what() << "\ninput:\n" << text;
    }
    tries[k]++;
    if (msg.empty()) {
      accepted[k]++;
      continue;
    }
    ASSERT_EQ(msg.find('\n'), std::string::npos)
        << kFormats[k].file << ": one line, got: " << msg << "\ninput:\n"
        << text;
    // A policy refused by the compiler speaks of rules, not of the file; everything else names it.
    if (!msg.starts_with("compile: ")) {
      ASSERT_NE(msg.find(source), std::string::npos)
          << kFormats[k].file << ": the error names the file: " << msg << "\ninput:\n"
          << text;
    }
  }
  for (size_t k = 0; k < kFormats.size(); k++) {
    std::printf("%s: %llu mutations, %llu accepted\n", kFormats[k].file,
                static_cast<unsigned long long>(tries[k]),
                static_cast<unsigned long long>(accepted[k]));
    EXPECT_GT(tries[k], 0u);
    EXPECT_LT(accepted[k], tries[k]) << "mutations that never fail test nothing";
  }
}

}  // namespace
}  // namespace edgeward
