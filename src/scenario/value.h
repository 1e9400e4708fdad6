// pinlab scenarios — values: what a variable holds and an expression yields.
//
// Integers (addresses, counts, return values, flags), byte strings, booleans,
// page lists (the pages[] a GUP call filled), single pages, and open files.
// Named integer constants (FOLL_*, PROT_*, MAP_*, MADV_*, MREMAP_*, errno
// names, GUP_PIN_COUNTING_BIAS) are resolved by const_value().
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct page;
struct pl_file;

namespace pl::scenario {

enum class Type : uint8_t { Int, Str, Bool, Pages, Page, File, Any };

std::string_view type_name(Type t);

struct Value {
    Type type = Type::Int;
    int64_t i = 0;                 // Int, Bool (0/1)
    std::string s;                 // Str
    std::vector<struct page*> pages;  // Pages (the entries the call filled); Page: one entry
    struct pl_file* file = nullptr;   // File

    static Value integer(int64_t v) { Value x; x.type = Type::Int; x.i = v; return x; }
    static Value boolean(bool v) { Value x; x.type = Type::Bool; x.i = v; return x; }
    static Value str(std::string v) { Value x; x.type = Type::Str; x.s = std::move(v); return x; }

    bool truthy() const;
    // For messages: 1, -14 (-EFAULT), "hello\n", true, pages[2], page, file.
    std::string show() const;
    // Equality as `==` sees it: same type and content; Int and Bool compare
    // by value; a page list of one equals that page.
    bool equals(const Value& o) const;
};

// The value of a named constant (FOLL_WRITE, PROT_READ, MAP_SHARED,
// MADV_DONTNEED, MREMAP_MAYMOVE, EFAULT (positive; write -EFAULT),
// GUP_PIN_COUNTING_BIAS, true/false), or nothing.
std::optional<int64_t> const_value(std::string_view name);
// Whether name looks like one of those families (for "unknown FOLL_ flag").
bool looks_like_const(std::string_view name);

// A string literal for messages, with C escapes.
std::string quote(std::string_view bytes);

}  // namespace pl::scenario
