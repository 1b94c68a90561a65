// WasmVm: the one interface in front of every WebAssembly engine (DESIGN.md, STYLE.md habit 5).
//
// A WasmVm is one sandbox: its own engine state (a V8 isolate) holding at most one instance of
// one module at a time. It is used by one thread at a time (the pool hands it out); terminate()
// alone may be called from any thread. Engines are private behind createXxxVm() (engines.h).
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "wasm/module_info.h"

namespace edgeward::wasm {

// Guest linear memory as seen by a host function: every access is bounds-checked.
class Memory {
 public:
  Memory() = default;
  Memory(uint8_t* base, size_t size) : base_(base), size_(size) {}

  size_t size() const { return size_; }
  // The bytes [ptr, ptr+len), or nullopt when they are not all inside the memory.
  std::optional<std::span<uint8_t>> view(uint32_t ptr, uint32_t len) const {
    if (base_ == nullptr || uint64_t{ptr} + len > size_) return std::nullopt;
    return std::span<uint8_t>(base_ + ptr, len);
  }
  std::optional<std::string_view> string(uint32_t ptr, uint32_t len) const {
    auto v = view(ptr, len);
    if (!v) return std::nullopt;
    return std::string_view(reinterpret_cast<const char*>(v->data()), v->size());
  }
  template <typename T>
  bool load(uint32_t ptr, T& out) const {
    auto v = view(ptr, sizeof(T));
    if (!v) return false;
    std::memcpy(&out, v->data(), sizeof(T));  // wasm is little-endian, like the hosts we run on
    return true;
  }
  template <typename T>
  bool store(uint32_t ptr, const T& value) const {
    auto v = view(ptr, sizeof(T));
    if (!v) return false;
    std::memcpy(v->data(), &value, sizeof(T));
    return true;
  }
  bool write(uint32_t ptr, std::span<const uint8_t> bytes) const {
    auto v = view(ptr, static_cast<uint32_t>(bytes.size()));
    if (!v || bytes.size() > UINT32_MAX) return false;
    if (!bytes.empty()) std::memcpy(v->data(), bytes.data(), bytes.size());
    return true;
  }

 private:
  uint8_t* base_ = nullptr;
  size_t size_ = 0;
};

class WasmVm;

// What a host function sees of the call that reached it.
class HostCall {
 public:
  HostCall(WasmVm& vm, std::span<const uint64_t> args) : vm_(vm), args_(args) {}
  uint32_t u32(size_t i) const { return static_cast<uint32_t>(args_[i]); }
  int32_t i32(size_t i) const { return static_cast<int32_t>(args_[i]); }
  uint64_t u64(size_t i) const { return args_[i]; }
  size_t argCount() const { return args_.size(); }
  WasmVm& vm() const { return vm_; }
  Memory memory() const;

 private:
  WasmVm& vm_;
  std::span<const uint64_t> args_;
};

// A host function's answer: a value (ignored for functions without a result), or a failure
// that traps the guest with this message (the instance is then discarded). exit() ends the
// guest on purpose (WASI proc_exit): the call reports the exit code, not an error.
struct HostReturn {
  uint64_t value = 0;
  std::optional<std::string> trap;
  std::optional<int> exit;

  static HostReturn ok(uint64_t v = 0) { return {v, std::nullopt, std::nullopt}; }
  static HostReturn fail(std::string message) { return {0, std::move(message), std::nullopt}; }
  static HostReturn exitWith(int code) { return {0, std::nullopt, code}; }
};

using HostCallback = std::function<HostReturn(HostCall&)>;

// One import the host provides. The engine checks the guest's import signature against it.
struct HostFunction {
  std::string module;
  std::string name;
  FuncType type;
  HostCallback callback;
  // Accept the import whatever its signature (stubs that only return an errno, as i32).
  bool anySignature = false;
};

// Engine-specific compiled code, shareable between VMs of the same engine (and threads).
class CompiledModule {
 public:
  virtual ~CompiledModule() = default;
  virtual std::string_view engine() const = 0;
  const ModuleInfo& info() const { return info_; }

 protected:
  explicit CompiledModule(ModuleInfo info) : info_(std::move(info)) {}

 private:
  ModuleInfo info_;
};

// Why a call did not return normally. Everything but Exit means the instance is unusable.
enum class Failure {
  None,
  Exit,     // proc_exit: not an error for commands
  Timeout,  // the CPU-time limit of the call
  Memory,   // linear memory at its limit and the guest trapped
  Stack,    // call stack exhausted (deep recursion)
  Trap,     // unreachable, out-of-bounds access, division by zero, ...
  Host,     // a host function refused (bad pointer, output limit, ...)
  Engine,   // the engine failed (not the guest's fault)
};
std::string_view failureName(Failure f);

struct CallOutcome {
  std::optional<uint64_t> value;  // the export's result, if it has one
  std::optional<int> exitCode;    // set when the guest called proc_exit
};

// Options fixed when the VM is created.
struct VmOptions {
  uint64_t cpuLimitNs = 0;  // per call; 0 = none
};

class WasmVm {
 public:
  virtual ~WasmVm() = default;
  virtual std::string_view engine() const = 0;

  // Compiles (and fully validates) a module; the result can be loaded into any VM of this
  // engine. `bytes` must already have passed parseModule() (info).
  virtual Result<std::shared_ptr<const CompiledModule>> compile(std::span<const uint8_t> bytes,
                                                                ModuleInfo info) = 0;
  // Chooses the module the next link() instantiates.
  virtual Result<void> load(std::shared_ptr<const CompiledModule> module) = 0;
  // Adds an import; every import of the module must be registered before link().
  virtual void registerCallback(HostFunction f) = 0;
  // Instantiates the loaded module (again: a fresh instance replaces the previous one).
  virtual Result<void> link() = 0;
  // Index of an exported function for call(), or an error naming the missing export.
  virtual Result<int> getFunction(std::string_view name) = 0;
  virtual bool hasFunction(std::string_view name) const = 0;
  // Calls an export. On failure, failure() says why and the instance must be re-linked or the
  // VM discarded before the next call.
  virtual Result<CallOutcome> call(int function, std::span<const uint64_t> args) = 0;
  virtual Failure failure() const = 0;
  // The instance's linear memory (empty if it has none). Valid until the guest runs again.
  virtual Memory getMemory() = 0;
  // Stops the running call (any thread); the call fails with Failure::Timeout.
  virtual void terminate() = 0;
  // Saves the instance's state: its memory and the mutable globals the module exports (see
  // exportMutableGlobals). restore() puts that state back, which is an instance as fresh as a new
  // link() (tables aside: C toolchains never write them), and answers false when it cannot
  // (the memory grew): link() again then.
  virtual Result<void> snapshot() {
    return fail(ErrorCode::Internal, "snapshots are not supported");
  }
  virtual Result<bool> restore() { return false; }
  // Pins the VM to the calling thread until unbind(), so the calls in between skip the per-call
  // engine locking. The pool binds a VM for the duration of a lease.
  virtual void bind() {}
  virtual void unbind() {}

  // Host-side state the embedder attaches (WASI context, plugin context).
  void setUserData(void* p) { userData_ = p; }
  void* userData() const { return userData_; }

 private:
  void* userData_ = nullptr;
};

inline Memory HostCall::memory() const { return vm_.getMemory(); }

}  // namespace edgeward::wasm
