// pinlab — CONFIG_PT_RECLAIM: MADV_DONTNEED frees the PTE tables it empties
// (upstream mm/pt_reclaim.c and the reclaim_pt part of zap_pte_range(),
// v6.15+).
//
// Why it matters to GUP: once the table is gone the PMD is none again, so the
// next fault there may map a THP (or the huge zero page, whose pins are
// counted) instead of a 4K page in the leftover table.
#include "base/sync/rwsem.h"
#include "kernel/kernel.h"
#include "mm/internal.h"

namespace pl {

using namespace pte;

namespace {

bool table_all_none(const PtTable* t) {
    for (const entry_t& e : t->e)
        if (!none(sync::load(e))) return false;
    return true;
}

// try_get_and_clear_pmd() + free_pte(): detach the PTE table under the PMD
// at `haddr` if every entry in it is none, and free it after a grace period
// (tlb_remove_table), so a GUP-fast walker that still reads it (inside its
// RCU section, the model's IRQs-off walk) sees only none entries and falls
// back to the slow path. Caller holds pte_table_sem for write: no fault holds
// a slot into the table.
void try_to_free_pte(MmStruct& mm, vaddr_t haddr) {
    sync::SpinGuard g(mm.page_table_lock);
    entry_t* pmd = mm.pgtable.pmd_slot(haddr, /*alloc=*/false);
    if (!pmd) return;
    entry_t e = sync::load(*pmd);
    if (!is_table(e)) return;  // none, or a PMD leaf: nothing to free
    PtTable* t = PageTable::table_of(e);
    // Recheck under the lock: a concurrent fault may have refilled an entry
    // since the zap (the retry case upstream rechecks too).
    if (!table_all_none(t)) return;
    sync::store(*pmd, entry_t{0}, sync::memory_order_release);
    PageTable::free_table_rcu(t);
}

}  // namespace

void zap_vma_range_reclaim_pt(Vma& vma, vaddr_t start, vaddr_t end) {
    zap_vma_range(vma, start, end);
    // CONFIG_PT_RECLAIM came with v6.15 ("mm: make MADV_DONTNEED free empty
    // page tables"): only the `current` era has it. hugetlb ranges are zapped
    // by __unmap_hugepage_range(), which never reclaims tables.
    if (!vma.mm->kernel.cfg.era_at_least(Era::current) || vma.is_hugetlb()) return;
    // reclaim_pt_is_enabled(): zap_pte_range() is given the part of the range
    // inside one PMD, so only tables the range covers entirely qualify.
    vaddr_t haddr = (start + PMD_SIZE - 1) & PMD_MASK;
    if (haddr < start) return;  // wrapped
    MmStruct& mm = *vma.mm;
    // Any PTE-level fault of this mm in flight may hold a slot into one of
    // these tables: keep them all then (upstream frees them and the fault
    // retries on the changed PMD). Only concurrent runs can tell.
    if (!mm.pte_table_sem.try_down_write()) return;
    for (; haddr + PMD_SIZE > haddr && haddr + PMD_SIZE <= end; haddr += PMD_SIZE) {
        // zap_pud_range() skips holes at the PUD level: so do we.
        entry_t* pud = mm.pgtable.pud_slot(haddr, /*alloc=*/false);
        if (!pud || !is_table(sync::load(*pud))) {
            vaddr_t next = (haddr & PUD_MASK) + PUD_SIZE;
            if (next <= haddr) break;
            haddr = next - PMD_SIZE;  // the loop adds PMD_SIZE
            continue;
        }
        try_to_free_pte(mm, haddr);
    }
    mm.pte_table_sem.up_write();
}

}  // namespace pl
