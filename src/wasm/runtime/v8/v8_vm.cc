// V8 behind WasmVm. Each VM owns one isolate and one context; every entry takes a v8::Locker,
// so the pool may hand a VM to any thread. Compiled code is shared across isolates through
// CompiledWasmModule. See PLATFORM.md for the start-up order and the termination rules.
#include "wasm/runtime/v8/v8_vm.h"

#include <libplatform/libplatform.h>
#include <v8.h>

#include <atomic>
#include <mutex>

#include <fmt/format.h>

#include "wasm/watchdog.h"

namespace edgeward::wasm {
namespace {

constexpr std::string_view kEngine = "v8";

std::mutex g_optionsMu;
V8Options g_options;
std::once_flag g_initOnce;
v8::ArrayBuffer::Allocator* g_allocator = nullptr;

void initV8() {
  std::call_once(g_initOnce, [] {
    V8Options o;
    {
      std::lock_guard l(g_optionsMu);
      o = g_options;
    }
    // Guests are WebAssembly only: no JS source is ever compiled from guest input.
    v8::V8::SetFlagsFromString(o.lazyCompilation ? "--wasm-lazy-compilation" : "");
    if (o.trapHandler) v8::V8::EnableWebAssemblyTrapHandler(true);
    static std::unique_ptr<v8::Platform> platform = v8::platform::NewDefaultPlatform(1);
    v8::V8::InitializePlatform(platform.get());
    v8::V8::Initialize();
    g_allocator = v8::ArrayBuffer::Allocator::NewDefaultAllocator();
  });
}

// What a call into an isolate needs, in order: its lock, the isolate entered, a handle scope and
// the VM's context entered. Lives on the stack only (as its V8 members must).
struct Entered {
  Entered(v8::Isolate* isolate, const v8::Global<v8::Context>& context)
      : locker(isolate), is(isolate), hs(isolate), ctx(context.Get(isolate)), cs(ctx) {}
  v8::Locker locker;
  v8::Isolate::Scope is;
  v8::HandleScope hs;
  v8::Local<v8::Context> ctx;
  v8::Context::Scope cs;
};

class V8Compiled : public CompiledModule {
 public:
  V8Compiled(ModuleInfo info, v8::CompiledWasmModule compiled)
      : CompiledModule(std::move(info)), compiled_(std::move(compiled)) {}
  std::string_view engine() const override { return kEngine; }
  const v8::CompiledWasmModule& compiled() const { return compiled_; }

 private:
  v8::CompiledWasmModule compiled_;
};

std::string exceptionText(v8::Isolate* iso, v8::Local<v8::Context> ctx, const v8::TryCatch& tc) {
  if (!tc.HasCaught()) return "unknown error";
  v8::Local<v8::Value> ex = tc.Exception();
  v8::String::Utf8Value s(iso, ex->ToString(ctx).FromMaybe(v8::Local<v8::String>()));
  return *s ? std::string(*s) : "unprintable exception";
}

v8::Local<v8::String> str(v8::Isolate* iso, std::string_view s) {
  return v8::String::NewFromUtf8(iso, s.data(), v8::NewStringType::kNormal,
                                 static_cast<int>(s.size()))
      .ToLocalChecked();
}

class V8Vm final : public WasmVm {
 public:
  explicit V8Vm(const VmOptions& options)
      : watch_(options.cpuLimitNs, [this] { isolate_->TerminateExecution(); }),
        cpuLimitNs_(options.cpuLimitNs) {
    v8::Isolate::CreateParams params;
    params.array_buffer_allocator = g_allocator;
    isolate_ = v8::Isolate::New(params);
    v8::Locker locker(isolate_);
    v8::Isolate::Scope is(isolate_);
    v8::HandleScope hs(isolate_);
    v8::Local<v8::Context> ctx = v8::Context::New(isolate_);
    context_.Reset(isolate_, ctx);
    v8::Context::Scope cs(ctx);
    auto wasmNs =
        ctx->Global()->Get(ctx, str(isolate_, "WebAssembly")).ToLocalChecked().As<v8::Object>();
    instanceCtor_.Reset(
        isolate_, wasmNs->Get(ctx, str(isolate_, "Instance")).ToLocalChecked().As<v8::Function>());
  }

  ~V8Vm() override {
    unbind();
    {
      v8::Locker locker(isolate_);
      v8::Isolate::Scope is(isolate_);
      resetInstance();
      moduleObject_.Reset();
      instanceCtor_.Reset();
      context_.Reset();
    }
    isolate_->Dispose();
  }

  std::string_view engine() const override { return kEngine; }

  Result<std::shared_ptr<const CompiledModule>> compile(std::span<const uint8_t> bytes,
                                                        ModuleInfo info) override {
    Entered entered(isolate_, context_);
    v8::Local<v8::Context> ctx = entered.ctx;
    v8::TryCatch tc(isolate_);
    auto m = v8::WasmModuleObject::Compile(
        isolate_, v8::MemorySpan<const uint8_t>(bytes.data(), bytes.size()));
    v8::Local<v8::WasmModuleObject> mod;
    if (!m.ToLocal(&mod))
      return fail(ErrorCode::InvalidArgument, cleanCompileError(exceptionText(isolate_, ctx, tc)));
    return std::make_shared<V8Compiled>(std::move(info), mod->GetCompiledModule());
  }

  Result<void> load(std::shared_ptr<const CompiledModule> module) override {
    auto v8mod = std::dynamic_pointer_cast<const V8Compiled>(module);
    if (!v8mod)
      return fail(ErrorCode::InvalidArgument,
                  fmt::format("a module compiled by {} cannot run on v8", module->engine()));
    Entered entered(isolate_, context_);
    v8::TryCatch tc(isolate_);
    auto m = v8::WasmModuleObject::FromCompiledModule(isolate_, v8mod->compiled());
    v8::Local<v8::WasmModuleObject> mod;
    if (!m.ToLocal(&mod))
      return fail(ErrorCode::Internal, "v8 could not adopt the compiled module");
    resetInstance();
    moduleObject_.Reset(isolate_, mod);
    module_ = std::move(v8mod);
    return {};
  }

  void registerCallback(HostFunction f) override {
    auto e = std::make_unique<HostEntry>();
    e->vm = this;
    e->fn = std::move(f);
    hostFns_.push_back(std::move(e));
  }

  Result<void> link() override {
    if (!module_) return fail(ErrorCode::Internal, "link() before load()");
    Entered entered(isolate_, context_);
    v8::Local<v8::Context> ctx = entered.ctx;
    resetInstance();

    v8::Local<v8::Object> imports = v8::Object::New(isolate_);
    for (const Import& im : module_->info().imports) {
      if (im.kind != ExternKind::Func)
        return fail(ErrorCode::InvalidArgument,
                    fmt::format("the module imports {}.{}, which is not a function; edgeward "
                                "provides functions only",
                                im.module, im.name));
      HostEntry* e = findHost(im.module, im.name);
      if (!e)
        return fail(ErrorCode::InvalidArgument,
                    fmt::format("the module imports {}.{}, which edgeward does not provide",
                                im.module, im.name));
      if (e->checkType && e->fn.type != im.type)
        return fail(ErrorCode::InvalidArgument,
                    fmt::format("the module imports {}.{} as {}, but edgeward's has type {}",
                                im.module, im.name, describe(im.type), describe(e->fn.type)));
      e->i64Result = !im.type.results.empty() && im.type.results[0] == ValType::I64;
      e->hasResult = !im.type.results.empty();
      v8::Local<v8::Object> ns;
      v8::Local<v8::Value> existing;
      if (imports->Get(ctx, str(isolate_, im.module)).ToLocal(&existing) && existing->IsObject()) {
        ns = existing.As<v8::Object>();
      } else {
        ns = v8::Object::New(isolate_);
        if (imports->Set(ctx, str(isolate_, im.module), ns).IsNothing())
          return fail(ErrorCode::Internal, "v8 could not build the imports");
      }
      auto tmpl =
          v8::FunctionTemplate::New(isolate_, &V8Vm::trampoline, v8::External::New(isolate_, e));
      v8::Local<v8::Function> fn;
      if (!tmpl->GetFunction(ctx).ToLocal(&fn))
        return fail(ErrorCode::Internal, "v8 could not create a host function");
      if (ns->Set(ctx, str(isolate_, im.name), fn).IsNothing())
        return fail(ErrorCode::Internal, "v8 could not build the imports");
    }

    v8::TryCatch tc(isolate_);
    v8::Local<v8::Value> argv[] = {moduleObject_.Get(isolate_), imports};
    v8::Local<v8::Object> inst;
    uint64_t seq = watch_.enter();  // the start function runs guest code too
    bool ok = instanceCtor_.Get(isolate_)->NewInstance(ctx, 2, argv).ToLocal(&inst);
    bool fired = watch_.leave(seq);
    if (!ok) {
      std::string msg = failed(tc, fired);
      resetInstance();
      return fail(ErrorCode::InvalidArgument, "instantiating the module: " + msg);
    }
    v8::Local<v8::Object> exports =
        inst->Get(ctx, str(isolate_, "exports")).ToLocalChecked().As<v8::Object>();
    for (const Export& ex : module_->info().exports) {
      v8::Local<v8::Value> v;
      if (!exports->Get(ctx, str(isolate_, ex.name)).ToLocal(&v)) continue;
      if (ex.kind == ExternKind::Func && v->IsFunction()) {
        Func f;
        f.name = ex.name;
        f.type = ex.type;
        f.fn.Reset(isolate_, v.As<v8::Function>());
        funcs_.push_back(std::move(f));
      } else if (ex.kind == ExternKind::Memory && v->IsWasmMemoryObject() && memory_.IsEmpty()) {
        memory_.Reset(isolate_, v.As<v8::WasmMemoryObject>());
      } else if (ex.kind == ExternKind::Global && v->IsObject() &&
                 ex.name.starts_with(kGlobalExportPrefix)) {
        const ModuleInfo& mi = module_->info();
        if (ex.index < mi.importedGlobals || ex.index - mi.importedGlobals >= mi.globals.size())
          continue;
        SavedGlobal g;
        g.type = mi.globals[ex.index - mi.importedGlobals].type;
        g.object.Reset(isolate_, v.As<v8::Object>());
        globals_.push_back(std::move(g));
      }
    }
    failure_ = Failure::None;
    return {};
  }

  Result<int> getFunction(std::string_view name) override {
    for (size_t i = 0; i < funcs_.size(); i++)
      if (funcs_[i].name == name) return static_cast<int>(i);
    return fail(ErrorCode::InvalidArgument,
                fmt::format("the module does not export a function \"{}\"", name));
  }

  bool hasFunction(std::string_view name) const override {
    for (const auto& f : funcs_)
      if (f.name == name) return true;
    return false;
  }

  Result<CallOutcome> call(int function, std::span<const uint64_t> args) override {
    if (function < 0 || static_cast<size_t>(function) >= funcs_.size())
      return fail(ErrorCode::Internal, "call() of a function the instance does not have");
    Func& f = funcs_[function];
    if (args.size() != f.type.params.size())
      return fail(ErrorCode::InvalidArgument, fmt::format("{} takes {} arguments, not {}", f.name,
                                                          f.type.params.size(), args.size()));
    Entered entered(isolate_, context_);
    v8::Local<v8::Context> ctx = entered.ctx;
    v8::Local<v8::Value> argv[16];
    if (args.size() > 16) return fail(ErrorCode::InvalidArgument, "more than 16 arguments");
    for (size_t i = 0; i < args.size(); i++) argv[i] = toV8(f.type.params[i], args[i]);

    v8::TryCatch tc(isolate_);
    failure_ = Failure::None;
    exitCode_.reset();
    hostError_.clear();
    uint64_t seq = watch_.enter();
    v8::MaybeLocal<v8::Value> r =
        f.fn.Get(isolate_)->Call(ctx, v8::Undefined(isolate_), static_cast<int>(args.size()), argv);
    bool fired = watch_.leave(seq);
    v8::Local<v8::Value> value;
    if (!r.ToLocal(&value)) {
      if (exitCode_ && !fired) {
        failure_ = Failure::Exit;
        return CallOutcome{std::nullopt, exitCode_};
      }
      return fail(ErrorCode::Unknown, fmt::format("{}: {}", f.name, failed(tc, fired)));
    }
    if (fired) isolate_->CancelTerminateExecution();  // finished just as the watchdog fired
    CallOutcome out;
    if (!f.type.results.empty()) out.value = fromV8(ctx, value);
    return out;
  }

  Failure failure() const override { return failure_; }

  Memory getMemory() override {
    if (memory_.IsEmpty()) return {};
    // Called from host functions (isolate entered) and between calls (not entered).
    if (v8::Locker::IsLocked(isolate_) && isolate_->IsInUse()) return memoryLocked();
    v8::Locker locker(isolate_);
    v8::Isolate::Scope is(isolate_);
    return memoryLocked();
  }

  void terminate() override { isolate_->TerminateExecution(); }

  void bind() override {
    if (bound_) return;
    bound_ = std::make_unique<v8::Locker>(isolate_);
    isolate_->Enter();
  }
  void unbind() override {
    if (!bound_) return;
    isolate_->Exit();
    bound_.reset();
  }

 private:
  struct HostEntry {
    V8Vm* vm = nullptr;
    HostFunction fn;
    bool checkType = true;
    bool hasResult = false;
    bool i64Result = false;
  };
  struct Func {
    std::string name;
    FuncType type;
    v8::Global<v8::Function> fn;
  };

  Memory memoryLocked() {
    v8::HandleScope hs(isolate_);
    v8::Local<v8::ArrayBuffer> buf = memory_.Get(isolate_)->Buffer();
    return Memory(static_cast<uint8_t*>(buf->Data()), buf->ByteLength());
  }

  static std::string cleanCompileError(std::string s) {
    // "CompileError: WebAssembly.Module(): expected ... @+12" -> "invalid module: expected ...
    // @+12"
    if (auto p = s.find("(): "); p != std::string::npos) s = s.substr(p + 4);
    return "invalid WebAssembly module: " + s;
  }

  HostEntry* findHost(std::string_view module, std::string_view name) {
    for (auto& e : hostFns_)
      if (e->fn.module == module && e->fn.name == name) {
        e->checkType = !e->fn.anySignature;
        return e.get();
      }
    return nullptr;
  }

  v8::Local<v8::Value> toV8(ValType t, uint64_t v) {
    switch (t) {
      case ValType::I32:
        return v8::Integer::New(isolate_, static_cast<int32_t>(v));
      case ValType::I64:
        return v8::BigInt::New(isolate_, static_cast<int64_t>(v));
      case ValType::F32:
      case ValType::F64: {
        double d;
        std::memcpy(&d, &v, sizeof d);
        return v8::Number::New(isolate_, d);
      }
    }
    return v8::Undefined(isolate_);
  }

  uint64_t fromV8(v8::Local<v8::Context> ctx, v8::Local<v8::Value> v) {
    if (v->IsBigInt()) return v.As<v8::BigInt>()->Uint64Value();
    if (v->IsInt32()) return static_cast<uint32_t>(v.As<v8::Int32>()->Value());
    return static_cast<uint64_t>(v->IntegerValue(ctx).FromMaybe(0));
  }

  // Classifies a failed call or instantiation, sets failure_, clears a termination.
  std::string failed(const v8::TryCatch& tc, bool fired) {
    if (fired || tc.HasTerminated()) {
      isolate_->CancelTerminateExecution();
      failure_ = Failure::Timeout;
      if (fired)
        return fmt::format("stopped after its CPU time limit of {}", formatNs(cpuLimitNs_));
      return "stopped (terminated by the host)";
    }
    if (!hostError_.empty()) {
      failure_ = Failure::Host;
      return hostError_;
    }
    std::string text = exceptionText(isolate_, context_.Get(isolate_), tc);
    if (text.find("Maximum call stack size exceeded") != std::string::npos) {
      failure_ = Failure::Stack;
      return "call stack exhausted (recursion too deep): " + text;
    }
    const auto& mem = module_->info().memory;
    if (mem && mem->max && !memory_.IsEmpty()) {
      // The engine does not say why a guest trapped; a guest near its memory cap most likely
      // failed to grow (malloc returned NULL and it aborted).
      uint64_t used = memoryLocked().size(), cap = uint64_t{*mem->max} * kWasmPageBytes;
      if (used * 4 >= cap * 3) {
        failure_ = Failure::Memory;
        return fmt::format("{} (linear memory near its limit: {} of its {} KiB limit in use)", text,
                           used / 1024, cap / 1024);
      }
    }
    failure_ = Failure::Trap;
    return text;
  }

  static std::string formatNs(uint64_t ns) {
    if (ns % 1'000'000 == 0) return fmt::format("{} ms", ns / 1'000'000);
    return fmt::format("{} us", ns / 1000);
  }

  void resetInstance() {
    funcs_.clear();
    memory_.Reset();
    globals_.clear();
    savedMemory_.clear();
  }

 public:
  Result<void> snapshot() override {
    if (memory_.IsEmpty())
      return fail(ErrorCode::Internal, "the instance has no memory to snapshot");
    Entered entered(isolate_, context_);
    v8::Local<v8::Context> ctx = entered.ctx;
    Memory m = memoryLocked();
    auto all = m.view(0, static_cast<uint32_t>(m.size()));
    savedMemory_.assign(all->begin(), all->end());
    for (auto& g : globals_) {
      v8::Local<v8::Value> v;
      if (!g.object.Get(isolate_)->Get(ctx, str(isolate_, "value")).ToLocal(&v))
        return fail(ErrorCode::Internal, "v8 could not read a global");
      g.saved = fromV8(ctx, v);
      if (v->IsNumber() && (g.type == ValType::F32 || g.type == ValType::F64)) {
        double d = v.As<v8::Number>()->Value();
        std::memcpy(&g.saved, &d, sizeof d);
      }
    }
    return {};
  }

  Result<bool> restore() override {
    if (savedMemory_.empty() || memory_.IsEmpty()) return false;
    Entered entered(isolate_, context_);
    v8::Local<v8::Context> ctx = entered.ctx;
    Memory m = memoryLocked();
    if (m.size() != savedMemory_.size()) return false;
    m.write(0, savedMemory_);
    for (auto& g : globals_)
      if (g.object.Get(isolate_)
              ->Set(ctx, str(isolate_, "value"), toV8(g.type, g.saved))
              .IsNothing())
        return fail(ErrorCode::Internal, "v8 could not restore a global");
    failure_ = Failure::None;
    return true;
  }

 private:
  static void trampoline(const v8::FunctionCallbackInfo<v8::Value>& info) {
    auto* e = static_cast<HostEntry*>(info.Data().As<v8::External>()->Value());
    V8Vm* vm = e->vm;
    uint64_t args[16];
    int n = std::min(info.Length(), 16);
    v8::Local<v8::Context> ctx = vm->context_.Get(vm->isolate_);
    for (int i = 0; i < n; i++) {
      v8::Local<v8::Value> v = info[i];
      if (v->IsInt32()) {
        args[i] = static_cast<uint32_t>(v.As<v8::Int32>()->Value());
      } else if (v->IsBigInt()) {
        args[i] = v.As<v8::BigInt>()->Uint64Value();
      } else {
        double d = v->NumberValue(ctx).FromMaybe(0);
        std::memcpy(&args[i], &d, sizeof d);
      }
    }
    HostReturn r;
    if (!e->fn.callback) {
      r = HostReturn::ok(0);
    } else {
      HostCall call(*vm, std::span<const uint64_t>(args, n));
      r = e->fn.callback(call);
    }
    if (r.exit) {
      // An exception unwinds through the guest's frames at once (guests cannot catch it).
      vm->exitCode_ = r.exit;
      vm->isolate_->ThrowException(v8::Exception::Error(str(vm->isolate_, "proc_exit")));
      return;
    }
    if (r.trap) {
      vm->hostError_ = fmt::format("{}.{}: {}", e->fn.module, e->fn.name, *r.trap);
      vm->isolate_->ThrowException(v8::Exception::Error(str(vm->isolate_, vm->hostError_)));
      return;
    }
    if (!e->hasResult) return;
    if (e->i64Result) {
      info.GetReturnValue().Set(v8::BigInt::New(vm->isolate_, static_cast<int64_t>(r.value)));
    } else {
      info.GetReturnValue().Set(static_cast<int32_t>(r.value));
    }
  }

  WatchedCall watch_;
  std::unique_ptr<v8::Locker> bound_;  // between bind() and unbind()
  uint64_t cpuLimitNs_;
  v8::Isolate* isolate_ = nullptr;
  v8::Global<v8::Context> context_;
  v8::Global<v8::Function> instanceCtor_;
  v8::Global<v8::WasmModuleObject> moduleObject_;
  std::shared_ptr<const V8Compiled> module_;
  std::vector<std::unique_ptr<HostEntry>> hostFns_;
  std::vector<Func> funcs_;
  v8::Global<v8::WasmMemoryObject> memory_;
  struct SavedGlobal {
    ValType type = ValType::I32;
    v8::Global<v8::Object> object;
    uint64_t saved = 0;
  };
  std::vector<SavedGlobal> globals_;  // exported mutable globals (exportMutableGlobals)
  std::vector<uint8_t> savedMemory_;  // snapshot(): the memory as it was
  Failure failure_ = Failure::None;
  std::optional<int> exitCode_;
  std::string hostError_;
};

}  // namespace

void configureV8(const V8Options& options) {
  std::lock_guard l(g_optionsMu);
  g_options = options;
}

std::unique_ptr<WasmVm> createV8Vm(const VmOptions& options) {
  initV8();
  return std::make_unique<V8Vm>(options);
}

}  // namespace edgeward::wasm
