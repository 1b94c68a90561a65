// WasmVm through each engine: compile errors, imports, calls, host functions, memory, traps.
#include <gtest/gtest.h>

#include "wasm/module_info.h"
#include "wasm_test_support.h"

namespace edgeward::wasm {
namespace {

using testing::EngineTest;
using testing::readGuest;
using enum ValType;

class WasmVmTest : public EngineTest {
 protected:
  void SetUp() override {
    vm_ = engine()(VmOptions{});
    auto bytes = readGuest("math");
    auto info = parseModule(bytes);
    ASSERT_TRUE(info) << info.error().message();
    auto mod = vm_->compile(bytes, *info);
    ASSERT_TRUE(mod) << mod.error().message();
    module_ = *mod;
  }
  void registerTestImports(WasmVm& vm) {
    vm.registerCallback({"test", "add64", {{I64, I64}, {I64}}, [](HostCall& c) {
                           return HostReturn::ok(c.u64(0) + c.u64(1));
                         }});
    vm.registerCallback({"test", "poke", {{I32, I32}, {}}, [this](HostCall& c) {
                           auto v = c.memory().view(c.u32(0), c.u32(1));
                           if (!v) return HostReturn::fail("poke outside memory");
                           poked_.assign(v->begin(), v->end());
                           return HostReturn::ok();
                         }});
  }
  uint64_t call(WasmVm& vm, std::string_view name, std::vector<uint64_t> args) {
    auto f = vm.getFunction(name);
    EXPECT_TRUE(f) << f.error().message();
    auto r = vm.call(*f, args);
    EXPECT_TRUE(r) << r.error().message();
    return r && r->value ? *r->value : ~0ull;
  }

  std::unique_ptr<WasmVm> vm_;
  std::shared_ptr<const CompiledModule> module_;
  std::vector<uint8_t> poked_;
};

TEST_P(WasmVmTest, CallsExportsWithI32AndI64AndHostFunctions) {
  ASSERT_TRUE(vm_->load(module_));
  registerTestImports(*vm_);
  ASSERT_TRUE(vm_->link());
  EXPECT_EQ(call(*vm_, "add", {40, 2}), 42u);
  EXPECT_EQ(call(*vm_, "add", {0xffffffffu, 1}), 0u);  // i32 wraps
  uint64_t big = 0x1234'5678'9abc'def0ull;
  EXPECT_EQ(call(*vm_, "add64_via_host", {big, 1}), big + 1);
}

TEST_P(WasmVmTest, HostFunctionsSeeGuestMemoryAndTheHostSeesItToo) {
  ASSERT_TRUE(vm_->load(module_));
  registerTestImports(*vm_);
  ASSERT_TRUE(vm_->link());
  call(*vm_, "store_then_poke", {100, 0x04030201});
  EXPECT_EQ(poked_, (std::vector<uint8_t>{1, 2, 3, 4}));
  Memory m = vm_->getMemory();
  EXPECT_EQ(m.size(), kWasmPageBytes);
  ASSERT_TRUE(m.store<uint32_t>(200, 777));
  EXPECT_EQ(call(*vm_, "load", {200}), 777u);
  EXPECT_FALSE(m.view(kWasmPageBytes - 2, 4)) << "views past the end are refused";
}

TEST_P(WasmVmTest, ACompiledModuleRunsInAnotherVm) {
  auto other = engine()(VmOptions{});
  ASSERT_TRUE(other->load(module_));
  registerTestImports(*other);
  ASSERT_TRUE(other->link());
  EXPECT_EQ(call(*other, "add", {1, 2}), 3u);
}

TEST_P(WasmVmTest, LinkAgainGivesAFreshInstance) {
  ASSERT_TRUE(vm_->load(module_));
  registerTestImports(*vm_);
  ASSERT_TRUE(vm_->link());
  EXPECT_EQ(call(*vm_, "bump", {}), 1u);
  EXPECT_EQ(call(*vm_, "bump", {}), 2u);
  ASSERT_TRUE(vm_->link());
  EXPECT_EQ(call(*vm_, "bump", {}), 1u);
}

TEST_P(WasmVmTest, MissingImportIsAClearError) {
  ASSERT_TRUE(vm_->load(module_));
  vm_->registerCallback(
      {"test", "add64", {{I64, I64}, {I64}}, [](HostCall&) { return HostReturn::ok(); }});
  auto r = vm_->link();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "the module imports test.poke, which edgeward does not provide");
}

TEST_P(WasmVmTest, ImportWithTheWrongSignatureIsAClearError) {
  ASSERT_TRUE(vm_->load(module_));
  vm_->registerCallback(
      {"test", "add64", {{I32, I32}, {I32}}, [](HostCall&) { return HostReturn::ok(); }});
  vm_->registerCallback(
      {"test", "poke", {{I32, I32}, {}}, [](HostCall&) { return HostReturn::ok(); }});
  auto r = vm_->link();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "the module imports test.add64 as (i64, i64) -> i64, but edgeward's has type (i32, "
            "i32) -> i32");
}

TEST_P(WasmVmTest, TrapsAreErrorsAndTheVmCanBeRelinked) {
  ASSERT_TRUE(vm_->load(module_));
  registerTestImports(*vm_);
  ASSERT_TRUE(vm_->link());
  auto f = vm_->getFunction("divide");
  ASSERT_TRUE(f);
  auto r = vm_->call(*f, std::vector<uint64_t>{1, 0});
  ASSERT_FALSE(r);
  EXPECT_EQ(vm_->failure(), Failure::Trap);
  EXPECT_NE(r.error().message().find("divide by zero"), std::string::npos) << r.error().message();
  auto load = vm_->getFunction("load");
  auto oob = vm_->call(*load, std::vector<uint64_t>{kWasmPageBytes});
  ASSERT_FALSE(oob);
  EXPECT_NE(oob.error().message().find("out of bounds"), std::string::npos)
      << oob.error().message();
  ASSERT_TRUE(vm_->link());
  EXPECT_EQ(call(*vm_, "add", {2, 2}), 4u);
}

TEST_P(WasmVmTest, HostFunctionFailureTrapsWithItsMessage) {
  ASSERT_TRUE(vm_->load(module_));
  registerTestImports(*vm_);
  ASSERT_TRUE(vm_->link());
  auto f = vm_->getFunction("store_then_poke");
  auto r = vm_->call(*f, std::vector<uint64_t>{kWasmPageBytes - 2, 1});  // store traps first
  ASSERT_FALSE(r);
  ASSERT_TRUE(vm_->link());
  auto g = vm_->getFunction("store_then_poke");
  r = vm_->call(*g, std::vector<uint64_t>{kWasmPageBytes - 4, 1});  // store fits, poke of 4 fits
  EXPECT_TRUE(r) << r.error().message();
}

TEST_P(WasmVmTest, MissingExportIsAClearError) {
  ASSERT_TRUE(vm_->load(module_));
  registerTestImports(*vm_);
  ASSERT_TRUE(vm_->link());
  auto f = vm_->getFunction("nope");
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().message(), "the module does not export a function \"nope\"");
}

TEST_P(WasmVmTest, MemoryCapStopsGrowthAtTheLimit) {
  auto bytes = readGuest("math");
  auto capped = capMemory(bytes, 2);
  ASSERT_TRUE(capped) << capped.error().message();
  auto info = parseModule(*capped);
  ASSERT_TRUE(info);
  ASSERT_EQ(info->memory->max, 2u);
  auto mod = vm_->compile(*capped, *info);
  ASSERT_TRUE(mod) << mod.error().message();
  ASSERT_TRUE(vm_->load(*mod));
  registerTestImports(*vm_);
  ASSERT_TRUE(vm_->link());
  EXPECT_EQ(call(*vm_, "grow", {1}), 1u);                        // 1 -> 2 pages: old size
  EXPECT_EQ(static_cast<int32_t>(call(*vm_, "grow", {1})), -1);  // over the cap: refused
}

TEST_P(WasmVmTest, InvalidBytesGiveACompileErrorWithTheOffset) {
  std::vector<uint8_t> bytes = readGuest("math");
  bytes[bytes.size() - 3] ^= 0xff;  // inside the code section
  auto info = parseModule(bytes);
  if (!info) GTEST_SKIP() << "the parser already refused it: " << info.error().message();
  auto mod = vm_->compile(bytes, *info);
  ASSERT_FALSE(mod);
  EXPECT_EQ(mod.error().message().rfind("invalid WebAssembly module: ", 0), 0u)
      << mod.error().message();
  EXPECT_NE(mod.error().message().find("@+"), std::string::npos) << mod.error().message();
}

EW_INSTANTIATE_ENGINES(WasmVmTest);

}  // namespace
}  // namespace edgeward::wasm
