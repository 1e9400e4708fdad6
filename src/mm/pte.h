// pinlab — page-table entries (x86-64-like bit layout).
//
// One 64-bit word per entry at every level. A leaf maps a pfn (at the PTE
// level a 4 KiB page; at PMD/PUD level, with PTE_HUGE, 2 MiB or 1 GiB); a
// non-leaf points at the next table. A non-present, non-zero word is a
// swap-style entry: the model uses migration and hwpoison entries.
#pragma once

#include <cstdint>
#include <string>

#include "base/units.h"

namespace pl::pte {

using entry_t = uint64_t;

inline constexpr entry_t PRESENT = 1ULL << 0;
inline constexpr entry_t WRITE = 1ULL << 1;
inline constexpr entry_t USER = 1ULL << 2;
inline constexpr entry_t YOUNG = 1ULL << 5;     // accessed
inline constexpr entry_t DIRTY = 1ULL << 6;
inline constexpr entry_t HUGE = 1ULL << 7;      // PSE: a leaf at PMD or PUD level
inline constexpr entry_t SPECIAL = 1ULL << 9;   // pte_special(): no struct page to use
inline constexpr entry_t DEVMAP = 1ULL << 10;   // pte_devmap(): ZONE_DEVICE pfn (older kernels)
inline constexpr entry_t SOFT_DIRTY = 1ULL << 11;
inline constexpr entry_t TABLE = 1ULL << 57;    // non-leaf: points at a table
inline constexpr entry_t PROTNONE = 1ULL << 58; // present but inaccessible (PROT_NONE, NUMA hint)
inline constexpr entry_t UFFD_WP = 1ULL << 59;
inline constexpr entry_t SWP = 1ULL << 62;      // non-present swap-style entry

inline constexpr entry_t PFN_MASK = ((1ULL << 52) - 1) & ~((1ULL << PAGE_SHIFT) - 1);

// Swap-style entry types (bits 1..4 of a non-present entry).
enum class SwpType : uint8_t {
    None = 0,
    MigrationRead = 1,
    MigrationReadExclusive = 2,
    MigrationWrite = 3,
    Hwpoison = 4,
};

inline constexpr bool none(entry_t e) { return e == 0; }
inline constexpr bool present(entry_t e) { return e & PRESENT; }
inline constexpr bool is_table(entry_t e) { return (e & (PRESENT | TABLE)) == (PRESENT | TABLE); }
inline constexpr bool is_leaf(entry_t e) { return present(e) && !(e & TABLE); }
inline constexpr bool write(entry_t e) { return e & WRITE; }
inline constexpr bool dirty(entry_t e) { return e & DIRTY; }
inline constexpr bool young(entry_t e) { return e & YOUNG; }
inline constexpr bool huge(entry_t e) { return e & HUGE; }
inline constexpr bool special(entry_t e) { return e & SPECIAL; }
inline constexpr bool devmap(entry_t e) { return e & DEVMAP; }
inline constexpr bool soft_dirty(entry_t e) { return e & SOFT_DIRTY; }
inline constexpr bool protnone(entry_t e) { return present(e) && (e & PROTNONE); }
inline constexpr bool uffd_wp(entry_t e) { return e & UFFD_WP; }
inline constexpr pfn_t pfn(entry_t e) { return (e & PFN_MASK) >> PAGE_SHIFT; }

inline constexpr entry_t mk(pfn_t pfn, entry_t bits) { return (pfn << PAGE_SHIFT) | bits; }
inline constexpr entry_t mkwrite(entry_t e) { return e | WRITE; }
inline constexpr entry_t wrprotect(entry_t e) { return e & ~WRITE; }
// pte_mkdirty() sets the soft-dirty bit too, as x86 does.
inline constexpr entry_t mkdirty(entry_t e) { return e | DIRTY | SOFT_DIRTY; }
inline constexpr entry_t mkclean(entry_t e) { return e & ~DIRTY; }
inline constexpr entry_t mkyoung(entry_t e) { return e | YOUNG; }
inline constexpr entry_t mkold(entry_t e) { return e & ~YOUNG; }
inline constexpr entry_t clear_soft_dirty(entry_t e) { return e & ~SOFT_DIRTY; }

// pte_access_permitted(): what the hardware (and GUP-fast) accepts.
inline constexpr bool access_permitted(entry_t e, bool want_write) {
    return present(e) && !(e & PROTNONE) && (e & USER) && (!want_write || (e & WRITE));
}

// --- swap-style entries ---------------------------------------------------------
inline constexpr bool is_swap(entry_t e) { return !present(e) && (e & SWP); }
inline constexpr SwpType swp_type(entry_t e) {
    return is_swap(e) ? static_cast<SwpType>((e >> 1) & 0xf) : SwpType::None;
}
inline constexpr bool is_migration(entry_t e) {
    SwpType t = swp_type(e);
    return t == SwpType::MigrationRead || t == SwpType::MigrationReadExclusive || t == SwpType::MigrationWrite;
}
inline constexpr entry_t mk_swp(SwpType t, pfn_t pfn, entry_t keep_bits) {
    return SWP | (static_cast<entry_t>(t) << 1) | (pfn << PAGE_SHIFT) |
           (keep_bits & (SOFT_DIRTY | UFFD_WP | HUGE | YOUNG | DIRTY));
}

// "present write dirty ... pfn=0x1234" for explain output and test messages.
std::string describe(entry_t e);

}  // namespace pl::pte
