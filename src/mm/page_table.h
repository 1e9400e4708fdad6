// pinlab — a task's four-level page table (pgd → pud → pmd → pte; p4d folded).
//
// Entries are read and written atomically (sync::load/store on the words), so
// the lockless GUP-fast walker can read them concurrently. Writers hold the
// owning mm's page_table_lock. Tables are freed only through call_rcu(), and
// the fast walker runs inside an RCU read-side section: this is the model's
// equivalent of upstream's IRQ-disabled walk against RCU/IPI table freeing.
// With mm.pt_free_rcu=off free_pgtables() frees at once instead: the table
// is poisoned and quarantined (never returned to the allocator while the mm
// lives), so a walker that reads it sees kPoison instead of undefined memory.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "base/result.h"
#include "mm/pte.h"

namespace pl {

enum class PtLevel : uint8_t { Pte = 0, Pmd = 1, Pud = 2, Pgd = 3 };

// How free_pgtables() frees a table it unhooked (Config::mm_pt_free_rcu).
enum class TableFree : uint8_t {
    Rcu,         // after a grace period (tlb_remove_table() with MMU_GATHER_RCU_TABLE_FREE)
    Quarantine,  // at once, without the protection: poisoned, kept until ~PageTable
};

struct alignas(4096) PtTable {
    pte::entry_t e[PTRS_PER_TABLE];
};

inline constexpr unsigned level_shift(PtLevel l) { return PAGE_SHIFT + 9 * static_cast<unsigned>(l); }
inline constexpr unsigned pt_index(vaddr_t a, PtLevel l) { return (a >> level_shift(l)) & (PTRS_PER_TABLE - 1); }

class PageTable {
public:
    PageTable();
    ~PageTable();  // frees every table immediately: no walker may still run
    PageTable(const PageTable&) = delete;
    PageTable& operator=(const PageTable&) = delete;

    PtTable* pgd() const { return pgd_; }

    // Slots for the entry that maps `addr` at each level. With `alloc`, missing
    // intermediate tables are created (-ENOMEM on failure); without, nullptr is
    // returned when a table is missing. A leaf at a higher level stops the
    // descent (nullptr for the lower slot). Caller holds page_table_lock when
    // allocating or when it will write through the slot.
    pte::entry_t* pud_slot(vaddr_t addr, bool alloc);
    pte::entry_t* pmd_slot(vaddr_t addr, bool alloc);
    pte::entry_t* pte_slot(vaddr_t addr, bool alloc);
    pte::entry_t* slot(vaddr_t addr, PtLevel level, bool alloc);

    // The leaf mapping addr, if any: its slot and level (lockless-safe when
    // the caller is in an RCU read section or holds the page_table_lock).
    struct Leaf {
        pte::entry_t* slot = nullptr;
        PtLevel level = PtLevel::Pte;
        pte::entry_t entry = 0;
    };
    Leaf find_leaf(vaddr_t addr) const;
    // The first leaf (or swap-style entry) at or after *addr and below end,
    // skipping empty tables; *addr is set to the start of the range it maps.
    // Returns an empty Leaf (slot == nullptr) when there is none.
    Leaf next_leaf(vaddr_t* addr, vaddr_t end) const;

    // Installs a fresh PTE table under a PMD slot that is none (pte_alloc).
    Result<PtTable*> alloc_table();
    // Frees a table after a grace period (tlb_remove_table).
    static void free_table_rcu(PtTable* t);
    // free_pgtables()' way of freeing (set once, when the mm is made).
    void set_table_free(TableFree how) { table_free_ = how; }
    // Frees a table free_pgtables() unhooked, the way set_table_free() says.
    void free_table(PtTable* t);
    // What every entry of a quarantined table reads as (slab's POISON_FREE
    // bytes): no valid entry has this value. Only a lockless walker can see
    // it, and only with mm.pt_free_rcu=off.
    static constexpr pte::entry_t kPoison = 0x6b6b6b6b6b6b6b6bULL;
    uint64_t nr_quarantined() const { return quarantine_.size(); }
    static PtTable* table_of(pte::entry_t e) {
        return reinterpret_cast<PtTable*>(e & kTableAddrMask);
    }
    static pte::entry_t mk_table_entry(PtTable* t) {
        return reinterpret_cast<uintptr_t>(t) | pte::PRESENT | pte::TABLE | pte::WRITE | pte::USER;
    }

    // free_pgtables(): frees page tables that map only [floor, ceiling) and
    // hold no entries in [start, end). Caller holds mmap_lock for write and the
    // page_table_lock.
    void free_pgtables(vaddr_t start, vaddr_t end, vaddr_t floor, vaddr_t ceiling);

    // Visits every present or swap-style leaf in [start, end), in order.
    // `fn(addr, level, slot)` may modify the slot (caller holds the lock).
    void for_each_leaf(vaddr_t start, vaddr_t end,
                       const std::function<void(vaddr_t, PtLevel, pte::entry_t*)>& fn) const;

    uint64_t nr_tables() const { return nr_tables_; }

    static constexpr uint64_t kTableAddrMask = ((1ULL << 57) - 1) & ~((1ULL << PAGE_SHIFT) - 1);

private:
    PtTable* pgd_;
    uint64_t nr_tables_ = 1;
    TableFree table_free_ = TableFree::Rcu;
    // Written under the mm's page_table_lock (free_pgtables()' caller).
    std::vector<PtTable*> quarantine_;
};

}  // namespace pl
