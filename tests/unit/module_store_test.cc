// The store of modules loaded through the API: entries read back whole, a replacement is atomic
// and keeps its place, what an interrupted write leaves is cleaned up, damaged entries are
// reported and do not hide the others, bad keys change nothing.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "agent/module_store.h"
#include "support/run.h"

namespace edgeward::agent {
namespace {

namespace fs = std::filesystem;
using namespace std::string_literals;

class ModuleStoreTest : public ::testing::Test {
 protected:
  ModuleStore openOk() {
    auto s = ModuleStore::open(root_);
    if (!s) ADD_FAILURE() << s.error().str();
    return std::move(*s);
  }
  static void saveOk(ModuleStore& s, const std::string& kind, const std::string& name,
                     const std::string& manifest, const std::string& wasm) {
    auto p = s.stage(kind, name, manifest, wasm);
    ASSERT_TRUE(p) << p.error().str();
    auto c = p->commit();
    ASSERT_TRUE(c) << c.error().str();
  }
  static ModuleStore::Listing listOk(const ModuleStore& s) {
    auto l = s.list();
    if (!l) ADD_FAILURE() << l.error().str();
    return l ? *l : ModuleStore::Listing{};
  }
  // kind/name of each listed module, in order.
  static std::vector<std::string> keys(const ModuleStore::Listing& l) {
    std::vector<std::string> out;
    for (const auto& m : l.modules) out.push_back(m.kind + "/" + m.name);
    return out;
  }
  // Everything below <root>/modules, relative paths, sorted.
  std::vector<std::string> tree() const {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(root_ + "/modules"))
      out.push_back(fs::relative(e.path(), root_ + "/modules").string());
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string path(const std::string& rel) const { return root_ + "/modules/" + rel; }
  void write(const std::string& rel, const std::string& text) const {
    std::ofstream(path(rel), std::ios::trunc | std::ios::binary) << text;
  }

  testing::TempDir tmp_{"ewt-modules"};
  const std::string root_ = tmp_.path();
};

const std::string kWasm = "\0asm\x01\0\0\0 with a NUL"s;  // bytes, not text

TEST_F(ModuleStoreTest, AnEntryReadsBackWholeAfterReopening) {
  {
    ModuleStore s = openOk();
    saveOk(s, "plugin", "event-filter", "kind: Plugin\nname: event-filter\n", kWasm);
    saveOk(s, "function", "wordcount", "kind: Function\n", "fn bytes");
  }
  ModuleStore s = openOk();
  auto l = listOk(s);
  EXPECT_TRUE(l.problems.empty()) << l.problems[0];
  ASSERT_EQ(keys(l), (std::vector<std::string>{"plugin/event-filter", "function/wordcount"}));
  EXPECT_EQ(l.modules[0].manifest, "kind: Plugin\nname: event-filter\n");
  EXPECT_EQ(l.modules[0].wasm, kWasm);
  EXPECT_EQ(l.modules[0].path, path("plugin/event-filter"));
  EXPECT_EQ(l.modules[1].wasm, "fn bytes");
  EXPECT_TRUE(s.contains("plugin", "event-filter"));
  EXPECT_FALSE(s.contains("function", "event-filter")) << "kinds are separate";
  EXPECT_EQ(tree(), (std::vector<std::string>{
                        "function", "function/wordcount", "function/wordcount/manifest.yaml",
                        "function/wordcount/module.wasm", "function/wordcount/order", "plugin",
                        "plugin/event-filter", "plugin/event-filter/manifest.yaml",
                        "plugin/event-filter/module.wasm", "plugin/event-filter/order"}))
      << "no temporary directories stay behind";
}

TEST_F(ModuleStoreTest, AReplacementIsInvisibleUntilCommittedThenWholeAndKeepsItsPlace) {
  ModuleStore s = openOk();
  saveOk(s, "plugin", "a", "a v1", "A1");
  saveOk(s, "plugin", "b", "b v1", "B1");

  auto p = s.stage("plugin", "a", "a v2", "A2 (longer than v1)");
  ASSERT_TRUE(p) << p.error().str();
  auto before = listOk(s);
  ASSERT_EQ(keys(before), (std::vector<std::string>{"plugin/a", "plugin/b"}));
  EXPECT_TRUE(before.problems.empty()) << "a staged entry is no damaged one";
  EXPECT_EQ(before.modules[0].manifest, "a v1") << "staged, not yet in place";
  EXPECT_EQ(before.modules[0].wasm, "A1");
  EXPECT_TRUE(fs::exists(path("plugin/.tmp-a/module.wasm")));

  ASSERT_TRUE(p->commit());
  auto after = listOk(s);
  ASSERT_EQ(keys(after), (std::vector<std::string>{"plugin/a", "plugin/b"}))
      << "a replacement keeps its place in the load order";
  EXPECT_EQ(after.modules[0].manifest, "a v2");
  EXPECT_EQ(after.modules[0].wasm, "A2 (longer than v1)");
  EXPECT_FALSE(fs::exists(path("plugin/.tmp-a"))) << "the old entry is deleted";

  saveOk(s, "function", "c", "c", "C");
  saveOk(s, "plugin", "0-first-by-name", "z", "Z");
  EXPECT_EQ(keys(listOk(s)), (std::vector<std::string>{"plugin/a", "plugin/b", "function/c",
                                                       "plugin/0-first-by-name"}))
      << "new entries come last, whatever their names";
}

TEST_F(ModuleStoreTest, AnUncommittedOrFailedWriteChangesNothing) {
  ModuleStore s = openOk();
  saveOk(s, "plugin", "a", "a v1", "A1");
  const auto files = tree();
  {
    auto p = s.stage("plugin", "a", "a v2", "A2");
    ASSERT_TRUE(p);
    auto q = s.stage("plugin", "new", "n", "N");
    ASSERT_TRUE(q);
  }  // e.g. the module did not load: nothing is committed
  EXPECT_EQ(tree(), files);

  // A commit that fails (here: its staged files vanished) leaves the stored entry as it was.
  auto p = s.stage("plugin", "a", "a v2", "A2");
  ASSERT_TRUE(p);
  fs::remove_all(path("plugin/.tmp-a"));
  auto c = p->commit();
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().str().find(path("plugin/a")), std::string::npos) << c.error().str();
  auto l = listOk(s);
  ASSERT_EQ(l.modules.size(), 1u);
  EXPECT_EQ(l.modules[0].manifest, "a v1");
  EXPECT_EQ(l.modules[0].wasm, "A1");
}

TEST_F(ModuleStoreTest, BadKindsAndNamesAreRefusedAndWriteNothing) {
  ModuleStore s = openOk();
  const auto files = tree();
  struct Case {
    const char *kind, *name, *error;
  };
  for (auto [kind, name, error] : {Case{"plugins", "a", "unknown module kind \"plugins\""},
                                   Case{"plugin", "", "\"\" is not a module name"},
                                   Case{"plugin", "../a", "\"../a\" is not a module name"},
                                   Case{"plugin", ".tmp-a", "\".tmp-a\" is not a module name"},
                                   Case{"plugin", "A", "\"A\" is not a module name"},
                                   Case{"function", "a/b", "\"a/b\" is not a module name"}}) {
    auto p = s.stage(kind, name, "m", "w");
    ASSERT_FALSE(p) << kind << " " << name;
    EXPECT_EQ(p.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(p.error().str().find(error), std::string::npos) << p.error().str();
    EXPECT_FALSE(s.remove(kind, name));
    EXPECT_FALSE(s.contains(kind, name));
  }
  auto long_ = s.stage("plugin", std::string(64, 'a'), "m", "w");
  EXPECT_FALSE(long_);
  EXPECT_EQ(tree(), files);
}

TEST_F(ModuleStoreTest, RemoveDeletesTheEntryAndSaysWhetherThereWasOne) {
  ModuleStore s = openOk();
  saveOk(s, "plugin", "a", "a", "A");
  saveOk(s, "function", "a", "a", "A");
  auto r = s.remove("plugin", "a");
  ASSERT_TRUE(r) << r.error().str();
  EXPECT_TRUE(*r);
  r = s.remove("plugin", "a");
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
  EXPECT_FALSE(s.contains("plugin", "a"));
  EXPECT_EQ(keys(listOk(s)), (std::vector<std::string>{"function/a"}));
  EXPECT_FALSE(fs::exists(path("plugin/.rm-a")));
}

TEST_F(ModuleStoreTest, OpenDeletesWhatAnInterruptedWriteOrRemovalLeft) {
  {
    ModuleStore s = openOk();
    saveOk(s, "plugin", "a", "a v2", "A2");
  }
  // A crash while staging b (half written), after a's exchange before its old copy was deleted,
  // and during a removal.
  fs::create_directories(path("plugin/.tmp-b"));
  write("plugin/.tmp-b/manifest.yaml", "half");
  fs::create_directories(path("plugin/.tmp-a"));
  write("plugin/.tmp-a/manifest.yaml", "a v1");
  fs::create_directories(path("function/.rm-c"));
  write("function/.rm-c/order", "3\n");

  ModuleStore s = openOk();
  EXPECT_TRUE(s.problems().empty());
  auto l = listOk(s);
  EXPECT_TRUE(l.problems.empty()) << l.problems[0];
  ASSERT_EQ(keys(l), (std::vector<std::string>{"plugin/a"}));
  EXPECT_EQ(l.modules[0].manifest, "a v2");
  EXPECT_FALSE(fs::exists(path("plugin/.tmp-b")));
  EXPECT_FALSE(fs::exists(path("plugin/.tmp-a")));
  EXPECT_FALSE(fs::exists(path("function/.rm-c")));
}

TEST_F(ModuleStoreTest, DamagedEntriesAreReportedAndTheOthersStillListed) {
  ModuleStore s = openOk();
  saveOk(s, "plugin", "good", "g", "G");
  saveOk(s, "plugin", "no-wasm", "m", "W");
  saveOk(s, "function", "bad-order", "m", "W");
  saveOk(s, "function", "unreadable", "m", "W");
  fs::remove(path("plugin/no-wasm/module.wasm"));
  write("function/bad-order/order", "seven\n");
  fs::remove(path("function/unreadable/manifest.yaml"));
  fs::create_directory(path("function/unreadable/manifest.yaml"));  // read() fails: EISDIR
  write("plugin/stray-file", "not an entry");
  fs::create_directory(path("plugin/Not-A-Name"));

  auto l = listOk(s);
  EXPECT_EQ(keys(l), (std::vector<std::string>{"plugin/good"}));
  ASSERT_EQ(l.problems.size(), 5u);
  auto problem = [&](const std::string& entry) {
    for (const auto& p : l.problems)
      if (p.starts_with(path(entry) + ":")) return p;
    return "(none for " + entry + ")"s;
  };
  EXPECT_NE(problem("plugin/no-wasm").find("module.wasm: No such file"), std::string::npos)
      << problem("plugin/no-wasm");
  EXPECT_NE(problem("function/bad-order").find("order: expected a number"), std::string::npos)
      << problem("function/bad-order");
  EXPECT_NE(problem("function/unreadable").find("manifest.yaml: Is a directory"), std::string::npos)
      << problem("function/unreadable");
  EXPECT_NE(problem("plugin/stray-file").find("Not a directory"), std::string::npos)
      << problem("plugin/stray-file");
  EXPECT_NE(problem("plugin/Not-A-Name").find("not a module name"), std::string::npos)
      << problem("plugin/Not-A-Name");

  // A damaged entry can be replaced, and removed.
  saveOk(s, "plugin", "no-wasm", "m2", "W2");
  auto r = s.remove("function", "unreadable");
  ASSERT_TRUE(r && *r);
  l = listOk(s);
  EXPECT_EQ(keys(l), (std::vector<std::string>{"plugin/good", "plugin/no-wasm"}));
  EXPECT_EQ(l.problems.size(), 3u);
}

TEST_F(ModuleStoreTest, OpenFailsNamingWhatIsInTheWay) {
  std::ofstream(root_ + "/modules") << "a file where the directory belongs";
  auto s = ModuleStore::open(root_);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().str().find(root_ + "/modules: Not a directory"), std::string::npos)
      << s.error().str();
}

}  // namespace
}  // namespace edgeward::agent
