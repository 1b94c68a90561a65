// The agent's policy store: versions, the current pointer, pruning, reopening, and every state an
// interrupted write can leave behind; damaged files give errors naming them.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "agent/policy_store.h"

namespace edgeward::agent {
namespace {

namespace fs = std::filesystem;

class PolicyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ewt-store-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    dir_ = root_ + "/state";
  }
  void TearDown() override { fs::remove_all(root_); }

  PolicyStore openOk(uint32_t keep = PolicyStore::kDefaultKeep) {
    auto s = PolicyStore::open(dir_, keep);
    if (!s) ADD_FAILURE() << s.error().str();
    return std::move(*s);
  }
  std::string openError(uint32_t keep = PolicyStore::kDefaultKeep) {
    auto s = PolicyStore::open(dir_, keep);
    return s ? "(no error)" : s.error().str();
  }
  StoredVersion commitOk(PolicyStore& s, const std::string& yaml,
                         const std::string& origin = "apply") {
    auto v = s.commit(yaml, "p", "alice", origin);
    if (!v) ADD_FAILURE() << v.error().str();
    return v ? *v : StoredVersion{};
  }
  std::string file(const std::string& rel) const { return dir_ + "/" + rel; }
  std::string read(const std::string& rel) const {
    std::ifstream in(file(rel));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  void write(const std::string& rel, const std::string& text) const {
    std::ofstream(file(rel), std::ios::trunc) << text;
  }
  bool exists(const std::string& rel) const { return fs::exists(file(rel)); }
  static std::vector<uint64_t> versions(const PolicyStore& s) {
    std::vector<uint64_t> out;
    const auto list = s.list();  // the loop must not outlive it
    for (const auto& v : *list) out.push_back(v.version);
    return out;
  }

  std::string root_, dir_;
};

TEST_F(PolicyStoreTest, HashIsSha256OfTheExactText) {
  EXPECT_EQ(PolicyStore::hashOf("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(PolicyStore::hashOf(""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_NE(PolicyStore::hashOf("abc"), PolicyStore::hashOf("abc\n"));
}

TEST_F(PolicyStoreTest, AnEmptyStore) {
  PolicyStore s = openOk();
  EXPECT_FALSE(s.current().has_value());
  EXPECT_TRUE(s.list()->empty());
  EXPECT_EQ(s.nextVersion(), 1u);
  EXPECT_TRUE(s.problems().empty());
  EXPECT_TRUE(fs::is_directory(file("policies")));
  EXPECT_FALSE(exists("current"));
  auto got = s.get(1);
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code(), ErrorCode::NotFound);
  EXPECT_EQ(got.error().str(), "version 1 is not stored in " + dir_ + "/policies");
}

TEST_F(PolicyStoreTest, CommitWritesTheFilesAndMovesCurrent) {
  PolicyStore s = openOk();
  const std::string text = "apiVersion: edgeward.io/v1\n# no trailing newline";
  const int64_t before = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  StoredVersion v = commitOk(s, text);
  EXPECT_EQ(v.version, 1u);
  EXPECT_EQ(v.hash, PolicyStore::hashOf(text));
  EXPECT_EQ(v.author, "alice");
  EXPECT_EQ(v.name, "p");
  EXPECT_EQ(v.origin, "apply");
  EXPECT_GE(v.appliedAtMs, before);
  EXPECT_LE(v.appliedAtMs, before + 60000);
  EXPECT_EQ(read("policies/1.yaml"), text);
  EXPECT_EQ(read("current"), "1\n");
  EXPECT_EQ(read("last-version"), "1\n");
  EXPECT_NE(read("policies/1.json").find("\"hash\":\"" + v.hash + "\""), std::string::npos);
  EXPECT_EQ(s.current(), v);
  EXPECT_EQ(s.nextVersion(), 2u);

  auto got = s.get(1);
  ASSERT_TRUE(got.has_value()) << got.error().str();
  EXPECT_EQ(got->first, v);
  EXPECT_EQ(got->second, text);

  StoredVersion v2 = commitOk(s, "second", "upstream 10.0.0.1:7443");
  EXPECT_EQ(v2.version, 2u);
  EXPECT_EQ(s.current()->version, 2u);
  EXPECT_EQ(versions(s), (std::vector<uint64_t>{2, 1}));  // newest first
  EXPECT_EQ((*s.list())[0].origin, "upstream 10.0.0.1:7443");
  // No temporary file stays behind.
  for (const auto& e : fs::recursive_directory_iterator(dir_))
    EXPECT_FALSE(e.path().string().ends_with(".tmp")) << e.path();
}

TEST_F(PolicyStoreTest, ReopeningReadsTheSameState) {
  StoredVersion v1, v2;
  {
    PolicyStore s = openOk();
    v1 = commitOk(s, "one");
    v2 = commitOk(s, "two");
  }
  PolicyStore s = openOk();
  EXPECT_EQ(s.current(), v2);
  EXPECT_EQ(*s.list(), (std::vector<StoredVersion>{v2, v1}));
  EXPECT_EQ(s.nextVersion(), 3u);
  EXPECT_EQ(s.get(1)->second, "one");
  EXPECT_TRUE(s.problems().empty());
}

TEST_F(PolicyStoreTest, TextIsStoredByteForByte) {
  PolicyStore s = openOk();
  std::string text;
  for (int i = 0; i < 256; i++) text += char(i);
  text += std::string(3 << 20, 'x');  // several MiB
  commitOk(s, text);
  auto got = s.get(1);
  ASSERT_TRUE(got.has_value()) << got.error().str();
  EXPECT_TRUE(got->second == text);
}

TEST_F(PolicyStoreTest, InvalidUtf8InNamesIsStoredReplacedAndReadsBackTheSame) {
  StoredVersion v;
  {
    PolicyStore s = openOk();
    auto r = s.commit("x", "bad\xff name", "caller \"q\"\n", "apply");
    ASSERT_TRUE(r.has_value()) << r.error().str();
    v = *r;
  }
  EXPECT_EQ(v.author, "caller \"q\"\n");
  EXPECT_NE(v.name, "bad\xff name");
  PolicyStore s = openOk();
  EXPECT_EQ(s.current(), v);
}

TEST_F(PolicyStoreTest, PruningKeepsTheNewestAndNeverReusesNumbers) {
  {
    PolicyStore s = openOk(3);
    for (int i = 1; i <= 5; i++) commitOk(s, "v" + std::to_string(i));
    EXPECT_EQ(versions(s), (std::vector<uint64_t>{5, 4, 3}));
    EXPECT_FALSE(exists("policies/1.yaml"));
    EXPECT_FALSE(exists("policies/2.json"));
    EXPECT_TRUE(exists("policies/3.yaml"));
    EXPECT_EQ(s.get(2).error().code(), ErrorCode::NotFound);
  }
  PolicyStore s = openOk(3);
  EXPECT_EQ(s.nextVersion(), 6u);
  EXPECT_EQ(commitOk(s, "v6").version, 6u);
}

TEST_F(PolicyStoreTest, NumbersSurviveLosingEveryVersionFile) {
  {
    PolicyStore s = openOk();
    commitOk(s, "a");
    commitOk(s, "b");
  }
  fs::remove_all(file("policies"));
  fs::remove(file("current"));
  PolicyStore s = openOk();
  EXPECT_FALSE(s.current().has_value());
  EXPECT_EQ(s.nextVersion(), 3u);
}

TEST_F(PolicyStoreTest, TheCurrentVersionIsNeverPruned) {
  {
    PolicyStore s = openOk(10);
    for (int i = 1; i <= 5; i++) commitOk(s, "v" + std::to_string(i));
    auto c = s.setCurrent(1);
    ASSERT_TRUE(c.has_value()) << c.error().str();
    EXPECT_EQ(c->version, 1u);
    EXPECT_EQ(read("current"), "1\n");
    EXPECT_EQ(s.nextVersion(), 6u);  // setCurrent creates no version
  }
  // Reopened with a smaller limit: the newest two stay, and version 1 because it is current.
  PolicyStore s = openOk(2);
  EXPECT_EQ(s.current()->version, 1u);
  EXPECT_EQ(versions(s), (std::vector<uint64_t>{5, 4, 1}));
  EXPECT_FALSE(exists("policies/2.yaml"));
  EXPECT_FALSE(exists("policies/3.json"));
  // A commit moves current to the new version; the old current may go now.
  commitOk(s, "v6");
  EXPECT_EQ(versions(s), (std::vector<uint64_t>{6, 5}));
}

TEST_F(PolicyStoreTest, KeepZeroKeepsEverything) {
  PolicyStore s = openOk(0);
  for (int i = 1; i <= 30; i++) commitOk(s, "v" + std::to_string(i));
  EXPECT_EQ(s.list()->size(), 30u);
}

TEST_F(PolicyStoreTest, RollbackIsANewVersionWithTheOldText) {
  // What the agent does (docs in policy_store.h): commit the old text again.
  PolicyStore s = openOk();
  StoredVersion v1 = commitOk(s, "first");
  commitOk(s, "second");
  auto old = s.get(1);
  ASSERT_TRUE(old.has_value());
  StoredVersion v3 = commitOk(s, old->second, "rollback to 1");
  EXPECT_EQ(v3.version, 3u);
  EXPECT_EQ(v3.hash, v1.hash);
  EXPECT_EQ(s.current()->origin, "rollback to 1");
  EXPECT_EQ(s.get(3)->second, "first");
}

TEST_F(PolicyStoreTest, SetCurrentRefusesAVersionItDoesNotHave) {
  PolicyStore s = openOk();
  commitOk(s, "a");
  auto r = s.setCurrent(7);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::NotFound);
  EXPECT_EQ(read("current"), "1\n");
}

TEST_F(PolicyStoreTest, ASecondOpenOfTheSameDirectoryIsRefused) {
  PolicyStore s = openOk();
  auto again = PolicyStore::open(dir_);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), ErrorCode::Unavailable);
  EXPECT_NE(again.error().str().find(dir_ + "/lock"), std::string::npos) << again.error().str();
  // A moved-from store gives the lock up with the object that holds it.
  { PolicyStore moved = std::move(s); }
  EXPECT_TRUE(PolicyStore::open(dir_).has_value());
}

// ---- interrupted writes ----

TEST_F(PolicyStoreTest, TemporaryFilesAreRemoved) {
  {
    PolicyStore s = openOk();
    commitOk(s, "one");
  }
  write("current.tmp", "2\n");
  write("last-version.tmp", "");
  write("policies/2.yaml.tmp", "half a poli");
  write("policies/2.json.tmp", "{\"vers");
  PolicyStore s = openOk();
  EXPECT_FALSE(exists("current.tmp"));
  EXPECT_FALSE(exists("last-version.tmp"));
  EXPECT_FALSE(exists("policies/2.yaml.tmp"));
  EXPECT_FALSE(exists("policies/2.json.tmp"));
  EXPECT_EQ(s.current()->version, 1u);
  EXPECT_EQ(versions(s), (std::vector<uint64_t>{1}));
  EXPECT_TRUE(s.problems().empty());
}

TEST_F(PolicyStoreTest, ACrashAfterReservingTheNumber) {
  {
    PolicyStore s = openOk();
    commitOk(s, "one");
  }
  write("last-version", "2\n");
  PolicyStore s = openOk();
  EXPECT_EQ(s.current()->version, 1u);
  EXPECT_EQ(s.nextVersion(), 3u);
}

TEST_F(PolicyStoreTest, ACrashBetweenTheYamlAndItsJson) {
  {
    PolicyStore s = openOk();
    commitOk(s, "one");
  }
  write("last-version", "2\n");
  write("policies/2.yaml", "two");
  PolicyStore s = openOk();
  EXPECT_FALSE(exists("policies/2.yaml"));  // an unfinished commit
  EXPECT_EQ(s.current()->version, 1u);
  EXPECT_EQ(versions(s), (std::vector<uint64_t>{1}));
  EXPECT_EQ(s.nextVersion(), 3u);
  EXPECT_TRUE(s.problems().empty());
}

TEST_F(PolicyStoreTest, ACrashBeforeCurrentMovedLeavesAnInactiveVersion) {
  {
    PolicyStore s = openOk();
    commitOk(s, "one");
    commitOk(s, "two");
  }
  write("current", "1\n");  // as if the last step of commit 2 never happened
  PolicyStore s = openOk();
  EXPECT_EQ(s.current()->version, 1u);
  EXPECT_EQ(versions(s), (std::vector<uint64_t>{2, 1}));
  EXPECT_EQ(s.nextVersion(), 3u);
}

TEST_F(PolicyStoreTest, AJsonWithoutItsYamlIsIgnoredAndReported) {
  {
    PolicyStore s = openOk();
    commitOk(s, "one");
    commitOk(s, "two");
    commitOk(s, "three");
  }
  write("current", "1\n");
  fs::remove(file("policies/3.yaml"));
  fs::remove(file("last-version"));
  PolicyStore s = openOk();
  EXPECT_EQ(s.current()->version, 1u);
  EXPECT_EQ(versions(s), (std::vector<uint64_t>{2, 1}));
  EXPECT_EQ(s.nextVersion(), 4u);  // 3 stays used
  ASSERT_EQ(s.problems().size(), 1u);
  EXPECT_EQ(s.problems()[0], dir_ + "/policies/3.yaml: missing; version 3 is ignored");
  auto got = s.get(3);
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().str(), dir_ + "/policies/3.yaml: No such file or directory");
}

// ---- damage ----

TEST_F(PolicyStoreTest, ACorruptCurrentFileIsAnErrorNamingIt) {
  {
    PolicyStore s = openOk();
    commitOk(s, "one");
  }
  write("current", "one\n");
  EXPECT_EQ(openError(), dir_ + "/current: expected a version number, found \"one\"");
  write("current", "");
  EXPECT_EQ(openError(), dir_ + "/current: expected a version number, found \"\"");
  write("current", "1\n");
  write("last-version", "-3");
  EXPECT_EQ(openError(), dir_ + "/last-version: expected a version number, found \"-3\"");
}

TEST_F(PolicyStoreTest, CurrentNamingAMissingOrDamagedVersionIsAnError) {
  {
    PolicyStore s = openOk();
    commitOk(s, "one");
    commitOk(s, "two");
  }
  write("current", "9\n");
  EXPECT_EQ(openError(),
            dir_ + "/current names version 9: version 9 is not stored in " + dir_ + "/policies");
  write("current", "2\n");
  write("policies/2.yaml", "tampered");
  EXPECT_EQ(openError(), dir_ + "/current names version 2: " + dir_ +
                             "/policies/2.yaml: content does not match the hash in " + dir_ +
                             "/policies/2.json (" + PolicyStore::hashOf("tampered") +
                             " != " + PolicyStore::hashOf("two") + ")");
  write("policies/2.yaml", "two");
  write("policies/2.json", "{\"version\": 2");
  const std::string e = openError();
  EXPECT_TRUE(e.starts_with(dir_ + "/current names version 2: " + dir_ +
                            "/policies/2.json: not valid JSON ("))
      << e;
  fs::remove(file("policies/2.json"));
  EXPECT_EQ(openError(), dir_ + "/current names version 2: " + dir_ +
                             "/policies/2.json: No such file or directory");
}

TEST_F(PolicyStoreTest, AnOlderDamagedVersionDoesNotStopTheStore) {
  {
    PolicyStore s = openOk();
    commitOk(s, "one");
    commitOk(s, "two");
    commitOk(s, "three");
  }
  write("policies/1.json", "[]");
  write("policies/2.json",
        "{\"version\": 5, \"hash\": \"sha256:x\", \"author\": \"a\", \"appliedAtMs\": 1, "
        "\"name\": \"n\", \"origin\": \"o\"}");
  PolicyStore s = openOk();
  EXPECT_EQ(s.current()->version, 3u);
  EXPECT_EQ(versions(s), (std::vector<uint64_t>{3}));
  ASSERT_EQ(s.problems().size(), 2u);
  EXPECT_EQ(s.problems()[0],
            dir_ + "/policies/1.json: expected a JSON object; version 1 is ignored");
  EXPECT_EQ(s.problems()[1],
            dir_ + "/policies/2.json: holds version 5, expected 2; version 2 is ignored");
  EXPECT_EQ(s.get(1).error().str(), dir_ + "/policies/1.json: expected a JSON object");
  EXPECT_EQ(s.get(1).error().code(), ErrorCode::Internal);
  // The files are left for whoever investigates.
  EXPECT_TRUE(exists("policies/1.json"));
}

TEST_F(PolicyStoreTest, FieldsAreChecked) {
  {
    PolicyStore s = openOk();
    commitOk(s, "one");
    commitOk(s, "two");
  }
  auto problemWith = [&](const std::string& json) {
    write("policies/1.json", json);
    PolicyStore s = openOk();
    return s.problems().empty() ? std::string("(none)") : s.problems()[0];
  };
  const std::string p = dir_ + "/policies/1.json: ";
  EXPECT_EQ(problemWith("{\"version\": 1}"),
            p + "field \"appliedAtMs\" is missing or not a number; version 1 is ignored");
  EXPECT_EQ(problemWith("{\"version\": \"1\"}"),
            p + "field \"version\" is missing or not a positive number; version 1 is ignored");
  EXPECT_EQ(problemWith("{\"version\": 1, \"appliedAtMs\": 5, \"hash\": 7}"),
            p + "field \"hash\" is missing or not a string; version 1 is ignored");
  EXPECT_EQ(problemWith("{\"version\": 1, \"appliedAtMs\": 5, \"hash\": \"md5:x\", \"author\": "
                        "\"\", \"name\": \"\", \"origin\": \"\"}"),
            p + "field \"hash\" is not a sha256 hash: \"md5:x\"; version 1 is ignored");
}

TEST_F(PolicyStoreTest, AStateDirectoryThatIsAFile) {
  fs::create_directories(root_);
  std::ofstream(dir_) << "not a directory";
  EXPECT_EQ(openError(), dir_ + ": Not a directory");
}

}  // namespace
}  // namespace edgeward::agent
