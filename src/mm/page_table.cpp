#include "mm/page_table.h"

#include <new>

#include "base/sync/atomic.h"
#include "base/sync/rcu.h"

namespace pl {

using namespace pte;

namespace {

PtTable* new_table() {
    auto* t = new (std::nothrow) PtTable;
    if (t)
        for (auto& e : t->e) e = 0;
    return t;
}

void destroy_tree(PtTable* t, PtLevel level) {
    if (level != PtLevel::Pte) {
        for (auto e : t->e)
            if (is_table(e)) destroy_tree(PageTable::table_of(e), static_cast<PtLevel>(static_cast<int>(level) - 1));
    }
    delete t;
}

}  // namespace

PageTable::PageTable() : pgd_(new_table()) {
    if (!pgd_) throw std::bad_alloc();  // construction of an mm is the only place allowed to fail this way
}

PageTable::~PageTable() {
    destroy_tree(pgd_, PtLevel::Pgd);
    for (PtTable* t : quarantine_) delete t;
}

Result<PtTable*> PageTable::alloc_table() {
    PtTable* t = new_table();
    if (!t) return Error(ENOMEM);
    ++nr_tables_;
    return t;
}

void PageTable::free_table_rcu(PtTable* t) {
    sync::call_rcu([t] { delete t; });
}

void PageTable::free_table(PtTable* t) {
    if (table_free_ == TableFree::Rcu) return free_table_rcu(t);
    // Freed at once, as a kernel without the grace period would: a walker
    // that still holds the pointer reads the poison (upstream: whatever the
    // page allocator put there next). Poisoning announces no interleaving
    // point: it stands for the frame's reuse, and a point per entry would
    // only make the explorer's search longer.
    for (auto& e : t->e) sync::poke(e, kPoison);
    quarantine_.push_back(t);
}

pte::entry_t* PageTable::slot(vaddr_t addr, PtLevel target, bool alloc) {
    PtTable* t = pgd_;
    for (int l = static_cast<int>(PtLevel::Pgd); l > static_cast<int>(target); --l) {
        auto level = static_cast<PtLevel>(l);
        entry_t* s = &t->e[pt_index(addr, level)];
        entry_t e = sync::load(*s, sync::memory_order_acquire);
        if (is_table(e)) {
            t = table_of(e);
            continue;
        }
        if (!none(e)) return nullptr;  // a leaf (or swap entry) at a higher level
        if (!alloc) return nullptr;
        auto nt = alloc_table();
        if (!nt) return nullptr;
        // Publish the zero-filled table before anyone can walk into it.
        sync::store(*s, mk_table_entry(*nt), sync::memory_order_release);
        t = *nt;
    }
    return &t->e[pt_index(addr, target)];
}

pte::entry_t* PageTable::pud_slot(vaddr_t addr, bool alloc) { return slot(addr, PtLevel::Pud, alloc); }
pte::entry_t* PageTable::pmd_slot(vaddr_t addr, bool alloc) { return slot(addr, PtLevel::Pmd, alloc); }
pte::entry_t* PageTable::pte_slot(vaddr_t addr, bool alloc) { return slot(addr, PtLevel::Pte, alloc); }

PageTable::Leaf PageTable::find_leaf(vaddr_t addr) const {
    PtTable* t = pgd_;
    for (int l = static_cast<int>(PtLevel::Pgd); l >= 0; --l) {
        auto level = static_cast<PtLevel>(l);
        entry_t* s = &t->e[pt_index(addr, level)];
        entry_t e = sync::load(*s, sync::memory_order_acquire);
        if (level != PtLevel::Pte && is_table(e)) {
            t = table_of(e);
            continue;
        }
        if (none(e)) return {};
        return Leaf{s, level, e};
    }
    return {};
}

PageTable::Leaf PageTable::next_leaf(vaddr_t* addr, vaddr_t end) const {
    vaddr_t a = *addr;
    while (a < end) {
        PtTable* t = pgd_;
        for (int l = static_cast<int>(PtLevel::Pgd); l >= 0; --l) {
            auto level = static_cast<PtLevel>(l);
            entry_t* s = &t->e[pt_index(a, level)];
            entry_t e = sync::load(*s, sync::memory_order_acquire);
            uint64_t span = 1ULL << level_shift(level);
            if (level != PtLevel::Pte && is_table(e)) {
                t = table_of(e);
                continue;
            }
            vaddr_t base = a & ~(span - 1);
            if (none(e)) {
                a = base + span;  // skip the whole empty slot
                if (a == 0) return {};  // wrapped past the top
                break;
            }
            *addr = base;
            return Leaf{s, level, e};
        }
    }
    return {};
}

namespace {

// Frees the subtree under *slot if it maps nothing in [floor, ceiling) outside
// [start, end) — i.e. if the whole table lies inside [floor, ceiling) and is empty.
// Caller holds the page_table_lock, which every writer of an entry holds:
// nothing can change under this scan, so it announces no interleaving
// point (512 of them per table would only lengthen the explorer's search).
bool table_empty(const PtTable* t) {
    for (const auto& e : t->e)
        if (!none(sync::peek(e))) return false;
    return true;
}

void free_range(PageTable& pt, entry_t* slot, PtLevel level, vaddr_t base, vaddr_t start, vaddr_t end, vaddr_t floor,
                vaddr_t ceiling) {
    entry_t e = sync::load(*slot);
    if (!is_table(e)) return;
    PtTable* t = PageTable::table_of(e);
    PtLevel child = static_cast<PtLevel>(static_cast<int>(level) - 1);
    uint64_t child_span = 1ULL << level_shift(child);
    if (child != PtLevel::Pte) {
        for (unsigned i = 0; i < PTRS_PER_TABLE; ++i) {
            vaddr_t cb = base + i * child_span;
            if (cb + child_span <= start || cb >= end) continue;
            free_range(pt, &t->e[i], child, cb, start, end, floor, ceiling);
        }
    }
    // This table covers [base, base + span) where span = 512 * child_span.
    uint64_t span = child_span * PTRS_PER_TABLE;
    if (base < floor || base + span - 1 > ceiling - 1) return;  // shared with a neighbouring VMA
    if (!table_empty(t)) return;
    sync::store(*slot, entry_t{0}, sync::memory_order_release);
    pt.free_table(t);
}

}  // namespace

void PageTable::free_pgtables(vaddr_t start, vaddr_t end, vaddr_t floor, vaddr_t ceiling) {
    uint64_t span = 1ULL << level_shift(PtLevel::Pgd);
    for (unsigned i = 0; i < PTRS_PER_TABLE; ++i) {
        vaddr_t b = i * span;
        if (b + span <= start || b >= end) continue;
        free_range(*this, &pgd_->e[i], PtLevel::Pgd, b, start, end, floor, ceiling);
    }
}

namespace {

void walk(PtTable* t, PtLevel level, vaddr_t base, vaddr_t start, vaddr_t end,
          const std::function<void(vaddr_t, PtLevel, entry_t*)>& fn) {
    uint64_t span = 1ULL << level_shift(level);
    unsigned first = start > base ? static_cast<unsigned>((start - base) / span) : 0;
    for (unsigned i = first; i < PTRS_PER_TABLE; ++i) {
        vaddr_t a = base + i * span;
        if (a >= end) break;
        entry_t e = sync::load(t->e[i]);
        if (none(e)) continue;
        if (level != PtLevel::Pte && is_table(e)) {
            walk(PageTable::table_of(e), static_cast<PtLevel>(static_cast<int>(level) - 1), a, start, end, fn);
            continue;
        }
        fn(a, level, &t->e[i]);
    }
}

}  // namespace

void PageTable::for_each_leaf(vaddr_t start, vaddr_t end,
                              const std::function<void(vaddr_t, PtLevel, entry_t*)>& fn) const {
    walk(pgd_, PtLevel::Pgd, 0, start, end, fn);
}

}  // namespace pl
