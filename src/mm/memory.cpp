// pinlab — page faults, zapping, fork's page-table copy and the driver entry
// points for inserting PFNs (upstream mm/memory.c).
#include <cstring>

#include "debug/trace.h"
#include "fs/file.h"
#include "fs/inode.h"
#include "kernel/kernel.h"
#include "mm/anon_vma.h"
#include "mm/fault_around.h"
#include "mm/internal.h"

namespace pl {

using namespace pte;

namespace {

const Config& cfg_of(const Vma& v) { return v.mm->kernel.cfg; }

// The PTE bits for a special mapping entry: the bit exists only where the
// arch has pte_special (pte_mkspecial() is a no-op elsewhere).
entry_t mkspecial(const Vma& v, entry_t e) { return cfg_of(v).arch_pte_special ? (e | SPECIAL) : e; }

entry_t maybe_mkwrite(const Vma& v, entry_t e) { return (v.flags & VM_WRITE) ? mkwrite(e) : e; }

// Drop one mapping's reference on the page behind a cleared entry.
void put_mapped(Vma& vma, Folio* folio) { mem_of(vma).folio_put(folio); }

}  // namespace

void account_rss(Vma& vma, const Folio* folio, long nr) {
    MmStruct& mm = *vma.mm;
    if (folio->is_anon()) mm.rss_anon.fetch_add(nr);
    else if (folio->test(PG_swapbacked)) mm.rss_shmem.fetch_add(nr);
    else mm.rss_file.fetch_add(nr);
}

// ---------------------------------------------------------------------------
// vm_normal_page
// ---------------------------------------------------------------------------

Page* vm_normal_page(const Vma& vma, vaddr_t addr, entry_t e) {
    PhysMem& mem = mem_of(vma);
    pfn_t pfn = pte::pfn(e);
    if (cfg_of(vma).arch_pte_special) {
        if (special(e)) return nullptr;
    } else if (vma.flags & (VM_PFNMAP | VM_MIXEDMAP)) {
        // Without pte_special, the VMA's layout says what is special.
        if (vma.flags & VM_MIXEDMAP) {
            if (!mem.pfn_valid(pfn)) return nullptr;
        } else {
            pfn_t linear = vma.pgoff + ((addr - vma.start) >> PAGE_SHIFT);
            if (pfn == linear) return nullptr;
            if (!vma.is_cow_mapping()) return nullptr;
        }
    }
    if (mem.is_zero_pfn(pfn)) return nullptr;
    return mem.pfn_to_page(pfn);
}

Page* vm_normal_page_huge(const Vma& vma, vaddr_t addr, entry_t e, PtLevel level) {
    PhysMem& mem = mem_of(vma);
    if (special(e) || devmap(e)) return nullptr;
    // Huge entries of PFNMAP/MIXEDMAP VMAs come from vmf_insert_pfn_pmd/pud
    // and hold no reference (vma_is_special_huge()).
    if (vma.flags & (VM_PFNMAP | VM_MIXEDMAP)) return nullptr;
    pfn_t pfn = pte::pfn(e);
    Page* p = mem.pfn_to_page(pfn);
    if (!p) return nullptr;
    if (mem.huge_zero_folio() && page_folio(p) == mem.huge_zero_folio()) return nullptr;
    (void)addr;
    (void)level;
    return p;
}

Page* entry_page(const Vma& vma, vaddr_t, entry_t e, PtLevel) { return mem_of(vma).pfn_to_page(pte::pfn(e)); }

// ---------------------------------------------------------------------------
// Anonymous faults
// ---------------------------------------------------------------------------

namespace {

struct FaultCtx {
    Vma& vma;
    vaddr_t addr;  // page aligned
    unsigned flags;
    MmStruct& mm;
    bool write() const { return flags & FAULT_FLAG_WRITE; }
    bool unshare() const { return flags & FAULT_FLAG_UNSHARE; }
};

Result<Folio*> alloc_user_folio(Vma& vma, unsigned order, gfp_t gfp) {
    return mem_of(vma).alloc_folio(order, current_gfp_context(gfp));
}

vm_fault_t do_anonymous_page(FaultCtx& f, entry_t* slot) {
    Vma& vma = f.vma;
    PhysMem& mem = mem_of(vma);
    if (!f.write()) {
        // Read fault: map the shared zero page read-only.
        entry_t e = mkspecial(vma, mk(mem.page_to_pfn(mem.zero_folio()->head()), PRESENT | USER | YOUNG));
        if (vma.page_prot() & PROTNONE) e |= PROTNONE;
        sync::SpinGuard g(f.mm.page_table_lock);
        if (none(sync::load(*slot))) sync::store(*slot, e);
        return 0;
    }
    if (!anon_vma_prepare(vma)) return VM_FAULT_OOM;
    auto folio = alloc_user_folio(vma, 0, GFP_HIGHUSER_MOVABLE);
    if (!folio) return VM_FAULT_OOM;
    Folio* fo = *folio;
    sync::SpinGuard g(f.mm.page_table_lock);
    if (!none(sync::load(*slot))) {
        mem.folio_put(fo);  // somebody else faulted it in
        return 0;
    }
    folio_add_new_anon_rmap(fo, vma, f.addr, RmapLevel::Pte, /*exclusive=*/true);
    account_rss(vma, fo, 1);
    entry_t e = mk(mem.page_to_pfn(fo->head()), vma.page_prot() | YOUNG);
    e = maybe_mkwrite(vma, mkdirty(e));
    sync::store(*slot, e);
    return 0;
}

// wp_can_reuse_anon_folio(): a write to a R/O anonymous page that is not
// marked exclusive may still reuse it when nobody else holds a reference.
// Large folios are always copied one subpage at a time (see FIDELITY.md).
bool wp_can_reuse_anon_folio(Folio* folio) {
    if (folio->is_large()) return false;
    if (folio->ref_count() > 3) return false;
    if (!folio->trylock()) return false;
    bool reuse = folio->ref_count() == 1;
    folio->unlock();
    return reuse;
}

// Before v5.8 do_wp_page() asked reuse_swap_page(): an anonymous page that
// only this PTE maps is reused, however many other references it has (a
// vmsplice()d pipe buffer, a GUP reference of a child that unmapped it:
// CVE-2020-29374). 09854ba94c6a ("mm: do_wp_page() simplification", v5.9)
// made the reference count decide (wp_can_reuse_anon_folio() above); the
// model switches at v5.8, whose GUP-side workaround (17839856fd58: R/O GUP
// breaks COW) it models with today's unshare. No swap cache, no KSM here.
bool wp_reuse_by_mapcount(const Vma& vma) { return !cfg_of(vma).era_at_least(Era::v5_8); }

// VM_FAULT_WRITE: do_wp_page() broke COW (copied or reused). Reported in the
// v4.8 era only, the one whose faultin_page() acts on it (see FIDELITY.md).
vm_fault_t vm_fault_write(const Vma& vma) { return cfg_of(vma).era_at_least(Era::v5_3) ? 0 : VM_FAULT_WRITE; }

// wp_page_copy(): give this mapping its own copy of the page (or of the zero
// page / a raw pfn when old_page is null). Called with the ptl NOT held.
vm_fault_t wp_page_copy(FaultCtx& f, entry_t* slot, entry_t orig, Page* old_page) {
    Vma& vma = f.vma;
    PhysMem& mem = mem_of(vma);
    if (!anon_vma_prepare(vma)) return VM_FAULT_OOM;
    auto nf = alloc_user_folio(vma, 0, GFP_HIGHUSER_MOVABLE);
    if (!nf) return VM_FAULT_OOM;
    Folio* newf = *nf;
    pfn_t opfn = pte::pfn(orig);
    if (old_page) {
        mem.copy_page(newf->head(), old_page);
    } else if (!mem.is_zero_pfn(opfn)) {
        // A raw pfn in a private PFNMAP/MIXEDMAP mapping: copy its bytes.
        uint8_t buf[PAGE_SIZE];
        if (mem.read_frame(opfn, 0, buf, PAGE_SIZE)) (void)mem.write_frame(mem.page_to_pfn(newf->head()), 0, buf, PAGE_SIZE);
    }
    sync::SpinGuard g(f.mm.page_table_lock);
    if (sync::load(*slot) != orig) {
        mem.folio_put(newf);  // raced: the entry changed under us; retry
        return 0;
    }
    Folio* oldf = old_page ? page_folio(old_page) : nullptr;
    if (oldf) {
        folio_remove_rmap(oldf, old_page, 1, vma, RmapLevel::Pte);
        account_rss(vma, oldf, -1);
    }
    folio_add_new_anon_rmap(newf, vma, f.addr, RmapLevel::Pte, /*exclusive=*/true);
    account_rss(vma, newf, 1);
    entry_t e = mk(mem.page_to_pfn(newf->head()), vma.page_prot() | YOUNG);
    e |= orig & (SOFT_DIRTY | UFFD_WP);
    // An unshare leaves the new, exclusive page mapped read-only.
    if (!f.unshare()) e = maybe_mkwrite(vma, mkdirty(e));
    sync::store(*slot, e);
    if (oldf) mem.folio_put(oldf);
    kernel_of(vma).vmstat.add(Vmstat::cow_copies);
    return f.unshare() ? 0 : vm_fault_write(vma);
}

vm_fault_t wp_page_shared(FaultCtx& f, entry_t* slot, entry_t orig, Page* page) {
    Vma& vma = f.vma;
    if (page && vma.ops && vma.ops->has_page_mkwrite()) {
        // ->page_mkwrite may sleep: keep the folio alive across it (folio_get()).
        Folio* folio = page_folio(page);
        if (!folio->ref_try_add(1)) return 0;
        VmFault vmf{&vma, f.addr, f.addr, f.flags | FAULT_FLAG_MKWRITE, vma.pgoff_of(f.addr), orig, page};
        vm_fault_t r = vma.ops->page_mkwrite(vmf);
        if (r & (VM_FAULT_ERROR | VM_FAULT_NOPAGE)) {
            mem_of(vma).folio_put(folio);
            return r;
        }
        {
            sync::SpinGuard g(f.mm.page_table_lock);
            if (sync::load(*slot) == orig) {
                sync::store(*slot, mkyoung(mkdirty(mkwrite(orig))));
                folio_mark_dirty(folio);
            }
        }
        mem_of(vma).folio_put(folio);
        return 0;
    } else if (!page && vma.ops && vma.ops->has_pfn_mkwrite()) {
        VmFault vmf{&vma, f.addr, f.addr, f.flags | FAULT_FLAG_MKWRITE, vma.pgoff_of(f.addr), orig, nullptr};
        vm_fault_t r = vma.ops->pfn_mkwrite(vmf);
        if (r & (VM_FAULT_ERROR | VM_FAULT_NOPAGE)) return r;
    }
    sync::SpinGuard g(f.mm.page_table_lock);
    if (sync::load(*slot) != orig) return 0;
    sync::store(*slot, mkyoung(mkdirty(mkwrite(orig))));
    if (page) folio_mark_dirty(page_folio(page));
    return 0;
}

vm_fault_t do_wp_page(FaultCtx& f, entry_t* slot, entry_t orig) {
    Vma& vma = f.vma;
    Page* page = vm_normal_page(vma, f.addr, orig);
    if (vma.flags & (VM_SHARED | VM_MAYSHARE)) {
        if (f.unshare()) return 0;  // shared mappings are never unshared
        trace::decision("do_wp_page", f.addr, page, "shared mapping: wp_page_shared (make writable, dirty)");
        return wp_page_shared(f, slot, orig, page);
    }
    if (page) {
        Folio* folio = nullptr;
        {
            // Upstream decides under the PTE lock, and so must we: `orig` was
            // read without it, so its page may have been migrated and freed
            // meanwhile (a reference taken on it now would revive a free
            // folio), and the reuse decision must see the reference a racing
            // copy takes: otherwise an unshare can reuse the page and pin it
            // exclusively while that copy, past its own check, replaces it
            // under the pin (the R/O entry does not change on reuse).
            sync::SpinGuard g(f.mm.page_table_lock);
            if (sync::load(*slot) != orig) return 0;  // changed: the fault is retried
            folio = page_folio(page);
            const bool reuse = folio->is_anon() && (wp_reuse_by_mapcount(vma)
                                                        ? page_mapcount(page) <= 1
                                                        : PageAnonExclusive(page) || wp_can_reuse_anon_folio(folio));
            if (reuse) {
                trace::decision("do_wp_page", f.addr, page,
                                f.unshare()                 ? "unshare: anon page exclusive, kept R/O (no copy)"
                                : wp_reuse_by_mapcount(vma) ? "reuse: only this PTE maps the anon page (reuse_swap_page(), before v5.8), made writable (wp_page_reuse)"
                                                            : "reuse: anon page exclusive, made writable (wp_page_reuse)");
                if (!PageAnonExclusive(page)) SetPageAnonExclusive(page);
                if (f.unshare()) return 0;
                // wp_page_reuse()
                sync::store(*slot, maybe_mkwrite(vma, mkyoung(mkdirty(orig))));
                return vm_fault_write(vma);
            }
            // A page-cache page in a private mapping: only a longterm R/O pin
            // unshares it; a write copies it.
            trace::decision("do_wp_page", f.addr, page, f.unshare() ? "unshare: page not exclusive, copied (wp_page_copy), copy mapped R/O" : "copy: page not exclusive, copied (wp_page_copy)");
            folio->ref_add(1);  // folio_get(): keep it alive across the copy
        }
        vm_fault_t r = wp_page_copy(f, slot, orig, page);
        mem_of(vma).folio_put(folio);
        return r;
    }
    // Zero page or a raw pfn in a private mapping.
    trace::decision("do_wp_page", f.addr, nullptr, "copy: zero page or raw pfn in a private mapping (wp_page_copy)");
    return wp_page_copy(f, slot, orig, nullptr);
}

// ---------------------------------------------------------------------------
// File faults
// ---------------------------------------------------------------------------

vm_fault_t do_vma_fault(FaultCtx& f, Page** out) {
    Vma& vma = f.vma;
    VmFault vmf{&vma, f.addr, f.addr, f.flags, vma.pgoff_of(f.addr), 0, nullptr};
    vm_fault_t r = vma.ops->fault(vmf);
    if (r & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY | VM_FAULT_COMPLETED)) return r;
    if (!vmf.page) return VM_FAULT_SIGBUS;
    if (PageHWPoison(vmf.page)) {
        mem_of(vma).folio_put(page_folio(vmf.page));
        return VM_FAULT_HWPOISON;
    }
    *out = vmf.page;
    return 0;
}

// finish_fault(): install a page-cache (or device) page the ->fault found;
// consumes the reference ->fault returned.
vm_fault_t finish_file_fault(FaultCtx& f, entry_t* slot, Page* page, bool write) {
    Vma& vma = f.vma;
    Folio* folio = page_folio(page);
    sync::SpinGuard g(f.mm.page_table_lock);
    // Upstream maps the folio while holding its lock, so truncation cannot
    // slip in between. The model rechecks, under the page-table lock, that the
    // folio is still in the file: truncation clears folio->mapping before its
    // second unmap_mapping_range(), which takes this lock.
    // A driver's page (->fault of a device file: dma-buf's CMA heap before
    // v6.9) never was in a page cache, so it cannot have been truncated.
    bool truncated = vma.file && vma.file->inode->fs != FsKind::Device && folio->mapping() != &vma.file->inode->mapping;
    if (!none(sync::load(*slot)) || truncated) {
        mem_of(vma).folio_put(folio);
        return 0;
    }
    folio_add_file_rmap(folio, page, 1, vma, RmapLevel::Pte);
    account_rss(vma, folio, 1);
    entry_t e = mk(mem_of(vma).page_to_pfn(page), vma.page_prot() | YOUNG);
    if (write) e = maybe_mkwrite(vma, mkdirty(e));
    sync::store(*slot, e);
    return 0;
}

vm_fault_t do_read_fault(FaultCtx& f, entry_t* slot) {
    // Map what is already cached around the address first (do_fault_around(),
    // src/mm/fault_around.cpp); when that mapped the faulting page too,
    // ->fault is never called.
    if (should_fault_around(f.vma)) {
        VmFault vmf{&f.vma, f.addr, f.addr, f.flags, f.vma.pgoff_of(f.addr), 0, nullptr};
        if (vm_fault_t r = do_fault_around(vmf)) return r;
    }
    Page* page = nullptr;
    vm_fault_t r = do_vma_fault(f, &page);
    if (r || !page) return r;
    return finish_file_fault(f, slot, page, false);
}

vm_fault_t do_cow_fault(FaultCtx& f, entry_t* slot) {
    Vma& vma = f.vma;
    PhysMem& mem = mem_of(vma);
    if (!anon_vma_prepare(vma)) return VM_FAULT_OOM;
    auto nf = alloc_user_folio(vma, 0, GFP_HIGHUSER_MOVABLE);
    if (!nf) return VM_FAULT_OOM;
    Page* page = nullptr;
    vm_fault_t r = do_vma_fault(f, &page);
    if (r || !page) {
        mem.folio_put(*nf);
        return r;
    }
    Folio* newf = *nf;
    mem.copy_page(newf->head(), page);
    mem.folio_put(page_folio(page));
    sync::SpinGuard g(f.mm.page_table_lock);
    if (!none(sync::load(*slot))) {
        mem.folio_put(newf);
        return 0;
    }
    folio_add_new_anon_rmap(newf, vma, f.addr, RmapLevel::Pte, true);
    account_rss(vma, newf, 1);
    entry_t e = mk(mem.page_to_pfn(newf->head()), vma.page_prot() | YOUNG);
    sync::store(*slot, maybe_mkwrite(vma, mkdirty(e)));
    kernel_of(vma).vmstat.add(Vmstat::cow_copies);
    return 0;
}

vm_fault_t do_shared_fault(FaultCtx& f, entry_t* slot) {
    Vma& vma = f.vma;
    Page* page = nullptr;
    vm_fault_t r = do_vma_fault(f, &page);
    if (r || !page) return r;
    if (vma.ops->has_page_mkwrite()) {
        VmFault vmf{&vma, f.addr, f.addr, f.flags | FAULT_FLAG_MKWRITE, vma.pgoff_of(f.addr), 0, page};
        vm_fault_t m = vma.ops->page_mkwrite(vmf);
        if (m & (VM_FAULT_ERROR | VM_FAULT_NOPAGE)) {
            mem_of(vma).folio_put(page_folio(page));
            return m;
        }
    }
    Folio* folio = page_folio(page);
    folio->ref_add(1);  // the fault's reference goes to the PTE; keep one to dirty it
    vm_fault_t fr = finish_file_fault(f, slot, page, true);
    folio_mark_dirty(folio);
    mem_of(vma).folio_put(folio);
    return fr;
}

vm_fault_t do_fault(FaultCtx& f, entry_t* slot) {
    if (!f.vma.ops) return VM_FAULT_SIGBUS;
    if (!f.write()) return do_read_fault(f, slot);
    if (!(f.vma.flags & VM_SHARED)) return do_cow_fault(f, slot);
    return do_shared_fault(f, slot);
}

vm_fault_t handle_pte_fault(FaultCtx& f) {
    // `slot` is used across page_table_lock drops: keep PT_RECLAIM from
    // freeing its table meanwhile (upstream rechecks the PMD instead).
    sync::ReadGuard table_pinned(f.mm.pte_table_sem);
    entry_t* slot;
    {
        sync::SpinGuard g(f.mm.page_table_lock);
        slot = f.mm.pgtable.pte_slot(f.addr, /*alloc=*/true);
        if (!slot) {
            // Either a PMD leaf appeared meanwhile (retry) or no memory for a table.
            entry_t* pmd = f.mm.pgtable.pmd_slot(f.addr, false);
            return (pmd && !none(sync::load(*pmd))) ? 0 : VM_FAULT_OOM;
        }
    }
    entry_t e = sync::load(*slot);
    if (none(e)) {
        if (f.vma.is_anonymous()) return do_anonymous_page(f, slot);
        return do_fault(f, slot);
    }
    if (!present(e)) {
        if (is_migration(e)) {
            migration_entry_wait(slot, e);
            return 0;
        }
        if (swp_type(e) == SwpType::Hwpoison) return VM_FAULT_HWPOISON;
        return VM_FAULT_SIGBUS;
    }
    if (e & PROTNONE) {
        // A NUMA hinting entry in an accessible VMA: restore it (do_numa_page).
        if (f.vma.flags & VM_ACCESS_FLAGS) {
            sync::SpinGuard g(f.mm.page_table_lock);
            if (sync::load(*slot) == e) sync::store(*slot, e & ~PROTNONE);
            return 0;
        }
        return VM_FAULT_SIGSEGV;
    }
    if (f.flags & (FAULT_FLAG_WRITE | FAULT_FLAG_UNSHARE)) {
        if (!write(e)) return do_wp_page(f, slot, e);
        if (f.write()) e = mkdirty(e);
    }
    sync::SpinGuard g(f.mm.page_table_lock);
    entry_t cur = sync::load(*slot);
    if (present(cur) && pte::pfn(cur) == pte::pfn(e)) sync::store(*slot, cur | (e & (DIRTY | SOFT_DIRTY)) | YOUNG);
    return 0;
}

}  // namespace

void migration_entry_wait(const entry_t* slot, entry_t entry) {
    sync::Backoff b(slot);
    while (sync::load(*slot) == entry) b.pause();
}

// ---------------------------------------------------------------------------
// handle_mm_fault
// ---------------------------------------------------------------------------

vm_fault_t handle_huge_fault_levels(Vma& vma, vaddr_t addr, unsigned flags, bool* handled);

vm_fault_t handle_mm_fault(Vma& vma, vaddr_t address, unsigned flags) {
    kernel_of(vma).vmstat.add(Vmstat::pgfault);
    vaddr_t addr = address & PAGE_MASK;
    trace::fault_begin(vma, addr, flags);  // `pinlab explain`
    if (vma.is_hugetlb()) return trace::fault_end(hugetlb_fault(vma, addr, flags), vma, addr);
    bool handled = false;
    vm_fault_t r = handle_huge_fault_levels(vma, addr, flags, &handled);
    if (handled) return trace::fault_end(r, vma, addr);
    FaultCtx f{vma, addr, flags, *vma.mm};
    return trace::fault_end(handle_pte_fault(f), vma, addr);
}

// ---------------------------------------------------------------------------
// Driver entry points
// ---------------------------------------------------------------------------

Status remap_pfn_range(Vma& vma, vaddr_t addr, pfn_t pfn, uint64_t size) {
    if (!page_aligned(addr) || !page_aligned(size) || addr < vma.start || addr + size > vma.end) return Error(EINVAL);
    if (vma.is_cow_mapping()) {
        // vm_normal_page() recognises the raw pfns by their linear layout.
        if (addr != vma.start || addr + size != vma.end) return Error(EINVAL);
        vma.pgoff = pfn;
    }
    vma.flags |= VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP;
    MmStruct& mm = *vma.mm;
    sync::SpinGuard g(mm.page_table_lock);
    for (uint64_t off = 0; off < size; off += PAGE_SIZE) {
        entry_t* slot = mm.pgtable.pte_slot(addr + off, true);
        if (!slot) return Error(ENOMEM);
        if (!none(sync::load(*slot))) return Error(EBUSY);
        sync::store(*slot, mkspecial(vma, mk(pfn + (off >> PAGE_SHIFT), vma.page_prot())));
    }
    return ok_status();
}

namespace {

bool pfn_devmap(const Vma& vma, unsigned pfn_flags) {
    return cfg_of(vma).arch_pte_devmap && (pfn_flags & (PFN_DEV | PFN_MAP)) == (PFN_DEV | PFN_MAP);
}

// Model bookkeeping, no upstream counterpart: a page with a struct page that
// a PFN insert mapped (not as devmap) holds no reference for the entry; GUP
// reports it if it ever takes that page (pin_track_pfnmap_gup). The mark
// goes when the frame is freed (physmem resets the flags).
void mark_pfn_inserted(const Vma& vma, entry_t e) {
    if (devmap(e)) return;
    if (Page* p = mem_of(vma).pfn_to_page(pte::pfn(e))) set_bit(p, PG_pfn_inserted);
}

vm_fault_t insert_pfn_entry(Vma& vma, vaddr_t addr, pfn_t pfn, unsigned pfn_flags) {
    MmStruct& mm = *vma.mm;
    sync::SpinGuard g(mm.page_table_lock);
    entry_t* slot = mm.pgtable.pte_slot(addr, true);
    if (!slot) return VM_FAULT_OOM;
    if (!none(sync::load(*slot))) return VM_FAULT_NOPAGE;  // already mapped
    entry_t e = mk(pfn, vma.page_prot() | YOUNG);
    e = pfn_devmap(vma, pfn_flags) ? (e | DEVMAP) : mkspecial(vma, e);
    mark_pfn_inserted(vma, e);
    sync::store(*slot, e);
    return VM_FAULT_NOPAGE;
}

Status insert_page(Vma& vma, vaddr_t addr, Page* page, bool mkwrite_entry) {
    Folio* folio = page_folio(page);
    if (folio->is_anon()) return Error(EINVAL);
    MmStruct& mm = *vma.mm;
    sync::SpinGuard g(mm.page_table_lock);
    entry_t* slot = mm.pgtable.pte_slot(addr, true);
    if (!slot) return Error(ENOMEM);
    if (!none(sync::load(*slot))) return Error(EBUSY);
    folio->ref_add(1);
    folio_add_file_rmap(folio, page, 1, vma, RmapLevel::Pte);
    account_rss(vma, folio, 1);
    entry_t e = mk(mem_of(vma).page_to_pfn(page), vma.page_prot() | YOUNG);
    if (mkwrite_entry) e = mkdirty(mkwrite(e));
    sync::store(*slot, e);
    return ok_status();
}

}  // namespace

vm_fault_t vmf_insert_pfn(Vma& vma, vaddr_t addr, pfn_t pfn, unsigned pfn_flags) {
    if (!(vma.flags & (VM_PFNMAP | VM_MIXEDMAP)) || !vma.contains(addr)) return VM_FAULT_SIGBUS;
    return insert_pfn_entry(vma, addr & PAGE_MASK, pfn, pfn_flags);
}

vm_fault_t vmf_insert_mixed(Vma& vma, vaddr_t addr, pfn_t pfn, unsigned pfn_flags) {
    if (!(vma.flags & VM_MIXEDMAP) || !vma.contains(addr)) return VM_FAULT_SIGBUS;
    PhysMem& mem = mem_of(vma);
    if (!cfg_of(vma).arch_pte_special && !pfn_devmap(vma, pfn_flags) && mem.pfn_valid(pfn)) {
        // Without pte_special, a page with a struct page must be inserted as
        // a normal, refcounted page (vm_normal_page() will return it).
        Status s = insert_page(vma, addr & PAGE_MASK, mem.pfn_to_page(pfn), false);
        if (!s && s.error() != Error(EBUSY)) return VM_FAULT_OOM;
        return VM_FAULT_NOPAGE;
    }
    return insert_pfn_entry(vma, addr & PAGE_MASK, pfn, pfn_flags);
}

namespace {

vm_fault_t insert_pfn_huge(Vma& vma, vaddr_t addr, pfn_t pfn, unsigned pfn_flags, bool write_entry, PtLevel level) {
    uint64_t size = 1ULL << level_shift(level);
    if (!(vma.flags & (VM_PFNMAP | VM_MIXEDMAP)) && !pfn_devmap(vma, pfn_flags)) return VM_FAULT_SIGBUS;
    if ((addr & (size - 1)) || addr < vma.start || addr + size > vma.end) return VM_FAULT_SIGBUS;
    MmStruct& mm = *vma.mm;
    sync::SpinGuard g(mm.page_table_lock);
    entry_t* slot = mm.pgtable.slot(addr, level, true);
    if (!slot) return VM_FAULT_OOM;
    entry_t cur = sync::load(*slot);
    if (!none(cur)) {
        // Already mapped (or PTEs exist below): a write upgrade of the same pfn only.
        if (is_leaf(cur) && write_entry && pte::pfn(cur) == pfn) sync::store(*slot, mkyoung(mkdirty(mkwrite(cur))));
        return is_table(cur) ? VM_FAULT_FALLBACK : VM_FAULT_NOPAGE;
    }
    entry_t e = mk(pfn, vma.page_prot() | HUGE | YOUNG);
    if (pfn_devmap(vma, pfn_flags)) e |= DEVMAP;
    else if (cfg_of(vma).arch_pmd_special) e |= SPECIAL;
    if (write_entry) e = mkdirty(mkwrite(e));
    mark_pfn_inserted(vma, e);
    sync::store(*slot, e);
    return VM_FAULT_NOPAGE;
}

}  // namespace

vm_fault_t vmf_insert_pfn_pmd(Vma& vma, vaddr_t addr, pfn_t pfn, unsigned pfn_flags, bool write_entry) {
    return insert_pfn_huge(vma, addr & PMD_MASK, pfn, pfn_flags, write_entry, PtLevel::Pmd);
}

vm_fault_t vmf_insert_pfn_pud(Vma& vma, vaddr_t addr, pfn_t pfn, unsigned pfn_flags, bool write_entry) {
    return insert_pfn_huge(vma, addr & PUD_MASK, pfn, pfn_flags, write_entry, PtLevel::Pud);
}

Status vm_insert_page(Vma& vma, vaddr_t addr, Page* page) {
    if (!vma.contains(addr) || !page_aligned(addr)) return Error(EFAULT);
    if (vma.flags & VM_PFNMAP) return Error(EINVAL);
    vma.flags |= VM_MIXEDMAP;
    return insert_page(vma, addr, page, false);
}

// ---------------------------------------------------------------------------
// Zap
// ---------------------------------------------------------------------------

void zap_vma_range_details(Vma& vma, vaddr_t start, vaddr_t end, ZapFilter filter,
                           std::vector<const Folio*>* unmapped_pinned) {
    MmStruct& mm = *vma.mm;
    PhysMem& mem = mem_of(vma);
    sync::SpinGuard g(mm.page_table_lock);
    vaddr_t a = start;
    while (a < end) {
        vaddr_t at = a;
        PageTable::Leaf leaf = mm.pgtable.next_leaf(&at, end);
        if (!leaf.slot) break;
        uint64_t span = 1ULL << level_shift(leaf.level);
        vaddr_t leaf_end = at + span;
        entry_t e = leaf.entry;
        if (leaf.level != PtLevel::Pte && (at < start || leaf_end > end) && !vma.is_hugetlb()) {
            // A huge leaf only partly inside the range.
            Page* hp = present(e) ? vm_normal_page_huge(vma, at, e, leaf.level) : nullptr;
            // zap_pmd_range() splits a partly zapped PMD, the huge zero page
            // included (__split_huge_zero_page_pmd(): 512 PTEs of the small
            // zero page, of which only the zapped ones go).
            Folio* hz = mem.huge_zero_folio();
            const bool huge_zero = hz && present(e) && pte::pfn(e) == mem.page_to_pfn(hz->head());
            if (leaf.level == PtLevel::Pmd && vma.is_anonymous() && (hp || huge_zero || (present(e) && !special(e)))) {
                split_huge_pmd_locked(vma, at, leaf.slot);
                a = std::max(at, start);
                continue;  // revisit as PTEs
            }
            // File/driver huge entries are simply dropped (refaulted later).
        }
        if (!present(e)) {
            // Migration or hwpoison entries: the mapping is gone either way.
            sync::store(*leaf.slot, entry_t{0});
            a = leaf_end;
            continue;
        }
        Page* page = leaf.level == PtLevel::Pte ? vm_normal_page(vma, at, e) : vm_normal_page_huge(vma, at, e, leaf.level);
        if (page) {
            Folio* folio = page_folio(page);
            if (filter == ZapFilter::SkipAnon && folio->is_anon()) {
                a = leaf_end;
                continue;
            }
            sync::store(*leaf.slot, entry_t{0});
            if (!folio->is_anon() && dirty(e)) folio_mark_dirty(folio);
            RmapLevel lvl = leaf.level == PtLevel::Pte ? RmapLevel::Pte
                            : leaf.level == PtLevel::Pmd ? RmapLevel::Pmd
                                                         : RmapLevel::Pud;
            long nr = leaf.level == PtLevel::Pte ? 1 : static_cast<long>(span >> PAGE_SHIFT);
            folio_remove_rmap(folio, page, 1, vma, lvl);
            account_rss(vma, folio, -nr);
            if (unmapped_pinned && !folio->mapped() && folio->maybe_dma_pinned()) unmapped_pinned->push_back(folio);
            put_mapped(vma, folio);
        } else {
            if (filter == ZapFilter::SkipAnon && !vma.is_shared()) {
                // A zero-page or pfn entry in a private mapping is not the file's page.
                Page* any = mem.pfn_to_page(pte::pfn(e));
                if (any && mem.is_any_zero_folio(page_folio(any))) {
                    a = leaf_end;
                    continue;
                }
            }
            sync::store(*leaf.slot, entry_t{0});
        }
        a = leaf_end;
    }
}

// ---------------------------------------------------------------------------
// fork: copy_page_range
// ---------------------------------------------------------------------------

Status copy_hugetlb_page_range(Vma& dst, Vma& src);

namespace {

// copy_present_page(): the child gets its own copy of a page the parent
// may have pinned, so the pin stays coherent with the parent.
Status copy_present_page(Vma& dst, vaddr_t addr, entry_t* dslot, Page* src_page, entry_t src_e) {
    PhysMem& mem = mem_of(dst);
    PL_TRY(anon_vma_prepare(dst));
    auto nf = mem.alloc_folio(0, current_gfp_context(GFP_HIGHUSER_MOVABLE));
    if (!nf) return nf.error();
    Folio* newf = *nf;
    mem.copy_page(newf->head(), src_page);
    folio_add_new_anon_rmap(newf, dst, addr, RmapLevel::Pte, true);
    account_rss(dst, newf, 1);
    entry_t e = mk(mem.page_to_pfn(newf->head()), dst.page_prot() | YOUNG);
    e = maybe_mkwrite(dst, mkdirty(e));
    if ((dst.flags & VM_UFFD_WP) && uffd_wp(src_e)) e |= UFFD_WP;
    sync::store(*dslot, e);
    trace::decision("copy_present_page", addr, src_page, "fork: the parent's page may be pinned (folio_try_dup_anon_rmap -EBUSY): the child gets a copy");
    kernel_of(dst).vmstat.add(Vmstat::fork_pinned_copies);
    return ok_status();
}

}  // namespace

Status copy_page_range(Vma& dst, Vma& src) {
    // vma_needs_copy(): shared file mappings without special entries are
    // refaulted by the child instead.
    if (!(dst.flags & VM_UFFD_WP) && !(src.flags & (VM_PFNMAP | VM_MIXEDMAP)) && !src.anon_vma) return ok_status();
    if (src.is_hugetlb()) return copy_hugetlb_page_range(dst, src);

    MmStruct& smm = *src.mm;
    MmStruct& dmm = *dst.mm;
    PhysMem& mem = mem_of(src);
    Status status;
    {
        ForkCopySection section(dst, src);
        const bool cow = section.cow();
        vaddr_t a = src.start;
        while (a < src.end) {
            vaddr_t at = a;
            PageTable::Leaf leaf = smm.pgtable.next_leaf(&at, src.end);
            if (!leaf.slot) break;
            uint64_t span = 1ULL << level_shift(leaf.level);
            entry_t e = sync::load(*leaf.slot);
            entry_t* dslot = dmm.pgtable.slot(at, leaf.level, true);
            if (!dslot) {
                status = Error(ENOMEM);
                break;
            }
            if (!present(e)) {
                if (is_migration(e) && swp_type(e) != SwpType::MigrationRead && cow) {
                    // An exclusive migration entry becomes a shared (readable) one in both.
                    e = (e & ~(0xfULL << 1)) | (static_cast<entry_t>(SwpType::MigrationRead) << 1);
                    sync::store(*leaf.slot, e);
                }
                sync::store(*dslot, e);
                a = at + span;
                continue;
            }
            Page* page = leaf.level == PtLevel::Pte ? vm_normal_page(src, at, e)
                                                    : vm_normal_page_huge(src, at, e, leaf.level);
            if (page) {
                Folio* folio = page_folio(page);
                RmapLevel lvl = leaf.level == PtLevel::Pte ? RmapLevel::Pte
                                : leaf.level == PtLevel::Pmd ? RmapLevel::Pmd
                                                             : RmapLevel::Pud;
                long nr = leaf.level == PtLevel::Pte ? 1 : static_cast<long>(span >> PAGE_SHIFT);
                if (folio->is_anon()) {
                    folio->ref_add(1);
                    if (!folio_try_dup_anon_rmap(folio, page, 1, src, lvl)) {
                        mem.folio_put(folio);
                        if (leaf.level == PtLevel::Pmd) {
                            // copy_huge_pmd(): split and copy at PTE level.
                            sync::store(*dslot, entry_t{0});
                            split_huge_pmd_locked(src, at, leaf.slot);
                            continue;  // revisit `at` as PTEs
                        }
                        Status s = copy_present_page(dst, at, dslot, page, e);
                        if (!s) {
                            status = s;
                            break;
                        }
                        a = at + span;
                        continue;
                    }
                } else {
                    folio->ref_add(1);
                    folio_dup_file_rmap(folio, page, 1, lvl);
                }
                account_rss(dst, folio, nr);
            }
            if (cow && write(e)) {
                trace::decision("copy_page_range", at, page, "fork: entry shared with the child and write-protected in both (COW)");
                e = wrprotect(e);
                sync::store(*leaf.slot, e);
            }
            if (src.flags & VM_SHARED) e = mkclean(e);
            e = mkold(e);
            if (!(dst.flags & VM_UFFD_WP)) e &= ~UFFD_WP;
            sync::store(*dslot, e);
            a = at + span;
        }
    }
    return status;
}

}  // namespace pl
