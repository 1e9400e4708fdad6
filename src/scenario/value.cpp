#include "scenario/value.h"

#include <cstdio>
#include <sys/mman.h>

#include "base/error.h"
#include "gup/foll_flags.h"
#include "mm/vm_flags.h"
#include "pinlab/uapi.h"

namespace pl::scenario {
namespace {

struct NamedConst {
    const char* name;
    int64_t value;
};

// Upstream values: FOLL_* from src/gup/foll_flags.h, FAULT_FLAG_* from
// src/mm/vm_flags.h (the public ones only:
// callers may not pass the internal ones, and upstream's is_valid_gup_args()
// says so with a WARN the scenario should be able to provoke, so FOLL_PIN and
// friends are named too), the rest from <sys/mman.h> and pinlab/uapi.h.
constexpr NamedConst kConsts[] = {
    {"FOLL_WRITE", FOLL_WRITE}, {"FOLL_GET", FOLL_GET}, {"FOLL_DUMP", FOLL_DUMP}, {"FOLL_FORCE", FOLL_FORCE},
    {"FOLL_NOWAIT", FOLL_NOWAIT}, {"FOLL_NOFAULT", FOLL_NOFAULT}, {"FOLL_HWPOISON", FOLL_HWPOISON},
    {"FOLL_ANON", FOLL_ANON}, {"FOLL_LONGTERM", FOLL_LONGTERM}, {"FOLL_SPLIT_PMD", FOLL_SPLIT_PMD},
    {"FOLL_PCI_P2PDMA", FOLL_PCI_P2PDMA}, {"FOLL_INTERRUPTIBLE", FOLL_INTERRUPTIBLE},
    {"FOLL_HONOR_NUMA_FAULT", FOLL_HONOR_NUMA_FAULT}, {"FOLL_TOUCH", FOLL_TOUCH}, {"FOLL_TRIED", FOLL_TRIED},
    {"FOLL_REMOTE", FOLL_REMOTE}, {"FOLL_PIN", FOLL_PIN}, {"FOLL_FAST_ONLY", FOLL_FAST_ONLY},
    {"FOLL_UNLOCKABLE", FOLL_UNLOCKABLE}, {"FOLL_MADV_POPULATE", FOLL_MADV_POPULATE},
    {"FOLL_SAME_FILE", FOLL_SAME_FILE},
    {"PROT_NONE", PROT_NONE}, {"PROT_READ", PROT_READ}, {"PROT_WRITE", PROT_WRITE}, {"PROT_EXEC", PROT_EXEC},
    {"MAP_SHARED", MAP_SHARED}, {"MAP_PRIVATE", MAP_PRIVATE}, {"MAP_FIXED", MAP_FIXED},
    {"MAP_ANONYMOUS", MAP_ANONYMOUS}, {"MAP_ANON", MAP_ANONYMOUS}, {"MAP_POPULATE", MAP_POPULATE},
    {"MAP_NORESERVE", MAP_NORESERVE}, {"MAP_HUGETLB", MAP_HUGETLB}, {"MAP_LOCKED", MAP_LOCKED},
    {"MAP_FIXED_NOREPLACE", MAP_FIXED_NOREPLACE}, {"MAP_HUGE_2MB", MAP_HUGE_2MB}, {"MAP_HUGE_1GB", MAP_HUGE_1GB},
    {"MADV_NORMAL", MADV_NORMAL}, {"MADV_RANDOM", MADV_RANDOM}, {"MADV_SEQUENTIAL", MADV_SEQUENTIAL},
    {"MADV_WILLNEED", MADV_WILLNEED}, {"MADV_DONTNEED", MADV_DONTNEED}, {"MADV_FREE", MADV_FREE},
    {"MADV_REMOVE", MADV_REMOVE}, {"MADV_DONTFORK", MADV_DONTFORK}, {"MADV_DOFORK", MADV_DOFORK},
    {"MADV_MERGEABLE", MADV_MERGEABLE}, {"MADV_UNMERGEABLE", MADV_UNMERGEABLE}, {"MADV_HUGEPAGE", MADV_HUGEPAGE},
    {"MADV_NOHUGEPAGE", MADV_NOHUGEPAGE}, {"MADV_DONTDUMP", MADV_DONTDUMP}, {"MADV_DODUMP", MADV_DODUMP},
    {"MADV_WIPEONFORK", MADV_WIPEONFORK}, {"MADV_KEEPONFORK", MADV_KEEPONFORK}, {"MADV_COLD", 20},
    {"MADV_PAGEOUT", 21}, {"MADV_POPULATE_READ", MADV_POPULATE_READ}, {"MADV_POPULATE_WRITE", MADV_POPULATE_WRITE},
    {"MADV_COLLAPSE", MADV_COLLAPSE}, {"MADV_HWPOISON", MADV_HWPOISON},
    {"MREMAP_MAYMOVE", MREMAP_MAYMOVE}, {"MREMAP_FIXED", MREMAP_FIXED}, {"MREMAP_DONTUNMAP", MREMAP_DONTUNMAP},
    {"FAULT_FLAG_WRITE", FAULT_FLAG_WRITE}, {"FAULT_FLAG_MKWRITE", FAULT_FLAG_MKWRITE},
    {"FAULT_FLAG_ALLOW_RETRY", FAULT_FLAG_ALLOW_RETRY}, {"FAULT_FLAG_RETRY_NOWAIT", FAULT_FLAG_RETRY_NOWAIT},
    {"FAULT_FLAG_KILLABLE", FAULT_FLAG_KILLABLE}, {"FAULT_FLAG_TRIED", FAULT_FLAG_TRIED},
    {"FAULT_FLAG_USER", FAULT_FLAG_USER}, {"FAULT_FLAG_REMOTE", FAULT_FLAG_REMOTE},
    {"FAULT_FLAG_INSTRUCTION", FAULT_FLAG_INSTRUCTION}, {"FAULT_FLAG_INTERRUPTIBLE", FAULT_FLAG_INTERRUPTIBLE},
    {"FAULT_FLAG_UNSHARE", FAULT_FLAG_UNSHARE},
    {"GUP_PIN_COUNTING_BIAS", GUP_PIN_COUNTING_BIAS},
    {"true", 1}, {"false", 0},
};

}  // namespace

std::string_view type_name(Type t) {
    switch (t) {
        case Type::Int: return "an integer";
        case Type::Str: return "a string";
        case Type::Bool: return "a boolean";
        case Type::Pages: return "a page list";
        case Type::Page: return "a page";
        case Type::File: return "a file";
        case Type::Any: return "a value";
    }
    return "?";
}

std::optional<int64_t> const_value(std::string_view name) {
    for (const NamedConst& c : kConsts)
        if (name == c.name) return c.value;
    // Errno names: EFAULT is 14; the kernel's negative return is -EFAULT.
    if (name.size() > 1 && name[0] == 'E') {
        int e = errno_from_name(name);
        if (e > 0) return e;
    }
    return std::nullopt;
}

bool looks_like_const(std::string_view name) {
    for (std::string_view prefix : {"FOLL_", "PROT_", "MAP_", "MADV_", "MREMAP_", "FAULT_FLAG_"})
        if (name.substr(0, prefix.size()) == prefix) return true;
    if (name.size() > 2 && name[0] == 'E') {
        for (char c : name.substr(1))
            if (!(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9')) return false;
        return true;
    }
    return false;
}

std::string quote(std::string_view bytes) {
    std::string out = "\"";
    for (char c : bytes) {
        switch (c) {
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            case '\\': out += "\\\\"; break;
            case '"': out += "\\\""; break;
            case '\0': out += "\\0"; break;
            default:
                if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
                    out += buf;
                } else {
                    out += c;
                }
        }
    }
    return out + "\"";
}

bool Value::truthy() const {
    switch (type) {
        case Type::Int:
        case Type::Bool: return i != 0;
        case Type::Str: return !s.empty();
        case Type::Pages: return !pages.empty();
        case Type::Page: return !pages.empty() && pages[0] != nullptr;
        case Type::File: return file != nullptr;
        case Type::Any: return false;
    }
    return false;
}

std::string Value::show() const {
    switch (type) {
        case Type::Int: {
            std::string out = std::to_string(i);
            // Kernel returns: name the errno, as a reader thinks of it.
            if (i < 0 && i > -4096) {
                std::string_view n = errno_name(static_cast<int>(-i));
                if (n.size() > 1 && n[1] != '<' && !(n[1] >= '0' && n[1] <= '9')) out += " (-" + std::string(n) + ")";
            } else if (i >= 0x10000) {
                char buf[32];
                std::snprintf(buf, sizeof buf, " (%#llx)", static_cast<unsigned long long>(i));
                out += buf;
            }
            return out;
        }
        case Type::Bool: return i ? "true" : "false";
        case Type::Str: return quote(s);
        case Type::Pages: return "a list of " + std::to_string(pages.size()) + " pages";
        case Type::Page: return pages.empty() || !pages[0] ? "no page" : "a page";
        case Type::File: return "a file";
        case Type::Any: return "?";
    }
    return "?";
}

bool Value::equals(const Value& o) const {
    const bool num = (type == Type::Int || type == Type::Bool);
    const bool onum = (o.type == Type::Int || o.type == Type::Bool);
    if (num && onum) return i == o.i;
    if (type == Type::Str && o.type == Type::Str) return s == o.s;
    auto as_page = [](const Value& v) -> std::optional<struct page*> {
        if (v.type == Type::Page || (v.type == Type::Pages && v.pages.size() == 1))
            return v.pages.empty() ? nullptr : v.pages[0];
        return std::nullopt;
    };
    auto a = as_page(*this), b = as_page(o);
    if (a && b) return *a == *b;
    if (type == Type::Pages && o.type == Type::Pages) return pages == o.pages;
    if (type == Type::File && o.type == Type::File) return file == o.file;
    return false;
}

}  // namespace pl::scenario
