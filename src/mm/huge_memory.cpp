// pinlab — transparent huge pages: PMD-sized anonymous folios, the huge zero
// page, PMD splitting, folio splitting and MADV_COLLAPSE; plus the PMD/PUD
// levels of the fault path that drivers' ->huge_fault plugs into
// (upstream mm/huge_memory.c, mm/khugepaged.c and the huge parts of mm/memory.c).
#include "base/sync/rcu.h"
#include "fs/inode.h"
#include "mm/anon_vma.h"
#include "mm/internal.h"

namespace pl {

using namespace pte;

namespace {

const Config& cfg_of(const Vma& v) { return v.mm->kernel.cfg; }

entry_t maybe_mkwrite(const Vma& v, entry_t e) { return (v.flags & VM_WRITE) ? mkwrite(e) : e; }

bool is_huge_zero_entry(const Vma& vma, entry_t e) {
    Folio* hz = mem_of(vma).huge_zero_folio();
    return hz && present(e) && pte::pfn(e) == mem_of(vma).page_to_pfn(hz->head());
}

// A fresh anonymous THP becomes the PMD at haddr: exclusive, writable if the
// VMA is (the tail of do_huge_pmd_anonymous_page()). Caller holds the ptl.
void map_new_anon_thp_locked(Vma& vma, vaddr_t haddr, entry_t* slot, Folio* f) {
    folio_add_new_anon_rmap(f, vma, haddr, RmapLevel::Pmd, true);
    account_rss(vma, f, static_cast<long>(f->nr_pages()));
    entry_t e = mk(mem_of(vma).page_to_pfn(f->head()), vma.page_prot() | HUGE | YOUNG);
    sync::store(*slot, maybe_mkwrite(vma, mkdirty(e)));
    kernel_of(vma).vmstat.add(Vmstat::thp_fault_alloc);
}

vm_fault_t do_huge_pmd_anonymous_page(Vma& vma, vaddr_t haddr, unsigned flags, entry_t* slot) {
    MmStruct& mm = *vma.mm;
    PhysMem& mem = mem_of(vma);
    // vmf_anon_prepare() comes first, for the huge zero page too (unlike
    // do_anonymous_page()'s 4 KiB one): the VMA then has an anon_vma, so
    // fork's vma_needs_copy() copies the huge zero PMD to the child.
    if (!anon_vma_prepare(vma)) return VM_FAULT_OOM;
    if (!(flags & FAULT_FLAG_WRITE) && cfg_of(vma).thp_use_zero_page && mem.huge_zero_folio()) {
        entry_t e = mk(mem.page_to_pfn(mem.huge_zero_folio()->head()), PRESENT | USER | HUGE | YOUNG);
        if (cfg_of(vma).arch_pmd_special) e |= SPECIAL;
        sync::SpinGuard g(mm.page_table_lock);
        if (none(sync::load(*slot))) sync::store(*slot, e);
        return 0;
    }
    auto folio = mem.alloc_folio(PMD_ORDER, current_gfp_context(GFP_TRANSHUGE));
    if (!folio) {
        kernel_of(vma).vmstat.add(Vmstat::thp_fault_fallback);
        return VM_FAULT_FALLBACK;
    }
    Folio* f = *folio;
    sync::SpinGuard g(mm.page_table_lock);
    if (!none(sync::load(*slot))) {
        mem.folio_put(f);
        return 0;
    }
    map_new_anon_thp_locked(vma, haddr, slot, f);
    return 0;
}

// A write to the huge zero page: give the mapping its own THP if one can be
// had, else fall back to PTEs.
vm_fault_t do_huge_zero_wp_pmd(Vma& vma, vaddr_t haddr, entry_t* slot, entry_t orig) {
    MmStruct& mm = *vma.mm;
    PhysMem& mem = mem_of(vma);
    if (!anon_vma_prepare(vma)) return VM_FAULT_OOM;
    auto folio = mem.alloc_folio(PMD_ORDER, current_gfp_context(GFP_TRANSHUGE));
    if (!folio) return VM_FAULT_FALLBACK;
    Folio* f = *folio;
    sync::SpinGuard g(mm.page_table_lock);
    if (sync::load(*slot) != orig) {
        mem.folio_put(f);
        return 0;
    }
    map_new_anon_thp_locked(vma, haddr, slot, f);
    return 0;
}

vm_fault_t do_huge_pmd_wp_page(Vma& vma, vaddr_t addr, unsigned flags, entry_t* slot, entry_t orig) {
    bool unshare = flags & FAULT_FLAG_UNSHARE;
    vaddr_t haddr = addr & PMD_MASK;
    if (is_huge_zero_entry(vma, orig)) {
        if (unshare) return VM_FAULT_FALLBACK;
        return do_huge_zero_wp_pmd(vma, haddr, slot, orig);
    }
    Page* page = vm_normal_page_huge(vma, haddr, orig, PtLevel::Pmd);
    if (!page) return VM_FAULT_FALLBACK;
    Folio* folio = page_folio(page);
    if (!folio->is_anon()) return VM_FAULT_FALLBACK;
    bool reuse = PageAnonExclusive(folio->head());
    if (!reuse && folio->trylock()) {
        // Only this PMD mapping holds a reference: nobody else can see it.
        reuse = folio->ref_count() == 1 && folio->mapcount() == 1;
        folio->unlock();
    }
    if (!reuse) return VM_FAULT_FALLBACK;
    sync::SpinGuard g(vma.mm->page_table_lock);
    if (sync::load(*slot) != orig) return 0;
    SetPageAnonExclusive(folio->head());
    if (unshare) return 0;
    sync::store(*slot, maybe_mkwrite(vma, mkyoung(mkdirty(orig))));
    return 0;
}

bool fits(const Vma& vma, vaddr_t base, uint64_t size) { return base >= vma.start && base + size <= vma.end; }

}  // namespace

bool thp_vma_allowable(const Vma& vma, vaddr_t haddr) {
    if (!vma.is_anonymous() || (vma.flags & (VM_NOHUGEPAGE | VM_SPECIAL | VM_HUGETLB))) return false;
    if (vma.flags & VM_SHARED) return false;
    switch (cfg_of(vma).thp) {
        case ThpMode::never: return false;
        case ThpMode::madvise:
            if (!(vma.flags & VM_HUGEPAGE)) return false;
            break;
        case ThpMode::always: break;
    }
    return fits(vma, haddr, PMD_SIZE);
}

// The PUD and PMD levels of __handle_mm_fault(). Sets *handled when the
// fault was resolved (or failed) at a huge level; otherwise the PTE level runs.
vm_fault_t handle_huge_fault_levels(Vma& vma, vaddr_t addr, unsigned flags, bool* handled) {
    MmStruct& mm = *vma.mm;
    bool wants_write = flags & (FAULT_FLAG_WRITE | FAULT_FLAG_UNSHARE);
    *handled = true;

    // --- PUD ---------------------------------------------------------------------
    entry_t* pud;
    {
        sync::SpinGuard g(mm.page_table_lock);
        pud = mm.pgtable.pud_slot(addr, true);
    }
    if (!pud) return VM_FAULT_OOM;
    entry_t e = sync::load(*pud);
    if (none(e)) {
        vaddr_t base = addr & PUD_MASK;
        if (vma.ops && vma.ops->has_huge_fault() && fits(vma, base, PUD_SIZE)) {
            VmFault vmf{&vma, base, addr, flags, vma.pgoff_of(base), 0, nullptr};
            vm_fault_t r = vma.ops->huge_fault(vmf, PUD_ORDER);
            if (!(r & VM_FAULT_FALLBACK)) return r;
        }
    } else if (is_leaf(e)) {
        if (wants_write && !write(e)) {
            if ((vma.flags & (VM_SHARED | VM_MAYSHARE)) && vma.ops && vma.ops->has_huge_fault()) {
                VmFault vmf{&vma, addr & PUD_MASK, addr, flags, vma.pgoff_of(addr & PUD_MASK), e, nullptr};
                vm_fault_t r = vma.ops->huge_fault(vmf, PUD_ORDER);
                if (!(r & VM_FAULT_FALLBACK)) return r;
            }
            // COW and write-notify are not handled at PUD level: drop the entry
            // and refault at a lower level (__split_huge_pud()).
            zap_vma_range(vma, addr & PUD_MASK, (addr & PUD_MASK) + PUD_SIZE);
        } else {
            sync::SpinGuard g(mm.page_table_lock);
            if (sync::load(*pud) == e) sync::store(*pud, mkyoung((flags & FAULT_FLAG_WRITE) ? mkdirty(e) : e));
            return 0;
        }
    } else if (!is_table(e)) {
        return VM_FAULT_SIGBUS;
    }

    // --- PMD ---------------------------------------------------------------------
    entry_t* pmd;
    {
        sync::SpinGuard g(mm.page_table_lock);
        pmd = mm.pgtable.pmd_slot(addr, true);
    }
    if (!pmd) {
        entry_t p = sync::load(*pud);
        return is_leaf(p) ? 0 : VM_FAULT_OOM;  // a PUD leaf appeared: retry
    }
    e = sync::load(*pmd);
    vaddr_t haddr = addr & PMD_MASK;
    if (none(e)) {
        if (vma.is_anonymous() && thp_vma_allowable(vma, haddr)) {
            vm_fault_t r = do_huge_pmd_anonymous_page(vma, haddr, flags, pmd);
            if (!(r & VM_FAULT_FALLBACK)) return r;
        } else if (!vma.is_anonymous() && vma.ops && vma.ops->has_huge_fault() && fits(vma, haddr, PMD_SIZE)) {
            VmFault vmf{&vma, haddr, addr, flags, vma.pgoff_of(haddr), 0, nullptr};
            vm_fault_t r = vma.ops->huge_fault(vmf, PMD_ORDER);
            if (!(r & VM_FAULT_FALLBACK)) return r;
        }
        *handled = false;
        return 0;
    }
    if (is_table(e)) {
        *handled = false;
        return 0;
    }
    if (is_migration(e)) {
        migration_entry_wait(pmd, e);
        return 0;
    }
    if (!present(e)) return VM_FAULT_SIGBUS;
    if (e & PROTNONE) {
        if (!(vma.flags & VM_ACCESS_FLAGS)) return VM_FAULT_SIGSEGV;
        sync::SpinGuard g(mm.page_table_lock);
        if (sync::load(*pmd) == e) sync::store(*pmd, e & ~PROTNONE);
        return 0;
    }
    if (wants_write && !write(e)) {
        if (vma.is_anonymous()) {
            vm_fault_t r = do_huge_pmd_wp_page(vma, addr, flags, pmd, e);
            if (!(r & VM_FAULT_FALLBACK)) return r;
            split_huge_pmd(vma, addr);
        } else {
            if ((vma.flags & (VM_SHARED | VM_MAYSHARE)) && vma.ops && vma.ops->has_huge_fault()) {
                VmFault vmf{&vma, haddr, addr, flags, vma.pgoff_of(haddr), e, nullptr};
                vm_fault_t r = vma.ops->huge_fault(vmf, PMD_ORDER);
                if (!(r & VM_FAULT_FALLBACK)) return r;
            }
            split_huge_pmd(vma, addr);
        }
        *handled = false;
        return 0;
    }
    sync::SpinGuard g(mm.page_table_lock);
    if (sync::load(*pmd) == e) sync::store(*pmd, mkyoung((flags & FAULT_FLAG_WRITE) ? mkdirty(e) : e));
    return 0;
}

// ---------------------------------------------------------------------------
// Splitting
// ---------------------------------------------------------------------------

void split_huge_pmd_locked(Vma& vma, vaddr_t addr, entry_t* slot) {
    entry_t e = sync::load(*slot);
    if (!is_leaf(e) || !huge(e)) return;
    PhysMem& mem = mem_of(vma);
    vaddr_t haddr = addr & PMD_MASK;
    kernel_of(vma).vmstat.add(Vmstat::thp_split_pmd);

    if (is_huge_zero_entry(vma, e)) {
        auto t = vma.mm->pgtable.alloc_table();
        if (!t) return;  // leave the PMD in place; callers cope with a leaf
        entry_t z = mk(mem.page_to_pfn(mem.zero_folio()->head()), PRESENT | USER | YOUNG);
        if (cfg_of(vma).arch_pte_special) z |= SPECIAL;
        z |= e & (PROTNONE | SOFT_DIRTY | UFFD_WP);
        for (unsigned i = 0; i < PTRS_PER_TABLE; ++i) (*t)->e[i] = z;
        sync::store(*slot, PageTable::mk_table_entry(*t), sync::memory_order_release);
        return;
    }
    Page* page = vm_normal_page_huge(vma, haddr, e, PtLevel::Pmd);
    if (!vma.is_anonymous() || !page || !page_folio(page)->is_anon()) {
        // File, dax or PFN PMDs are zapped and refaulted with PTEs.
        sync::store(*slot, entry_t{0});
        if (page) {
            Folio* folio = page_folio(page);
            folio_remove_rmap(folio, page, 1, vma, RmapLevel::Pmd);
            account_rss(vma, folio, -static_cast<long>(folio->nr_pages()));
            mem.folio_put(folio);
        }
        return;
    }
    Folio* folio = page_folio(page);
    auto t = vma.mm->pgtable.alloc_table();
    if (!t) return;
    bool exclusive = PageAnonExclusive(folio->head());
    pfn_t base = mem.page_to_pfn(folio->head());
    entry_t bits = e & (PRESENT | USER | WRITE | DIRTY | YOUNG | SOFT_DIRTY | UFFD_WP | PROTNONE);
    for (unsigned i = 0; i < PTRS_PER_TABLE; ++i) (*t)->e[i] = mk(base + i, bits);
    // 512 PTE mappings replace one PMD mapping; each holds a reference.
    folio->ref_add(static_cast<int>(PTRS_PER_TABLE) - 1);
    folio_add_anon_rmap(folio, folio->head(), static_cast<int>(PTRS_PER_TABLE), vma, RmapLevel::Pte, exclusive);
    folio_remove_rmap(folio, folio->head(), 1, vma, RmapLevel::Pmd);
    sync::store(*slot, PageTable::mk_table_entry(*t), sync::memory_order_release);
}

void split_huge_pmd(Vma& vma, vaddr_t addr) {
    sync::SpinGuard g(vma.mm->page_table_lock);
    entry_t* slot = vma.mm->pgtable.pmd_slot(addr, false);
    if (slot) split_huge_pmd_locked(vma, addr, slot);
}

Status split_folio(PhysMem& mem, Folio* folio) {
    if (!folio->is_large()) return ok_status();
    if (folio->is_hugetlb() || folio->is_zone_device() || folio->is_reserved()) return Error(EINVAL);
    if (!folio->is_anon()) return Error(EINVAL);  // page-cache folios are order 0 in the model
    // PMD mappings must become PTE mappings first.
    if (folio->entire_mapcount() > 0) {
        rmap_walk(folio, [&](Vma& vma, vaddr_t addr) {
            if (addr >= vma.start && addr + PMD_SIZE <= vma.end) split_huge_pmd(vma, addr);
            return true;
        });
        if (folio->entire_mapcount() > 0) return Error(EBUSY);
    }
    unsigned long n = folio->nr_pages();
    int mapped = 0;
    for (unsigned long i = 0; i < n; ++i) mapped += sync::load(folio->page(i)->mapcount);
    int expected = mapped + 1;  // the mappings and the caller
    if (!folio->ref_freeze(expected)) return Error(EBUSY);  // extra references: maybe pinned

    uintptr_t mapping = folio->raw_mapping();
    pgoff_t index = folio->index();
    uint64_t keep = sync::load(folio->head()->flags) &
                    ((1ULL << PG_dirty) | (1ULL << PG_uptodate) | (1ULL << PG_swapbacked) | (1ULL << PG_referenced) |
                     PAGE_ZONE_MASK);
    for (unsigned long i = 0; i < n; ++i) {
        Page* p = folio->page(i);
        uint64_t f = sync::load(p->flags);
        uint64_t own = f & ((1ULL << PG_anon_exclusive) | (1ULL << PG_hwpoison) | (1ULL << PG_locked));
        if (i == 0) own &= ~(1ULL << PG_locked);  // the caller unlocks the head below
        if (i == 1) {
            p->u.f1 = {};  // the large-folio counters go away
        }
        sync::store(p->compound_head, uintptr_t{0});
        sync::store(p->flags, keep | own | (i == 0 ? (f & (1ULL << PG_locked)) : 0));
        p->u.h.mapping = mapping;
        p->u.h.index = index + i;
        int refs = sync::load(p->mapcount) + (i == 0 ? 1 : 0);
        if (i != 0) sync::store(p->refcount, refs);
    }
    // The head keeps its lock bit for the caller; publish its count last.
    sync::store(folio->head()->refcount, sync::load(folio->head()->mapcount) + 1, sync::memory_order_release);
    // Subpages nobody maps any more are freed now.
    for (unsigned long i = 1; i < n; ++i) {
        Page* p = folio->page(i);
        if (sync::load(p->refcount) == 0) {
            sync::store(p->refcount, 1);
            mem.folio_put(Folio::of(p));
        }
    }
    return ok_status();
}

// ---------------------------------------------------------------------------
// MADV_COLLAPSE
// ---------------------------------------------------------------------------

Status collapse_huge_page(Vma& vma, vaddr_t haddr) {
    if (!vma.is_anonymous() || (vma.flags & (VM_NOHUGEPAGE | VM_SHARED | VM_SPECIAL))) return Error(EINVAL);
    if (!fits(vma, haddr, PMD_SIZE)) return Error(EINVAL);
    MmStruct& mm = *vma.mm;
    PhysMem& mem = mem_of(vma);

    entry_t* pmd;
    {
        sync::SpinGuard g(mm.page_table_lock);
        pmd = mm.pgtable.pmd_slot(haddr, false);
        if (!pmd) return Error(EINVAL);
        entry_t e = sync::load(*pmd);
        // find_pmd_or_thp_or_none(): a PMD leaf (a THP, or the huge zero
        // page) is SCAN_PMD_MAPPED, which madvise_collapse() counts as done.
        if (is_leaf(e)) return ok_status();
        if (!is_table(e)) return Error(EINVAL);
        // Scan: every entry must be none, the zero page, or an anonymous page
        // without references beyond its mappings.
        PtTable* t = PageTable::table_of(e);
        bool any = false;
        for (unsigned i = 0; i < PTRS_PER_TABLE; ++i) {
            entry_t pe = sync::load(t->e[i]);
            if (none(pe)) continue;
            if (!present(pe)) return Error(EAGAIN);
            if (uffd_wp(pe)) return Error(EINVAL);
            vaddr_t a = haddr + (uint64_t{i} << PAGE_SHIFT);
            Page* p = vm_normal_page(vma, a, pe);
            if (!p) {
                if (mem.is_zero_pfn(pte::pfn(pe))) continue;
                return Error(EINVAL);
            }
            Folio* f = page_folio(p);
            if (!f->is_anon()) return Error(EINVAL);
            if (f->ref_count() != f->mapcount()) return Error(EAGAIN);  // pinned or otherwise held
            any = true;
        }
        if (!any) return Error(EINVAL);
    }
    if (!anon_vma_prepare(vma)) return Error(ENOMEM);
    auto nf = mem.alloc_folio(PMD_ORDER, current_gfp_context(__GFP_MOVABLE | __GFP_COMP));
    if (!nf) return Error(ENOMEM);
    Folio* newf = *nf;

    // The reference counts checked below are final only once no GUP-fast walk
    // can still take a reference through the old entries. As upstream, the
    // PMD is cleared first (pmdp_collapse_flush()) and every walk that may
    // have read it is waited for (tlb_remove_table_sync_one(): the model's
    // walks are RCU readers): a pin such a walk took is counted, a later walk
    // finds no table and falls back to the slow path, which waits for our
    // mmap_lock. The anon_vma stays locked for write meanwhile, so that no
    // rmap walk (remove_migration_ptes()) looks for entries while the table
    // is detached.
    sync::WriteGuard rmap_lock(vma.anon_vma->lock);
    PtTable* t = nullptr;
    {
        sync::SpinGuard g(mm.page_table_lock);
        entry_t e = sync::load(*pmd);
        if (!is_table(e)) {
            mem.folio_put(newf);
            return Error(EAGAIN);
        }
        t = PageTable::table_of(e);
        sync::store(*pmd, entry_t{0});
    }
    sync::synchronize_rcu();

    sync::SpinGuard g(mm.page_table_lock);
    auto give_up = [&] {
        sync::store(*pmd, PageTable::mk_table_entry(t), sync::memory_order_release);
        mem.folio_put(newf);
        return Error(EAGAIN);
    };
    // Recheck (__collapse_huge_page_isolate()) and copy.
    for (unsigned i = 0; i < PTRS_PER_TABLE; ++i) {
        entry_t pe = sync::load(t->e[i]);
        vaddr_t a = haddr + (uint64_t{i} << PAGE_SHIFT);
        if (none(pe)) continue;
        Page* p = present(pe) ? vm_normal_page(vma, a, pe) : nullptr;
        if (!p) {
            if (present(pe) && mem.is_zero_pfn(pte::pfn(pe))) continue;
            return give_up();
        }
        Folio* f = page_folio(p);
        if (!f->is_anon() || f->ref_count() != f->mapcount()) return give_up();
        mem.copy_page(newf->page(i), p);
    }
    // Tear down the old PTEs and put the PMD in place.
    for (unsigned i = 0; i < PTRS_PER_TABLE; ++i) {
        entry_t pe = sync::exchange(t->e[i], entry_t{0});
        vaddr_t a = haddr + (uint64_t{i} << PAGE_SHIFT);
        if (none(pe)) continue;
        Page* p = vm_normal_page(vma, a, pe);
        if (!p) continue;
        Folio* f = page_folio(p);
        folio_remove_rmap(f, p, 1, vma, RmapLevel::Pte);
        account_rss(vma, f, -1);
        mem.folio_put(f);
    }
    PageTable::free_table_rcu(t);
    folio_add_new_anon_rmap(newf, vma, haddr, RmapLevel::Pmd, true);
    account_rss(vma, newf, static_cast<long>(newf->nr_pages()));
    entry_t ne = mk(mem.page_to_pfn(newf->head()), vma.page_prot() | HUGE | YOUNG);
    sync::store(*pmd, maybe_mkwrite(vma, mkdirty(ne)));
    kernel_of(vma).vmstat.add(Vmstat::thp_collapse_alloc);
    return ok_status();
}

}  // namespace pl
