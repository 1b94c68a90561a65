#include "wasm/module_info.h"

#include <fmt/format.h>

#include "common/one_line.h"

namespace edgeward::wasm {
namespace {

constexpr uint8_t kMagic[] = {0x00, 0x61, 0x73, 0x6d};
constexpr uint32_t kMaxCount = 1'000'000;  // entries in one section: more is surely malformed

enum Section : uint8_t {
  kType = 1,
  kImport = 2,
  kFunction = 3,
  kMemory = 5,
  kGlobal = 6,
  kExport = 7,
  kCode = 10
};

// A bounds-checked cursor; every read fails with the offset of the problem.
class Reader {
 public:
  Reader(std::span<const uint8_t> b, size_t pos, size_t end) : b_(b), pos_(pos), end_(end) {}

  size_t pos() const { return pos_; }
  bool done() const { return pos_ >= end_; }

  Result<uint8_t> byte(std::string_view what) {
    if (pos_ >= end_) return fail(fmt::format("offset {}: unexpected end of {}", pos_, what));
    return b_[pos_++];
  }
  Result<uint32_t> u32(std::string_view what) {
    size_t start = pos_;
    uint64_t v = 0;
    for (int shift = 0; shift < 35; shift += 7) {
      EW_TRY(b, byte(what));
      v |= uint64_t{*b & 0x7fu} << shift;
      if (!(*b & 0x80)) {
        if (v > UINT32_MAX) break;
        return static_cast<uint32_t>(v);
      }
    }
    return fail(fmt::format("offset {}: {} is not a valid LEB128 u32", start, what));
  }
  Result<uint32_t> count(std::string_view what) {
    size_t start = pos_;
    EW_TRY(n, u32(what));
    // Every entry takes at least one byte: a larger count cannot fit in what is left.
    if (*n > kMaxCount || *n > end_ - pos_)
      return fail(
          fmt::format("offset {}: {} count {} is larger than the section", start, what, *n));
    return *n;
  }
  Result<std::string> name(std::string_view what) {
    EW_TRY(len, u32(what));
    if (*len > end_ - pos_)
      return fail(fmt::format("offset {}: {} runs past its section", pos_, what));
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), *len);
    pos_ += *len;
    return s;
  }
  Result<ValType> valType() {
    size_t at = pos_;
    EW_TRY(b, byte("value type"));
    switch (*b) {
      case 0x7f:
      case 0x7e:
      case 0x7d:
      case 0x7c:
        return static_cast<ValType>(*b);
      default:
        return fail(fmt::format(
            "offset {}: value type 0x{:02x} is not supported (i32, i64, f32, f64 only)", at, *b));
    }
  }
  Result<PageLimits> limits(std::string_view what) {
    size_t at = pos_;
    EW_TRY(flags, byte(what));
    if (*flags > 1)
      return fail(fmt::format(
          "offset {}: {} limits flags 0x{:02x} (shared or 64-bit memory) are not supported", at,
          what, *flags));
    PageLimits l;
    EW_TRY(min, u32(what));
    l.min = *min;
    if (*flags == 1) {
      EW_TRY(max, u32(what));
      if (*max < *min)
        return fail(
            fmt::format("offset {}: {} maximum {} is below its minimum {}", at, what, *max, *min));
      l.max = *max;
    }
    return l;
  }
  // Any LEB128 (signed or not, up to 64 bits), when only its length matters.
  Result<void> skipLeb(std::string_view what) {
    size_t start = pos_;
    for (int i = 0; i < 10; i++) {
      EW_TRY(b, byte(what));
      if (!(*b & 0x80)) return {};
    }
    return fail(fmt::format("offset {}: {} is not a valid LEB128 number", start, what));
  }
  Result<void> skip(size_t n, std::string_view what) {
    if (n > end_ - pos_)
      return fail(fmt::format("offset {}: {} runs past its section", pos_, what));
    pos_ += n;
    return {};
  }

 private:
  std::span<const uint8_t> b_;
  size_t pos_;
  size_t end_;
};

void leb(std::vector<uint8_t>& v, uint32_t x) {
  do {
    uint8_t b = x & 0x7f;
    x >>= 7;
    v.push_back(x ? (b | 0x80) : b);
  } while (x);
}

struct SectionRef {
  uint8_t id;
  size_t headerStart;  // the id byte
  size_t start;        // contents
  size_t end;
};

Result<std::vector<SectionRef>> sections(std::span<const uint8_t> b) {
  if (b.size() < 8)
    return fail(fmt::format(
        "{} bytes is too short for a WebAssembly module (it needs at least the 8-byte header)",
        b.size()));
  if (std::memcmp(b.data(), kMagic, 4) != 0)
    return fail("not a WebAssembly module: the file does not start with \\0asm");
  uint32_t version = b[4] | b[5] << 8 | b[6] << 16 | uint32_t{b[7]} << 24;
  if (version != 1)
    return fail(
        fmt::format("offset 4: WebAssembly binary version {} is not supported (only 1)", version));
  std::vector<SectionRef> out;
  Reader r(b, 8, b.size());
  uint8_t lastId = 0;
  while (!r.done()) {
    size_t at = r.pos();
    EW_TRY(id, r.byte("section id"));
    if (*id > 13) return fail(fmt::format("offset {}: unknown section id {}", at, *id));
    EW_TRY(size, r.u32("section size"));
    size_t start = r.pos();
    if (*size > b.size() - start)
      return fail(fmt::format("offset {}: section {} claims {} bytes but only {} remain", at, *id,
                              *size, b.size() - start));
    // Custom sections (0) may appear anywhere; data count (12) and tag (13) sit between others.
    if (*id != 0 && *id != 12 && *id != 13) {
      if (*id <= lastId)
        return fail(fmt::format("offset {}: section {} is out of order or repeated", at, *id));
      lastId = *id;
    }
    out.push_back({*id, at, start, start + *size});
    EW_TRY(skipped, r.skip(*size, "section"));
  }
  return out;
}

// What one instruction does to state a memory-and-globals snapshot cannot put back.
enum class Effect { None, TouchesTablesOrSegments, Unknown };

// Reads one instruction's opcode and immediates. Opcodes from the MVP, sign extension,
// non-trapping conversions, bulk memory, reference types, tail calls, SIMD and atomics are known;
// anything else (exceptions, GC, multiple memories) is Unknown.
Result<Effect> instruction(Reader& r) {
  constexpr std::string_view imm = "instruction immediate";
  auto memarg = [&]() -> Result<Effect> {
    EW_TRY(align, r.u32(imm));
    if (*align & 0x40) return Effect::Unknown;  // a memory index: multiple memories
    EW_TRY(offset, r.skipLeb(imm));
    return Effect::None;
  };
  auto lebs = [&](int n) -> Result<Effect> {
    for (int i = 0; i < n; i++) EW_CHECK(r.skipLeb(imm));
    return Effect::None;
  };
  EW_TRY(op, r.byte("opcode"));
  switch (*op) {
    case 0x02:  // block, loop, if: an empty type, a value type or a type index
    case 0x03:
    case 0x04: {
      EW_TRY(bt, r.byte(imm));
      if (*bt == 0x40 || (*bt >= 0x7b && *bt <= 0x7f) || *bt == 0x70 || *bt == 0x6f)
        return Effect::None;
      if (*bt & 0x80) return lebs(1);          // a type index of more than one byte
      if (*bt & 0x40) return Effect::Unknown;  // another negative type code
      return Effect::None;
    }
    case 0x0c:  // br, br_if
    case 0x0d:
    case 0x10:  // call
    case 0x12:  // return_call
    case 0x20:  // local.get, set, tee; global.get, set
    case 0x21:
    case 0x22:
    case 0x23:
    case 0x24:
    case 0x25:  // table.get
    case 0x3f:  // memory.size, memory.grow
    case 0x40:
    case 0x41:  // i32.const, i64.const
    case 0x42:
    case 0xd2:  // ref.func
      return lebs(1);
    case 0x0e: {  // br_table
      EW_TRY(n, r.count("br_table"));
      return lebs(static_cast<int>(*n) + 1);
    }
    case 0x11:  // call_indirect, return_call_indirect
    case 0x13:
      return lebs(2);
    case 0x1c: {  // select with types
      EW_TRY(n, r.count("select"));
      for (uint32_t i = 0; i < *n; i++) {
        EW_TRY(t, r.byte(imm));
        if (!(*t >= 0x7b && *t <= 0x7f) && *t != 0x70 && *t != 0x6f) return Effect::Unknown;
      }
      return Effect::None;
    }
    case 0x26:  // table.set
      EW_CHECK(r.skipLeb(imm));
      return Effect::TouchesTablesOrSegments;
    case 0x43:
      EW_CHECK(r.skip(4, imm));
      return Effect::None;
    case 0x44:
      EW_CHECK(r.skip(8, imm));
      return Effect::None;
    case 0xd0: {  // ref.null
      EW_TRY(t, r.byte(imm));
      return *t == 0x70 || *t == 0x6f ? Effect::None : Effect::Unknown;
    }
    case 0xfc: {
      EW_TRY(sub, r.u32("opcode"));
      if (*sub <= 7) return Effect::None;  // saturating truncations
      switch (*sub) {
        case 8:   // memory.init: data index, memory
        case 10:  // memory.copy
          return lebs(2);
        case 11:  // memory.fill
        case 16:  // table.size
          return lebs(1);
        case 9:   // data.drop
        case 13:  // elem.drop
        case 15:  // table.grow
        case 17:  // table.fill
          EW_CHECK(r.skipLeb(imm));
          return Effect::TouchesTablesOrSegments;
        case 12:  // table.init, table.copy
        case 14:
          EW_CHECK(lebs(2));
          return Effect::TouchesTablesOrSegments;
        default:
          return Effect::Unknown;
      }
    }
    case 0xfd: {  // SIMD
      EW_TRY(sub, r.u32("opcode"));
      if (*sub <= 11 || *sub == 92 || *sub == 93) return memarg();  // loads, stores
      if (*sub == 12 || *sub == 13) {                               // v128.const, i8x16.shuffle
        EW_CHECK(r.skip(16, imm));
        return Effect::None;
      }
      if (*sub >= 21 && *sub <= 34) {  // extract and replace lane
        EW_CHECK(r.skip(1, imm));
        return Effect::None;
      }
      if (*sub >= 84 && *sub <= 91) {  // load and store lane
        EW_TRY(m, memarg());
        EW_CHECK(r.skip(1, imm));
        return *m;
      }
      return *sub <= 0x113 ? Effect::None : Effect::Unknown;
    }
    case 0xfe: {  // atomics
      EW_TRY(sub, r.u32("opcode"));
      if (*sub == 3) {  // atomic.fence
        EW_CHECK(r.skip(1, imm));
        return Effect::None;
      }
      return *sub <= 0x4e ? memarg() : Effect::Unknown;
    }
    default:
      if (*op >= 0x28 && *op <= 0x3e) return memarg();  // loads and stores
      if (*op <= 0x01 || *op == 0x05 || *op == 0x0b || *op == 0x0f || *op == 0x1a || *op == 0x1b ||
          (*op >= 0x45 && *op <= 0xc4) || *op == 0xd1)
        return Effect::None;
      return Effect::Unknown;
  }
}

}  // namespace

std::string describe(const FuncType& t) {
  auto name = [](ValType v) {
    switch (v) {
      case ValType::I32:
        return "i32";
      case ValType::I64:
        return "i64";
      case ValType::F32:
        return "f32";
      case ValType::F64:
        return "f64";
    }
    return "?";
  };
  std::string s = "(";
  for (size_t i = 0; i < t.params.size(); i++)
    s += fmt::format("{}{}", i ? ", " : "", name(t.params[i]));
  s += ") -> ";
  if (t.results.empty()) return s + "()";
  for (size_t i = 0; i < t.results.size(); i++)
    s += fmt::format("{}{}", i ? ", " : "", name(t.results[i]));
  return s;
}

const Export* ModuleInfo::findExport(std::string_view name, ExternKind kind) const {
  for (const auto& e : exports)
    if (e.name == name && e.kind == kind) return &e;
  return nullptr;
}

Result<ModuleInfo> parseModule(std::span<const uint8_t> bytes) {
  EW_TRY(secs, sections(bytes));
  ModuleInfo info;
  std::vector<FuncType> types;
  std::vector<uint32_t> funcTypes;  // type index of every function, imported first
  for (const auto& s : *secs) {
    Reader r(bytes, s.start, s.end);
    switch (s.id) {
      case kType: {
        EW_TRY(n, r.count("type"));
        for (uint32_t i = 0; i < *n; i++) {
          size_t at = r.pos();
          EW_TRY(form, r.byte("type"));
          if (*form != 0x60)
            return fail(
                fmt::format("offset {}: type {} has form 0x{:02x}, expected a function type (0x60)",
                            at, i, *form));
          FuncType t;
          EW_TRY(np, r.count("parameter"));
          for (uint32_t j = 0; j < *np; j++) {
            EW_TRY(v, r.valType());
            t.params.push_back(*v);
          }
          EW_TRY(nr, r.count("result"));
          for (uint32_t j = 0; j < *nr; j++) {
            EW_TRY(v, r.valType());
            t.results.push_back(*v);
          }
          types.push_back(std::move(t));
        }
        break;
      }
      case kImport: {
        EW_TRY(n, r.count("import"));
        for (uint32_t i = 0; i < *n; i++) {
          Import im;
          EW_TRY(mod, r.name("import module name"));
          EW_TRY(nm, r.name("import name"));
          im.module = std::move(*mod);
          im.name = std::move(*nm);
          size_t at = r.pos();
          EW_TRY(kind, r.byte("import kind"));
          switch (*kind) {
            case 0: {
              EW_TRY(ti, r.u32("import type index"));
              if (*ti >= types.size())
                return fail(fmt::format("offset {}: import {}.{} uses type {} which does not exist",
                                        at, oneLine(im.module), oneLine(im.name), *ti));
              im.kind = ExternKind::Func;
              im.type = types[*ti];
              funcTypes.push_back(*ti);
              break;
            }
            case 1: {
              EW_TRY(rt, r.byte("table type"));
              EW_TRY(l, r.limits("table"));
              im.kind = ExternKind::Table;
              break;
            }
            case 2: {
              EW_TRY(l, r.limits("memory"));
              im.kind = ExternKind::Memory;
              im.limits = *l;
              break;
            }
            case 3: {
              EW_TRY(v, r.valType());
              EW_TRY(mut, r.byte("global mutability"));
              im.kind = ExternKind::Global;
              info.importedGlobals++;
              break;
            }
            default:
              return fail(fmt::format("offset {}: import {}.{} has unsupported kind {}", at,
                                      oneLine(im.module), oneLine(im.name), *kind));
          }
          info.imports.push_back(std::move(im));
        }
        break;
      }
      case kFunction: {
        EW_TRY(n, r.count("function"));
        for (uint32_t i = 0; i < *n; i++) {
          size_t at = r.pos();
          EW_TRY(ti, r.u32("function type index"));
          if (*ti >= types.size())
            return fail(
                fmt::format("offset {}: function uses type {} which does not exist", at, *ti));
          funcTypes.push_back(*ti);
        }
        break;
      }
      case kGlobal: {
        EW_TRY(n, r.count("global"));
        for (uint32_t i = 0; i < *n; i++) {
          Global g;
          EW_TRY(v, r.valType());
          g.type = *v;
          size_t at = r.pos();
          EW_TRY(mut, r.byte("global mutability"));
          if (*mut > 1)
            return fail(fmt::format("offset {}: global mutability {} is not 0 or 1", at, *mut));
          g.mutable_ = *mut == 1;
          // A constant expression: one const/global.get instruction (plus immediates), then end.
          at = r.pos();
          EW_TRY(op, r.byte("global initializer"));
          switch (*op) {
            case 0x41:
            case 0x23: {
              EW_TRY(x, r.u32("global initializer"));
              break;
            }             // i32.const, global.get
            case 0x42: {  // i64.const: up to 10 LEB bytes
              for (int k = 0; k < 10; k++) {
                EW_TRY(b, r.byte("global initializer"));
                if (!(*b & 0x80)) break;
              }
              break;
            }
            case 0x43: {
              EW_TRY(x, r.skip(4, "global initializer"));
              break;
            }
            case 0x44: {
              EW_TRY(x, r.skip(8, "global initializer"));
              break;
            }
            default:
              return fail(fmt::format(
                  "offset {}: global initializer opcode 0x{:02x} is not supported", at, *op));
          }
          at = r.pos();
          EW_TRY(end, r.byte("global initializer"));
          if (*end != 0x0b)
            return fail(fmt::format("offset {}: global initializer does not end with 0x0b", at));
          info.globals.push_back(g);
        }
        break;
      }
      case kMemory: {
        EW_TRY(n, r.count("memory"));
        if (*n > 1)
          return fail(fmt::format("offset {}: {} memories: only one is supported", s.start, *n));
        if (*n == 1) {
          EW_TRY(l, r.limits("memory"));
          info.memory = *l;
        }
        break;
      }
      case kExport: {
        EW_TRY(n, r.count("export"));
        for (uint32_t i = 0; i < *n; i++) {
          Export ex;
          EW_TRY(nm, r.name("export name"));
          ex.name = std::move(*nm);
          size_t at = r.pos();
          EW_TRY(kind, r.byte("export kind"));
          if (*kind > 4)
            return fail(fmt::format("offset {}: export \"{}\" has unknown kind {}", at,
                                    oneLine(ex.name), *kind));
          ex.kind = static_cast<ExternKind>(*kind);
          EW_TRY(idx, r.u32("export index"));
          ex.index = *idx;
          if (ex.kind == ExternKind::Func) {
            if (*idx >= funcTypes.size())
              return fail(
                  fmt::format("offset {}: export \"{}\" names function {} which does not exist", at,
                              oneLine(ex.name), *idx));
            ex.type = types[funcTypes[*idx]];
          }
          info.exports.push_back(std::move(ex));
        }
        break;
      }
      default:
        continue;  // not needed by the host; the engine validates it
    }
    if (r.pos() != s.end)
      return fail(fmt::format("offset {}: section {} has {} bytes left over", r.pos(), s.id,
                              s.end - r.pos()));
  }
  return info;
}

Result<std::vector<uint8_t>> exportMutableGlobals(std::span<const uint8_t> bytes) {
  EW_TRY(info, parseModule(bytes));
  std::vector<uint8_t> added;  // the new export entries
  uint32_t count = 0;
  for (size_t i = 0; i < info->globals.size(); i++) {
    if (!info->globals[i].mutable_) continue;
    std::string name = fmt::format("{}{}", kGlobalExportPrefix, info->importedGlobals + i);
    leb(added, static_cast<uint32_t>(name.size()));
    added.insert(added.end(), name.begin(), name.end());
    added.push_back(static_cast<uint8_t>(ExternKind::Global));
    leb(added, static_cast<uint32_t>(info->importedGlobals + i));
    count++;
  }
  if (count == 0) return std::vector<uint8_t>(bytes.begin(), bytes.end());
  EW_TRY(secs, sections(bytes));
  auto emit = [&](std::vector<uint8_t>& out, uint32_t oldCount,
                  std::span<const uint8_t> oldEntries) {
    std::vector<uint8_t> body;
    leb(body, oldCount + count);
    body.insert(body.end(), oldEntries.begin(), oldEntries.end());
    body.insert(body.end(), added.begin(), added.end());
    out.push_back(kExport);
    leb(out, static_cast<uint32_t>(body.size()));
    out.insert(out.end(), body.begin(), body.end());
  };
  for (const auto& s : *secs) {
    if (s.id == kExport) {
      Reader r(bytes, s.start, s.end);
      EW_TRY(n, r.u32("export count"));
      std::vector<uint8_t> out(bytes.begin(), bytes.begin() + s.headerStart);
      emit(out, *n, bytes.subspan(r.pos(), s.end - r.pos()));
      out.insert(out.end(), bytes.begin() + s.end, bytes.end());
      return out;
    }
  }
  // No export section: insert one before the first section that must follow it.
  size_t at = bytes.size();
  for (const auto& s : *secs)
    if (s.id > kExport) {
      at = s.headerStart;
      break;
    }
  std::vector<uint8_t> out(bytes.begin(), bytes.begin() + at);
  emit(out, 0, {});
  out.insert(out.end(), bytes.begin() + at, bytes.end());
  return out;
}

Result<std::vector<uint8_t>> capMemory(std::span<const uint8_t> bytes, uint32_t maxPages) {
  EW_TRY(info, parseModule(bytes));
  for (const auto& im : info->imports)
    if (im.kind == ExternKind::Memory)
      return failf("the module imports its memory ({}.{}); plugins must define their own",
                   oneLine(im.module), oneLine(im.name));
  std::vector<uint8_t> out(bytes.begin(), bytes.end());
  if (!info->memory) return out;
  if (info->memory->min > maxPages)
    return failf("the module needs {} KiB of memory to start, over its limit of {} KiB",
                 uint64_t{info->memory->min} * 64, uint64_t{maxPages} * 64);
  uint32_t max = std::min(info->memory->max.value_or(maxPages), maxPages);
  if (info->memory->max && *info->memory->max <= maxPages) return out;

  EW_TRY(secs, sections(bytes));
  for (const auto& s : *secs) {
    if (s.id != kMemory) continue;
    std::vector<uint8_t> body;
    leb(body, 1);
    body.push_back(0x01);
    leb(body, info->memory->min);
    leb(body, max);
    std::vector<uint8_t> rebuilt(bytes.begin(), bytes.begin() + s.headerStart);
    rebuilt.push_back(kMemory);
    leb(rebuilt, static_cast<uint32_t>(body.size()));
    rebuilt.insert(rebuilt.end(), body.begin(), body.end());
    rebuilt.insert(rebuilt.end(), bytes.begin() + s.end, bytes.end());
    return rebuilt;
  }
  return out;
}

Result<bool> resettableInPlace(std::span<const uint8_t> bytes) {
  EW_TRY(secs, sections(bytes));
  for (const auto& s : *secs) {
    if (s.id != kCode) continue;
    Reader r(bytes, s.start, s.end);
    EW_TRY(n, r.count("function body"));
    for (uint32_t f = 0; f < *n; f++) {
      EW_TRY(size, r.u32("function body size"));
      size_t end = r.pos() + *size;
      if (*size > s.end - r.pos())
        return fail(fmt::format("offset {}: function body {} runs past its section", r.pos(), f));
      Reader body(bytes, r.pos(), end);
      EW_TRY(groups, body.count("local"));
      for (uint32_t g = 0; g < *groups; g++) {
        EW_CHECK(body.skipLeb("local count"));
        EW_TRY(t, body.byte("local type"));
        if (!(*t >= 0x7b && *t <= 0x7f) && *t != 0x70 && *t != 0x6f) return false;
      }
      while (!body.done()) {
        EW_TRY(effect, instruction(body));
        if (*effect != Effect::None) return false;
      }
      EW_CHECK(r.skip(*size, "function body"));
    }
  }
  return true;
}

}  // namespace edgeward::wasm
