// Manifests (strict YAML), operator caps, and the module parser's errors.
#include <gtest/gtest.h>

#include "wasm/manifest.h"
#include "wasm/module_info.h"
#include "wasm_test_support.h"

namespace edgeward::wasm {
namespace {

Result<Manifest> parse(std::string_view text) { return parseManifest(text, "m.yaml"); }

TEST(ManifestTest, FullPluginManifest) {
  auto m = parse(R"(apiVersion: edgeward.io/v1
kind: Plugin
name: drop-ssh
version: "1.2"
events: [drop, tcp_open]
limits:
  memory: 8MiB
  cpuPerCall: 5ms
  instances: 3
  callsPerSecond: 1000
failure:
  policy: fail-closed
  disableAfter: 4
wasi:
  args: [--verbose]
  env: {MODE: strict}
  dirs:
    - {host: /var/lib/geo, guest: /geo}
)");
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(m->name, "drop-ssh");
  EXPECT_EQ(m->version, "1.2");
  EXPECT_EQ(m->events, (std::vector<uint16_t>{1, 3}));
  EXPECT_EQ(m->limits.memoryBytes, 8u << 20);
  EXPECT_EQ(m->limits.cpuPerCallNs, 5'000'000u);
  EXPECT_EQ(m->limits.instances, 3u);
  EXPECT_EQ(m->limits.callsPerSecond, 1000u);
  EXPECT_EQ(m->failure, FailurePolicy::FailClosed);
  EXPECT_EQ(m->disableAfter, 4u);
  EXPECT_EQ(m->args, (std::vector<std::string>{"--verbose"}));
  ASSERT_EQ(m->env.size(), 1u);
  ASSERT_EQ(m->dirs.size(), 1u);
  EXPECT_EQ(m->dirs[0].guest, "/geo");
  EXPECT_FALSE(m->dirs[0].writable);
}

TEST(ManifestTest, ErrorsNameTheLineAndField) {
  const std::string head = "apiVersion: edgeward.io/v1\nkind: Plugin\nname: p\n";
  auto e = [&](const std::string& tail) {
    auto m = parse(head + tail);
    EXPECT_FALSE(m);
    return m ? std::string() : m.error().message();
  };
  EXPECT_EQ(e("limit:\n  memory: 1MiB\n"),
            "m.yaml:4: limit: unknown field \"limit\" (did you mean \"limits\"?)");
  EXPECT_EQ(e("limits:\n  memory: 1MB\n"),
            "m.yaml:5: limits.memory: \"1MB\" has an unknown unit (expected one of (none), B, KiB, "
            "MiB, GiB)");
  EXPECT_EQ(e("limits:\n  cpuPerCall: fast\n"),
            "m.yaml:5: limits.cpuPerCall: \"fast\" is not a duration (like 10ms)");
  EXPECT_EQ(e("limits:\n  instances: 0\n"), "m.yaml:5: limits.instances: must be at least 1");
  EXPECT_EQ(e("events: [drops]\n"),
            "m.yaml:4: events[0]: unknown event kind \"drops\" (did you mean \"drop\"?)");
  EXPECT_EQ(e("failure:\n  policy: ignore\n"),
            "m.yaml:5: failure.policy: unknown policy \"ignore\" (expected fail-open, fail-closed "
            "or reload)");
  EXPECT_EQ(e("wasi:\n  dirs:\n    - {host: rel, guest: /x}\n"),
            "m.yaml:6: wasi.dirs[0].host: must be an absolute path");
  auto bad = parse("apiVersion: edgeward.io/v1\nkind: Plugin\nname: Bad_Name\n");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(),
            "m.yaml:3: name: \"Bad_Name\" is not a valid name (lower-case letters, digits and '-', "
            "at most 63)");
}

TEST(ManifestTest, ResolveAppliesDefaultsCapsAndGrants) {
  OperatorCaps caps;
  caps.max.memoryBytes = 32u << 20;
  caps.max.callsPerSecond = 500;
  caps.grants = {{"/srv/data", false}, {"/srv/data/out", true}};
  Manifest m;
  m.name = "p";
  m.limits.memoryBytes = 1u << 30;
  m.dirs = {{"/srv/data/in", "/in", false}, {"/srv/data/out/x", "/out", true}};
  auto e = resolve(m, caps);
  ASSERT_TRUE(e) << e.error().message();
  EXPECT_EQ(e->limits.memoryBytes, 32u << 20) << "capped";
  EXPECT_EQ(e->limits.cpuPerCallNs, caps.defaults.cpuPerCallNs) << "defaulted";
  EXPECT_EQ(e->limits.callsPerSecond, 500u) << "unlimited asks get the operator's cap";
  ASSERT_EQ(e->dirs.size(), 2u);
  EXPECT_TRUE(e->dirs[1].writable);
  m.dirs = {{"/srv/database", "/db", false}};
  auto denied = resolve(m, caps);
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().message(),
            "p: wasi.dirs[0]: /srv/database is not granted by the operator");
  m.dirs = {{"/srv/data/../etc", "/etc", false}};
  EXPECT_FALSE(resolve(m, caps));
}

TEST(ModuleInfoTest, ParsesImportsExportsAndMemory) {
  auto info = parseModule(testing::readGuest("math"));
  ASSERT_TRUE(info) << info.error().message();
  ASSERT_EQ(info->imports.size(), 2u);
  EXPECT_EQ(info->imports[0].module, "test");
  EXPECT_EQ(describe(info->imports[0].type), "(i64, i64) -> i64");
  const Export* add = info->findExport("add", ExternKind::Func);
  ASSERT_NE(add, nullptr);
  EXPECT_EQ(describe(add->type), "(i32, i32) -> i32");
  ASSERT_TRUE(info->memory);
  EXPECT_EQ(info->memory->min, 1u);
  EXPECT_EQ(info->memory->max, 4u);
}

TEST(ModuleInfoTest, ExportMutableGlobalsAddsExportsOnly) {
  auto bytes = testing::readGuest("wasi_probe");
  auto before = parseModule(bytes);
  ASSERT_TRUE(before) << before.error().message();
  auto out = exportMutableGlobals(bytes);
  ASSERT_TRUE(out) << out.error().message();
  auto after = parseModule(*out);
  ASSERT_TRUE(after) << after.error().message();
  size_t mutableGlobals = 0;
  for (const auto& g : before->globals) mutableGlobals += g.mutable_;
  ASSERT_GE(mutableGlobals, 1u) << "wasi-libc has __stack_pointer";
  EXPECT_EQ(after->exports.size(), before->exports.size() + mutableGlobals);
  EXPECT_EQ(after->imports.size(), before->imports.size());
  EXPECT_EQ(after->globals.size(), before->globals.size());
  EXPECT_EQ(after->exports.back().name.rfind(kGlobalExportPrefix, 0), 0u);
  EXPECT_EQ(after->exports.back().kind, ExternKind::Global);
  // A module without an export section gets one.
  std::vector<uint8_t> tiny = {0, 'a', 's', 'm', 1, 0, 0, 0, 6, 6, 1, 0x7f, 1, 0x41, 0, 0x0b};
  auto t = exportMutableGlobals(tiny);
  ASSERT_TRUE(t) << t.error().message();
  auto ti = parseModule(*t);
  ASSERT_TRUE(ti) << ti.error().message();
  ASSERT_EQ(ti->exports.size(), 1u);
  EXPECT_EQ(ti->exports[0].name, "__ew_global_0");
}

TEST(ModuleInfoTest, MalformedHeadersGetClearErrors) {
  auto e = [](std::vector<uint8_t> b) {
    auto r = parseModule(b);
    return r ? std::string("parsed") : r.error().message();
  };
  EXPECT_EQ(e({}),
            "0 bytes is too short for a WebAssembly module (it needs at least the 8-byte header)");
  EXPECT_EQ(e({'\x7f', 'E', 'L', 'F', 2, 1, 1, 0}),
            "not a WebAssembly module: the file does not start with \\0asm");
  EXPECT_EQ(e({0, 'a', 's', 'm', 2, 0, 0, 0}),
            "offset 4: WebAssembly binary version 2 is not supported (only 1)");
  EXPECT_EQ(e({0, 'a', 's', 'm', 1, 0, 0, 0, 1, 50, 0}),
            "offset 8: section 1 claims 50 bytes but only 1 remain");
  EXPECT_EQ(e({0, 'a', 's', 'm', 1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x7f}),
            "offset 9: section size is not a valid LEB128 u32");
  EXPECT_EQ(e({0, 'a', 's', 'm', 1, 0, 0, 0, 3, 1, 0, 1, 1, 0}),
            "offset 11: section 1 is out of order or repeated");
  EXPECT_EQ(e({0, 'a', 's', 'm', 1, 0, 0, 0, 5, 3, 1, 2, 0}),
            "offset 11: memory limits flags 0x02 (shared or 64-bit memory) are not supported");
  // Names inside the module are shown escaped, so the error stays one line (found by fuzz_test).
  EXPECT_EQ(e({0, 'a', 's', 'm', 1, 0, 0, 0, 7, 7, 1, 3, 'a', '\n', 0, 9, 0}),
            "offset 15: export \"a\\n\\x00\" has unknown kind 9");
}

TEST(ModuleInfoTest, ResettableInPlaceUnlessTheCodeChangesTablesOrSegments) {
  for (const char* guest : {"wasi_probe", "math", "test_plugin"}) {
    auto r = resettableInPlace(testing::readGuest(guest));
    ASSERT_TRUE(r) << guest << ": " << r.error().message();
    EXPECT_TRUE(*r) << guest;
  }
  for (const char* example : {"wordcount", "json_transform", "enricher", "event_filter"}) {
    auto r = resettableInPlace(testing::readExample(example));
    ASSERT_TRUE(r) << example << ": " << r.error().message();
    EXPECT_TRUE(*r) << example << ": clang's output keeps its state in memory and globals";
  }
  auto t = resettableInPlace(testing::readGuest("table_state"));
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_FALSE(*t) << "table.set";

  // One function () -> () whose body is `code` (without locals), after a type and function section.
  auto withBody = [](std::vector<uint8_t> code) {
    std::vector<uint8_t> b = {0, 'a', 's', 'm', 1, 0, 0, 0, 1, 4, 1, 0x60, 0, 0, 3, 2, 1, 0};
    const uint8_t body = static_cast<uint8_t>(code.size() + 1);  // + the local group count
    b.insert(b.end(), {10, static_cast<uint8_t>(body + 2), 1, body, 0});
    b.insert(b.end(), code.begin(), code.end());
    return b;
  };
  auto check = [&](std::vector<uint8_t> code) {
    auto r = resettableInPlace(withBody(std::move(code)));
    return r ? (*r ? "resettable" : "instantiate again") : r.error().message();
  };
  EXPECT_EQ(check({0x41, 0x7f, 0x1a, 0x0b}), "resettable");              // i32.const -1; drop; end
  EXPECT_EQ(check({0x02, 0x40, 0x0c, 0x00, 0x0b, 0x0b}), "resettable");  // block; br 0; end
  EXPECT_EQ(check({0x44, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x1a, 0x0b}), "resettable");  // f64.const 1
  EXPECT_EQ(check({0x02, 0xc0, 0x00, 0x0b, 0x0b}), "resettable");   // block (type 64): s33 index
  EXPECT_EQ(check({0xfc, 0x09, 0x00, 0x0b}), "instantiate again");  // data.drop 0
  EXPECT_EQ(check({0xfc, 0x0d, 0x00, 0x0b}), "instantiate again");  // elem.drop 0
  EXPECT_EQ(check({0x06, 0x40, 0x0b, 0x0b}), "instantiate again");  // try: not known
  EXPECT_EQ(check({0x41, 0x80, 0x80, 0x80}), "offset 27: unexpected end of instruction immediate");
}

}  // namespace
}  // namespace edgeward::wasm
