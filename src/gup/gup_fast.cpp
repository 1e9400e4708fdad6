// pinlab — GUP-fast: the lockless walk (upstream gup_fast() in mm/gup.c).
//
// No mmap_lock, no page-table lock, no allocation: the walk runs inside an
// RCU read-side section (the model's local_irq_save(), which blocks page-table
// freeing), reads every entry once with sync::load, grabs the folio
// speculatively (a frozen count — split, migration — makes the grab fail),
// then re-reads the entry and backs out if it changed. For FOLL_PIN it also
// requires write_protect_seq unchanged across the walk, so a concurrent fork
// that is sharing anonymous pages cannot have a page pinned under it.
//
// Three of these protections can be switched off for the race corpus
// (examples/races/): gup.fast_fork_seqcount, gup.fast_pte_recheck and, on
// the freeing side, mm.pt_free_rcu (a walk that then reads a freed, poisoned
// table WARNs and treats the entry as not present).
#include "gup/gup_fast.h"

#include <cstdio>
#include <string>

#include "base/sync/rcu.h"
#include "debug/pin_tracker.h"
#include "debug/trace.h"
#include "fs/inode.h"
#include "gup/foll_flags.h"
#include "gup/longterm_pinnable.h"
#include "gup/pin_accounting.h"
#include "mm/internal.h"

namespace pl {

using namespace pte;

namespace {

struct Walk {
    Kernel& k;
    PhysMem& mem;
    unsigned flags;
    Page** pages;
    unsigned long nr = 0;   // pages recorded so far
    bool write() const { return flags & FOLL_WRITE; }
};

// gup_fast_folio_allowed(): FOLL_PIN|FOLL_LONGTERM|FOLL_WRITE must not reach
// file folios that need dirty tracking (only shmem is fine); small folios are
// checked for secretmem. The mapping is read once; the RCU section keeps it
// alive.
bool folio_allowed(const Folio* folio, unsigned flags, bool era_v6_5) {
    if (folio->is_hugetlb()) return true;
    // The file-backed rule came with writable_file_mapping_allowed() in v6.5.
    bool reject_file_backed = (flags & (FOLL_PIN | FOLL_LONGTERM | FOLL_WRITE)) == (FOLL_PIN | FOLL_LONGTERM | FOLL_WRITE) &&
                              era_v6_5;
    bool check_secretmem = !folio->is_large();
    if (!reject_file_backed && !check_secretmem) return true;
    uintptr_t raw = folio->raw_mapping();
    if (!raw) return false;  // truncated, or a driver page: let the slow path decide
    if (raw & PAGE_MAPPING_ANON) return true;
    const auto* mapping = reinterpret_cast<const AddressSpace*>(raw);
    const FsTraits& t = fs_traits(mapping->host.fs);
    if (check_secretmem && t.secretmem) return false;
    return !reject_file_backed || t.shmem;
}

// gup_must_unshare() without a VMA: a R/O pin of a page that is not
// exclusively ours must go through the slow path's unshare fault.
bool must_unshare_fast(const Folio* folio, const Page* page, unsigned flags) {
    if (!(flags & FOLL_PIN) || (flags & FOLL_WRITE)) return false;
    if (!folio->is_anon()) return flags & FOLL_LONGTERM;  // no VMA to tell a COW mapping: fall back
    sync::full_barrier();  // pairs with folio_try_share_anon_rmap()
    return !PageAnonExclusive(page);
}

// try_grab_folio_fast(): references on a folio whose page-table entry we
// have only read. try_get_folio() takes `refs` speculatively (it fails on a
// frozen count, and we re-check that the page did not split away); a GET
// keeps them, a PIN turns them into pins (_pincount, or the rest of
// GUP_PIN_COUNTING_BIAS per pin on a small folio).
Folio* grab_fast(Walk& w, Page* page, int refs) {
    Folio* folio = page_folio(page);
    trace::RefScope traced("try_grab_folio", folio);  // `pinlab explain`: counts before/after
    // A short-term PIN of what looks like a small folio other than the zero
    // page takes the whole GUP_PIN_COUNTING_BIAS in one step (upstream: two
    // adds in a row; nobody can tell them apart). The checks below run on
    // what was grabbed: a folio that turns out otherwise gives it all back.
    const bool one_step = (w.flags & (FOLL_PIN | FOLL_LONGTERM)) == FOLL_PIN && !folio->is_large() &&
                          !w.mem.is_zero_folio(folio);
    const int taken = one_step ? refs * GUP_PIN_COUNTING_BIAS : refs;
    if (!folio->ref_try_add(taken)) return nullptr;
    if (page_folio(page) != folio || (one_step && folio->is_large())) {  // split or reused under us
        w.mem.folio_put_refs(folio, taken);
        return nullptr;
    }
    if (!(w.flags & FOLL_PIN)) {
        pin_track_grab(w.k, folio, refs, w.flags);
        return folio;
    }
    if (!one_step) {
        if ((w.flags & FOLL_LONGTERM) && !folio_is_longterm_pinnable(w.mem, folio)) {
            w.mem.folio_put_refs(folio, refs);
            trace::fast_stop(0, 0, w.flags, "FOLL_LONGTERM and the folio is not longterm-pinnable (movable, CMA, fsdax): the slow path migrates it");
            return nullptr;
        }
        if (w.mem.is_zero_folio(folio)) w.mem.folio_put_refs(folio, refs);  // never pinned (as try_grab_folio())
        else if (folio->is_large()) folio->pincount_add(refs);
        else folio->ref_add(refs * (GUP_PIN_COUNTING_BIAS - 1));
    }
    if (!w.mem.is_zero_folio(folio)) w.k.vmstat.add(Vmstat::nr_foll_pin_acquired, refs);
    pin_track_grab(w.k, folio, refs, w.flags);
    return folio;
}

void ungrab(Walk& w, Folio* folio, int refs) { gup_put_folio(w.k, folio, refs, w.flags); }

bool record_leaf_pages(Walk& w, pfn_t pfn, vaddr_t addr, vaddr_t end, uint64_t span, entry_t* slot,
                       entry_t orig) {
    // The PMD/PUD leaf rules are the PTE rules applied to one entry.
    if (!present(orig) || (orig & PROTNONE)) return trace::fast_stop(addr, orig, w.flags, "huge leaf not present / PROT_NONE");
    if (!access_permitted(orig, w.write())) return trace::fast_stop(addr, orig, w.flags, "write to a R/O huge leaf");
    if (special(orig)) return trace::fast_stop(addr, orig, w.flags, "special huge leaf");
    if (devmap(orig)) {
        // gup_fast_devmap_{pmd,pud}_leaf(): no pgmap behind the pfn
        // (get_dev_pagemap() is NULL) means back off, as for devmap PTEs.
        if (w.flags & FOLL_LONGTERM) return trace::fast_stop(addr, orig, w.flags, "devmap huge leaf with FOLL_LONGTERM");
        Page* p = w.mem.pfn_to_page(pfn);
        if (!p || !w.mem.page_pgmap(p)) return trace::fast_stop(addr, orig, w.flags, "devmap huge leaf without a pgmap");
    }
    Page* head = w.mem.pfn_to_page(pfn);
    if (!head) {
        // Neither special nor devmap, yet no struct page: the entry seed 003
        // worried about. Upstream would dereference garbage; stop and count it.
        w.k.vmstat.add(Vmstat::gup_fast_no_page);
        return trace::fast_stop(addr, orig, w.flags, "no struct page behind the huge leaf");
    }
    vaddr_t leaf_end = (addr & ~(span - 1)) + span;
    vaddr_t stop = std::min(end, leaf_end);
    int refs = static_cast<int>((stop - addr) >> PAGE_SHIFT);
    Page* first = head + ((addr & (span - 1)) >> PAGE_SHIFT);
    Folio* folio = grab_fast(w, first, refs);
    if (!folio) return trace::fast_stop(addr, orig, w.flags, "could not grab the folio");
    if (sync::load(*slot) != orig) {
        ungrab(w, folio, refs);
        return trace::fast_stop(addr, orig, w.flags, "the entry changed under the walk");
    }
    if (!write(orig) && must_unshare_fast(folio, folio->head(), w.flags)) {
        ungrab(w, folio, refs);
        return trace::fast_stop(addr, orig, w.flags, "R/O pin needs unshare (page not exclusive)");
    }
    if (!folio_allowed(folio, w.flags, w.k.cfg.era_at_least(Era::v6_5))) {
        ungrab(w, folio, refs);
        return trace::fast_stop(addr, orig, w.flags, "gup_fast_folio_allowed: dirty-tracked file folio or secretmem");
    }
    for (int i = 0; i < refs; ++i) w.pages[w.nr++] = first + i;
    if (!folio->test(PG_referenced)) folio->set(PG_referenced);
    if (test_bit(head, PG_pfn_inserted))
        pin_track_pfnmap_gup(w.k, folio, first, "gup_fast_pmd_leaf",
                             "a PMD/PUD leaf inserted by vmf_insert_pfn_pmd/pud() that is neither special nor devmap");
    return true;
}

// An entry read from a table free_pgtables() freed under the walk
// (mm.pt_free_rcu=off: no grace period held the free back). Upstream this
// is a read of freed memory; the model's quarantine makes it detectable.
bool freed_table(Walk& w, vaddr_t addr, entry_t e, PtLevel level) {
    if (e != PageTable::kPoison) return false;
    static constexpr const char* kLevel[] = {"PTE", "PMD", "PUD", "PGD"};
    char where[32];
    std::snprintf(where, sizeof where, "%#lx", static_cast<unsigned long>(addr));
    w.k.warn("gup_fast", std::string("use-after-free of a page table: the lockless walk read a ") +
                             kLevel[static_cast<int>(level)] + " entry for " + where +
                             " from a table free_pgtables() already freed (mm.pt_free_rcu=off: no grace "
                             "period held the free back); treated as not present");
    return true;
}

// Walks [addr, end) and records what it can; returns false at the first entry
// it cannot handle.
bool walk_range(Walk& w, const MmStruct& mm, vaddr_t addr, vaddr_t end) {
    const Config& cfg = w.k.cfg;
    while (addr < end) {
        PtTable* t = mm.pgtable.pgd();
        entry_t e = sync::load(t->e[pt_index(addr, PtLevel::Pgd)]);
        if (!is_table(e)) return false;
        t = PageTable::table_of(e);
        entry_t* pud_slot = &t->e[pt_index(addr, PtLevel::Pud)];
        e = sync::load(*pud_slot);
        if (freed_table(w, addr, e, PtLevel::Pud)) return false;
        if (is_leaf(e) && huge(e)) {
            if (!record_leaf_pages(w, pfn(e), addr, end, PUD_SIZE, pud_slot, e)) return false;
            addr = std::min(end, (addr & PUD_MASK) + PUD_SIZE);
            continue;
        }
        if (!is_table(e)) return false;
        t = PageTable::table_of(e);
        entry_t* pmd_slot = &t->e[pt_index(addr, PtLevel::Pmd)];
        entry_t pmd = sync::load(*pmd_slot);
        if (freed_table(w, addr, pmd, PtLevel::Pmd)) return false;
        if (is_leaf(pmd) && huge(pmd)) {
            if (!record_leaf_pages(w, pfn(pmd), addr, end, PMD_SIZE, pmd_slot, pmd)) return false;
            addr = std::min(end, (addr & PMD_MASK) + PMD_SIZE);
            continue;
        }
        if (!is_table(pmd)) return false;
        // Without pte_special the walker cannot tell a special PTE from a
        // normal one: GUP-fast gives up at the PTE level (gup_fast_pte_range()).
        if (!cfg.arch_pte_special) return trace::fast_stop(addr, pmd, w.flags, "no ARCH_HAS_PTE_SPECIAL: PTE level left to the slow path");
        PtTable* pt = PageTable::table_of(pmd);
        vaddr_t pmd_end = std::min(end, (addr & PMD_MASK) + PMD_SIZE);
        for (; addr < pmd_end; addr += PAGE_SIZE) {
            entry_t* slot = &pt->e[pt_index(addr, PtLevel::Pte)];
            entry_t pte = sync::load(*slot);
            if (freed_table(w, addr, pte, PtLevel::Pte)) return false;
            if (!present(pte)) return trace::fast_stop(addr, pte, w.flags, "no page (PTE not present)");
            if (pte & PROTNONE) return trace::fast_stop(addr, pte, w.flags, "PROT_NONE / NUMA-hinting PTE");
            if (!access_permitted(pte, w.write())) return trace::fast_stop(addr, pte, w.flags, "write to a R/O PTE");
            if (devmap(pte)) {
                if (w.flags & FOLL_LONGTERM) return trace::fast_stop(addr, pte, w.flags, "devmap PTE with FOLL_LONGTERM");
                Page* p = w.mem.pfn_to_page(pfn(pte));
                if (!p || !w.mem.page_pgmap(p)) return trace::fast_stop(addr, pte, w.flags, "devmap PTE without a pgmap");
            } else if (special(pte)) {
                return trace::fast_stop(addr, pte, w.flags, "pte_special (no struct page to use)");
            }
            Page* page = w.mem.pfn_to_page(pfn(pte));
            if (!page) {
                w.k.vmstat.add(Vmstat::gup_fast_no_page);
                return trace::fast_stop(addr, pte, w.flags, "no struct page behind the PTE");
            }
            Folio* folio = grab_fast(w, page, 1);
            if (!folio) return trace::fast_stop(addr, pte, w.flags, "could not grab the folio");
            // The recheck (gup_fast_pte_range()): an entry that changed
            // since we read it — fork write-protected it, migration put a
            // migration entry there — may no longer map the folio we hold.
            // Without the PTE half (gup.fast_pte_recheck=off) a pin can
            // outlive the mapping: migration's reference test has passed
            // before our grab, and the pin stays on the old folio.
            if (sync::load(*pmd_slot) != pmd || (cfg.gup_fast_pte_recheck && sync::load(*slot) != pte)) {
                ungrab(w, folio, 1);
                return trace::fast_stop(addr, pte, w.flags, "the entry changed under the walk");
            }
            if (!folio_allowed(folio, w.flags, w.k.cfg.era_at_least(Era::v6_5))) {
                ungrab(w, folio, 1);
                return trace::fast_stop(addr, pte, w.flags, "gup_fast_folio_allowed: dirty-tracked file folio or secretmem");
            }
            if (!write(pte) && must_unshare_fast(folio, page, w.flags)) {
                ungrab(w, folio, 1);
                return trace::fast_stop(addr, pte, w.flags, "R/O pin needs unshare (page not exclusive)");
            }
            if (!folio->test(PG_referenced)) folio->set(PG_referenced);  // folio_set_referenced()
            w.pages[w.nr++] = page;
            if (test_bit(page, PG_pfn_inserted))
                pin_track_pfnmap_gup(w.k, folio, page, "gup_fast_pte_range", "a PFN PTE without pte_special");
        }
    }
    return true;
}

}  // namespace

unsigned long gup_fast(MmStruct& mm, vaddr_t start, unsigned long nr_pages, unsigned gup_flags, Page** pages) {
    Kernel& k = mm.kernel;
    if (!k.cfg.arch_gup_fast) return trace::fast(start, nr_pages, 0);  // !CONFIG_HAVE_GUP_FAST
    vaddr_t end = start + (nr_pages << PAGE_SHIFT);
    if (end <= start || end > TASK_SIZE + PAGE_SIZE) return 0;  // gup_fast_permitted()
    uint32_t seq = 0;
    // gup.fast_fork_seqcount=off: the kernels before 57efa1fe5957 (v5.11),
    // where nothing stopped a pin taken between fork's
    // folio_try_dup_anon_rmap() and its write-protect of the PTE.
    const bool fork_seq = (gup_flags & FOLL_PIN) && k.cfg.gup_fast_fork_seqcount;
    if (fork_seq && !mm.write_protect_seq.try_begin(seq)) return trace::fast(start, nr_pages, 0);  // fork is copying
    Walk w{k, *k.mem, gup_flags, pages};
    {
        sync::RcuReadGuard irqs_off;
        (void)walk_range(w, mm, start, end);
    }
    if (fork_seq && mm.write_protect_seq.retry(seq)) {
        // fork() raced with us: undo everything (gup_fast_unpin_user_pages()).
        for (unsigned long i = 0; i < w.nr; ++i) gup_put_folio(k, page_folio(pages[i]), 1, gup_flags);
        return trace::fast(start, nr_pages, 0);
    }
    k.vmstat.add(Vmstat::gup_fast_pages, static_cast<int64_t>(w.nr));
    return trace::fast(start, nr_pages, w.nr);
}

}  // namespace pl
