// What the host needs to know about a WebAssembly module before an engine sees it: its imports
// and exports with their signatures, and its linear memory. The parser checks structure only as
// far as it reads; the engine validates the rest. Malformed input gets one error with the offset.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"

namespace edgeward::wasm {

enum class ValType : uint8_t { I32 = 0x7f, I64 = 0x7e, F32 = 0x7d, F64 = 0x7c };

struct FuncType {
  std::vector<ValType> params;
  std::vector<ValType> results;
  bool operator==(const FuncType&) const = default;
};
std::string describe(const FuncType& t);  // "(i32, i64) -> i32"

enum class ExternKind : uint8_t { Func = 0, Table = 1, Memory = 2, Global = 3, Tag = 4 };

struct PageLimits {
  uint32_t min = 0;
  std::optional<uint32_t> max;
};

struct Import {
  std::string module;
  std::string name;
  ExternKind kind = ExternKind::Func;
  FuncType type;      // functions
  PageLimits limits;  // memories
};

struct Export {
  std::string name;
  ExternKind kind = ExternKind::Func;
  uint32_t index = 0;
  FuncType type;  // functions
};

struct Global {
  ValType type = ValType::I32;
  bool mutable_ = false;
};

struct ModuleInfo {
  std::vector<Import> imports;
  std::vector<Export> exports;
  std::vector<Global> globals;  // defined (not imported) ones, in index order after the imports
  uint32_t importedGlobals = 0;
  std::optional<PageLimits> memory;  // the module's own memory (none, or imported: see imports)

  const Export* findExport(std::string_view name, ExternKind kind) const;
};

inline constexpr uint32_t kWasmPageBytes = 65536;

// Parses the header, type, import, function, memory and export sections.
Result<ModuleInfo> parseModule(std::span<const uint8_t> bytes);

// The module with its memory's maximum lowered to maxPages (the engine then refuses to grow it
// further), or an error when the module needs more than that to start or imports its memory.
Result<std::vector<uint8_t>> capMemory(std::span<const uint8_t> bytes, uint32_t maxPages);

// The prefix of the exports exportMutableGlobals() adds.
inline constexpr std::string_view kGlobalExportPrefix = "__ew_global_";

// The module with every mutable global it defines (wasi-libc's __stack_pointer, say) also
// exported as kGlobalExportPrefix + index, so the host can save and restore an instance's
// whole state (memory + globals) instead of instantiating again.
Result<std::vector<uint8_t>> exportMutableGlobals(std::span<const uint8_t> bytes);

// Whether an instance's whole state is its memory and mutable globals, so that putting those
// back resets it: no instruction changes a table or drops a segment, and every instruction is
// one this reader knows (otherwise false: the caller instantiates again instead).
Result<bool> resettableInPlace(std::span<const uint8_t> bytes);

}  // namespace edgeward::wasm
