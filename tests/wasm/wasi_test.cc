// WASI preview1 through a real wasi-libc program (guests/wasi_probe.c), one test per function
// the runtime implements and per capability it denies.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "wasm/function_runner.h"
#include "wasm/wasi/wasi.h"
#include "wasm_test_support.h"

namespace edgeward::wasm {
namespace {

namespace fs = std::filesystem;
using testing::EngineTest;
using testing::functionManifest;
using testing::readGuest;

class WasiTest : public EngineTest {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / fmt::format("ew-wasi-test-{}", ::getpid());
    fs::remove_all(root_);
    fs::create_directories(root_ / "ro" / "sub");
    fs::create_directories(root_ / "rw");
    fs::create_directories(root_ / "secret");
    std::ofstream(root_ / "ro" / "hello.txt") << "hello, guest";
    std::ofstream(root_ / "secret" / "key") << "top secret";
    fs::create_symlink(root_ / "secret" / "key", root_ / "ro" / "escape-link");
    fs::create_symlink("hello.txt", root_ / "ro" / "inner-link");
    caps_.grants = {{(root_ / "ro").string(), false}, {(root_ / "rw").string(), true}};
  }
  void TearDown() override { fs::remove_all(root_); }

  // Runs wasi_probe with `args`, the test's directories mounted at /ro and /rw.
  Result<InvokeResult> probe(std::vector<std::string> args, std::string input = "",
                             std::vector<std::string> env = {}) {
    FunctionRunner fr(caps_, engine());
    Manifest m = functionManifest("probe", std::move(args));
    m.env = {{"GREETING", "hi there"}};
    m.dirs = {{(root_ / "ro").string(), "/ro", false}, {(root_ / "rw").string(), "/rw", true}};
    auto d = fr.deploy(m, readGuest("wasi_probe"));
    if (!d) return std::unexpected(d.error());
    return fr.invoke("probe", std::move(input), std::move(env));
  }
  std::string out(std::vector<std::string> args, std::string input = "") {
    auto r = probe(std::move(args), std::move(input));
    EXPECT_TRUE(r) << r.error().message();
    return r ? r->out : "";
  }

  fs::path root_;
  OperatorCaps caps_;
};

TEST_P(WasiTest, ArgsGet) {
  EXPECT_EQ(out({"args", "a b", "c"}), "argc=4 [probe] [args] [a b] [c]\n");
}

TEST_P(WasiTest, EnvironGetWithManifestAndPerCallVariables) {
  auto r = probe({"env"}, "", {"EW_CALLER=client-a"});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->out, "n=2 GREETING=hi there EW_CALLER=client-a\n");
  EXPECT_EQ(out({"env"}), "n=1 GREETING=hi there EW_CALLER=(unset)\n")
      << "per-call variables do not leak";
}

TEST_P(WasiTest, ClockTimeGetAndClockResGet) {
  std::string o = out({"clock"});
  long long realtime = 0;
  int advanced = 0;
  long res = -1;
  ASSERT_EQ(std::sscanf(o.c_str(), "realtime=%lld monotonic_advanced=%d res_ns=%ld", &realtime,
                        &advanced, &res),
            3)
      << o;
  EXPECT_NEAR(realtime, static_cast<long long>(::time(nullptr)), 5);
  EXPECT_EQ(advanced, 1);
  EXPECT_GE(res, 1);
}

TEST_P(WasiTest, RandomGet) {
  std::string o = out({"random"});
  int differ = 0, zeros = 99;
  ASSERT_EQ(std::sscanf(o.c_str(), "differ=%d zeros=%d", &differ, &zeros), 2) << o;
  EXPECT_EQ(differ, 1);
  EXPECT_LT(zeros, 8);
}

TEST_P(WasiTest, FdReadStdinAndFdWriteStdoutStderr) {
  std::string input(100'000, 'q');
  input += "end";
  auto r = probe({"cat"}, input);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->out, input);
  EXPECT_EQ(r->err, "copied 100003 bytes\n");
  EXPECT_EQ(r->exitCode, 0);
}

TEST_P(WasiTest, ProcExitReportsTheCode) {
  auto r = probe({"exit", "7"});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->exitCode, 7);
  EXPECT_EQ(r->out, "exiting\n");
  auto main2 = probe({"no-such-command"});
  ASSERT_TRUE(main2);
  EXPECT_EQ(main2->exitCode, 2) << "main's return value is the exit code";
}

TEST_P(WasiTest, PathOpenFdReadUnderAGrantedDirectory) {
  EXPECT_EQ(out({"read", "/ro/hello.txt"}), "read 12: hello, guest\n");
  EXPECT_EQ(out({"read", "/ro/inner-link"}), "read 12: hello, guest\n")
      << "symlinks inside are fine";
}

TEST_P(WasiTest, FdSeekFdTellAndFilestat) {
  EXPECT_EQ(out({"seek", "/ro/hello.txt"}), "size=12 tail=llo, guest n=10\n");
  EXPECT_EQ(out({"stat", "/ro/hello.txt"}), "size=12 dir=0\n");
  EXPECT_EQ(out({"stat", "/ro/sub"}), "size=4096 dir=1\n");
}

TEST_P(WasiTest, WritesGoToAWritableDirectory) {
  EXPECT_EQ(out({"write", "/rw/new.txt", "written by the guest"}), "ok\n");
  std::ifstream f(root_ / "rw" / "new.txt");
  std::string content((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "written by the guest");
  EXPECT_EQ(out({"append", "/rw/new.txt", "!"}), "ok\n");
  EXPECT_EQ(fs::file_size(root_ / "rw" / "new.txt"), 21u);
  EXPECT_EQ(out({"mkdir", "/rw/d"}), "ok\n");
  EXPECT_TRUE(fs::is_directory(root_ / "rw" / "d"));
  EXPECT_EQ(out({"rmdir", "/rw/d"}), "ok\n");
  EXPECT_FALSE(fs::exists(root_ / "rw" / "d"));
  EXPECT_EQ(out({"unlink", "/rw/new.txt"}), "ok\n");
  EXPECT_FALSE(fs::exists(root_ / "rw" / "new.txt"));
}

// Denied capabilities: each answers the guest with ENOTCAPABLE (76) or the errno it would get.
TEST_P(WasiTest, ReadOnlyDirectoryRefusesWrites) {
  EXPECT_EQ(out({"write", "/ro/new.txt", "x"}), "errno=76\n");
  EXPECT_FALSE(fs::exists(root_ / "ro" / "new.txt"));
  EXPECT_EQ(out({"append", "/ro/hello.txt", "x"}), "errno=76\n");
  EXPECT_EQ(out({"mkdir", "/ro/d"}), "errno=76\n");
  EXPECT_EQ(out({"unlink", "/ro/hello.txt"}), "errno=76\n");
  EXPECT_TRUE(fs::exists(root_ / "ro" / "hello.txt"));
}

TEST_P(WasiTest, DotDotEscapeIsRefused) {
  // wasi-libc resolves "/ro/../secret/key" itself to a path under no preopen: ENOENT or
  // ENOTCAPABLE; a relative escape through the preopen reaches the host and gets ENOTCAPABLE.
  EXPECT_EQ(out({"read", "/ro/sub/../../secret/key"}), "errno=76\n");
  EXPECT_EQ(out({"read", "/ro/../secret/key"}).rfind("errno=", 0), 0u);
}

TEST_P(WasiTest, SymlinkEscapeIsRefused) {
  EXPECT_EQ(out({"read", "/ro/escape-link"}), "errno=76\n");
  EXPECT_EQ(out({"stat", "/ro/escape-link"}), "errno=76\n");
}

TEST_P(WasiTest, UngrantedPathsAreInvisible) {
  std::string secret = (root_ / "secret" / "key").string();
  EXPECT_EQ(out({"read", secret}).rfind("errno=", 0), 0u);
  EXPECT_EQ(out({"read", "/etc/passwd"}).rfind("errno=", 0), 0u);
}

TEST_P(WasiTest, SocketsAreNotCapable) { EXPECT_EQ(out({"socket"}), "errno=76\n"); }

TEST_P(WasiTest, UnimplementedFunctionsAnswerNosys) {
  EXPECT_EQ(out({"nosys"}), "badf=8 nosys=52\n");
}

TEST_P(WasiTest, ManifestAskingForAnUngrantedDirectoryIsRefusedAtDeploy) {
  FunctionRunner fr(caps_, engine());
  Manifest m = functionManifest("probe", {"args"});
  m.dirs = {{(root_ / "secret").string(), "/s", false}};
  auto d = fr.deploy(m, readGuest("wasi_probe"));
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().message(),
            fmt::format("probe: wasi.dirs[0]: {} is not granted by the operator",
                        (root_ / "secret").string()));
  m.dirs = {{(root_ / "ro").string(), "/ro", true}};
  d = fr.deploy(m, readGuest("wasi_probe"));
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message().find("granted read-only, the manifest asks for writable"),
            std::string::npos);
  EXPECT_TRUE(fr.list().empty()) << "a refused deploy changes nothing";
}

// A function's instance is reset (or instantiated again) between calls: no state leaks from one
// caller to the next, whether the call returned, exited or grew its memory.
TEST_P(WasiTest, EveryCallStartsFromAFreshInstance) {
  FunctionRunner fr(caps_, engine());
  Manifest m = functionManifest("state", {"state"});
  m.limits.instances = 1;  // the same instance every time
  ASSERT_TRUE(fr.deploy(m, readGuest("wasi_probe")));
  Manifest exiting = functionManifest("exiting", {"state", "3"});
  exiting.limits.instances = 1;
  ASSERT_TRUE(fr.deploy(exiting, readGuest("wasi_probe")));
  Manifest grow = functionManifest("grow", {"grow"});
  grow.limits.instances = 1;
  ASSERT_TRUE(fr.deploy(grow, readGuest("wasi_probe")));
  for (int i = 0; i < 5; i++) {
    auto r = fr.invoke("state", "");
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->out, "calls=1 heap_kept=0\n");
    auto e = fr.invoke("exiting", "");
    ASSERT_TRUE(e) << e.error().message();
    EXPECT_EQ(e->out, "calls=1 heap_kept=0\n");
    EXPECT_EQ(e->exitCode, 3);
    auto g = fr.invoke("grow", "");
    ASSERT_TRUE(g) << g.error().message();
    EXPECT_EQ(g->out, "grew=1\n");
  }
  for (const auto& f : fr.list()) EXPECT_TRUE(f.resetsInPlace) << f.name;
}

// A module that changes its table is instantiated again for every call: putting memory and
// globals back would keep the table as the last caller left it.
TEST_P(WasiTest, ATableChangedByACallIsNotCarriedToTheNext) {
  FunctionRunner fr(caps_, engine());
  Manifest m = functionManifest("table", {});
  m.limits.instances = 1;
  ASSERT_TRUE(fr.deploy(m, readGuest("table_state")));
  for (int i = 0; i < 4; i++) {
    auto r = fr.invoke("table", "");
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->exitCode, 3) << "call " << i;
  }
  auto listed = fr.list();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_FALSE(listed[0].resetsInPlace);
  EXPECT_EQ(listed[0].invocations, 4u);
  uint64_t timed = 0;
  for (uint64_t n : listed[0].callBuckets) timed += n;
  EXPECT_EQ(timed, 4u) << "every call is in the duration histogram";
  EXPECT_GT(listed[0].callNsTotal, 0u);
}

EW_INSTANTIATE_ENGINES(WasiTest);

}  // namespace
}  // namespace edgeward::wasm
