// pinlab — reverse mapping: who maps a folio, and the mapcounts that say so
// (upstream mm/rmap.c).
#include <algorithm>

#include "base/sync/rcu.h"
#include "fs/inode.h"
#include "mm/anon_vma.h"
#include "mm/internal.h"

namespace pl {

using namespace pte;

// ---------------------------------------------------------------------------
// anon_vma
// ---------------------------------------------------------------------------

AnonVma* AnonVma::create() { return new AnonVma(); }

bool AnonVma::get_not_zero() {
    int v = refs_.load();
    do {
        if (v == 0) return false;
    } while (!refs_.compare_exchange(v, v + 1));
    return true;
}

void AnonVma::put() {
    // SLAB_TYPESAFE_BY_RCU upstream: an rmap walk may have read this anon_vma
    // from a folio it holds (folio->mapping outlives the VMAs) just as the last
    // VMA lets go; its memory stays valid for that walk's RCU read section.
    if (refs_.fetch_sub(1) == 1) sync::call_rcu([this] { delete this; });
}

void AnonVma::link(Vma* v) {
    sync::WriteGuard g(lock);
    vmas.push_back(v);
}

void AnonVma::unlink(Vma* v) {
    sync::WriteGuard g(lock);
    auto it = std::find(vmas.begin(), vmas.end(), v);
    if (it != vmas.end()) vmas.erase(it);
}

Status anon_vma_prepare(Vma& vma) {
    // Faults of one VMA run concurrently under the mmap_lock held for read,
    // so, as upstream's __anon_vma_prepare(), the first one installs the
    // anon_vma under the page_table_lock and a loser drops the one it made.
    if (sync::load(vma.anon_vma, sync::memory_order_acquire)) return ok_status();
    AnonVma* av = AnonVma::create();
    bool installed = false;
    {
        sync::WriteGuard ag(av->lock);
        sync::SpinGuard g(vma.mm->page_table_lock);
        if (!sync::load(vma.anon_vma, sync::memory_order_relaxed)) {
            av->vmas.push_back(&vma);
            vma.anon_vma_forked = false;  // a fresh anon_vma: a singular chain
            sync::store(vma.anon_vma, av, sync::memory_order_release);  // the VMA's reference
            installed = true;
        }
    }
    if (!installed) av->put();
    return ok_status();
}

void anon_vma_fork(Vma& child, Vma& parent) {
    child.anon_vma = nullptr;
    child.anon_vma_forked = false;
    if (!parent.anon_vma) return;
    parent.anon_vma->get();
    child.anon_vma = parent.anon_vma;
    child.anon_vma_forked = true;
    child.anon_vma->link(&child);
}

void unlink_anon_vmas(Vma& vma) {
    if (!vma.anon_vma) return;
    vma.anon_vma->unlink(&vma);
    vma.anon_vma->put();
    vma.anon_vma = nullptr;
}

// ---------------------------------------------------------------------------
// Mapcounts
// ---------------------------------------------------------------------------

namespace {

void rmap_add(Folio* folio, Page* page, int nr, RmapLevel level) {
    if (level == RmapLevel::Pte) {
        for (int i = 0; i < nr; ++i) {
            int old = sync::fetch_add(page[i].mapcount, 1);
            if (old == 0 && folio->is_large()) folio->nr_pages_mapped_add(1);
        }
        if (folio->is_large()) folio->large_mapcount_add(nr);
    } else {
        folio->entire_mapcount_add(1);
        folio->large_mapcount_add(1);
    }
}

void rmap_sub(Folio* folio, Page* page, int nr, RmapLevel level) {
    if (level == RmapLevel::Pte) {
        for (int i = 0; i < nr; ++i) {
            int old = sync::fetch_sub(page[i].mapcount, 1);
            if (old == 1 && folio->is_large()) folio->nr_pages_mapped_add(-1);
        }
        if (folio->is_large()) folio->large_mapcount_add(-nr);
    } else {
        folio->entire_mapcount_add(-1);
        folio->large_mapcount_add(-1);
    }
}

int level_pages(const Folio* folio, int nr, RmapLevel level) {
    return level == RmapLevel::Pte ? nr : static_cast<int>(folio->nr_pages());
}

}  // namespace

bool folio_needs_cow_for_dma(const Vma& vma, const Folio* folio) {
    // Eras before v5.9 (70e806e4e645 for PTEs, 4eae4efa2c29 for hugetlb):
    // fork shared pinned pages COW like any other (examples/races/
    // io_uring_register_vs_fork.pin).
    if (!kernel_of(vma).cfg.era_at_least(Era::v5_10)) return false;
    if (!vma.mm->test_flag(MMF_HAS_PINNED)) return false;
    return folio->maybe_dma_pinned();
}

void folio_add_new_anon_rmap(Folio* folio, Vma& vma, vaddr_t addr, RmapLevel level, bool exclusive) {
    vaddr_t first = addr & ~(folio->size() - 1);
    folio->set_index(vma.pgoff_of(first));
    folio->set_raw_mapping(reinterpret_cast<uintptr_t>(vma.anon_vma) | PAGE_MAPPING_ANON);
    folio->set(PG_swapbacked);
    int nr = level == RmapLevel::Pte ? static_cast<int>(folio->nr_pages()) : 1;
    rmap_add(folio, folio->head(), nr, level);
    if (exclusive) {
        if (level == RmapLevel::Pte)
            for (unsigned long i = 0; i < folio->nr_pages(); ++i) SetPageAnonExclusive(folio->page(i));
        else
            SetPageAnonExclusive(folio->head());
    }
    kernel_of(vma).vmstat.add(Vmstat::nr_anon_pages, static_cast<int64_t>(folio->nr_pages()));
}

void folio_add_anon_rmap(Folio* folio, Page* page, int nr, Vma& vma, RmapLevel level, bool exclusive) {
    // nr_anon_pages counts anonymous folios that are mapped at all.
    if (!folio->mapped()) kernel_of(vma).vmstat.add(Vmstat::nr_anon_pages, static_cast<int64_t>(folio->nr_pages()));
    rmap_add(folio, page, nr, level);
    if (exclusive) {
        if (level == RmapLevel::Pte)
            for (int i = 0; i < nr; ++i) SetPageAnonExclusive(page + i);
        else
            SetPageAnonExclusive(folio->head());
    }
}

void folio_add_file_rmap(Folio* folio, Page* page, int nr, Vma&, RmapLevel level) {
    rmap_add(folio, page, nr, level);
}

void folio_remove_rmap(Folio* folio, Page* page, int nr, Vma& vma, RmapLevel level) {
    rmap_sub(folio, page, nr, level);
    if (folio->is_anon() && !folio->mapped())
        kernel_of(vma).vmstat.add(Vmstat::nr_anon_pages, -static_cast<int64_t>(folio->nr_pages()));
}

Status folio_try_dup_anon_rmap(Folio* folio, Page* page, int nr, Vma& src, RmapLevel level) {
    // Check before changing anything: one possibly pinned exclusive page
    // forces the whole batch to be copied (__folio_try_dup_anon_rmap()).
    bool maybe_pinned = folio->zone() != ZoneId::Device && folio_needs_cow_for_dma(src, folio);
    Page* first = level == RmapLevel::Pte ? page : folio->head();
    int n = level == RmapLevel::Pte ? nr : 1;
    if (maybe_pinned)
        for (int i = 0; i < n; ++i)
            if (PageAnonExclusive(first + i)) return Error(EBUSY);
    for (int i = 0; i < n; ++i)
        if (PageAnonExclusive(first + i)) ClearPageAnonExclusive(first + i);
    rmap_add(folio, page, nr, level);
    (void)level_pages;
    return ok_status();
}

void folio_dup_file_rmap(Folio* folio, Page* page, int nr, RmapLevel level) { rmap_add(folio, page, nr, level); }

Status folio_try_share_anon_rmap(Folio* folio, Page* page, RmapLevel level) {
    Page* p = level == RmapLevel::Pte ? page : folio->head();
    if (!PageAnonExclusive(p)) return ok_status();
    // Pairs with GUP-fast's barrier after grabbing a pin: either GUP sees the
    // cleared flag and backs off, or we see the pin.
    sync::full_barrier();
    if (folio->maybe_dma_pinned()) return Error(EBUSY);
    ClearPageAnonExclusive(p);
    return ok_status();
}

// ---------------------------------------------------------------------------
// Walks
// ---------------------------------------------------------------------------

AnonVma* folio_get_anon_vma(const Folio* folio) {
    // The caller's folio reference does not keep the anon_vma alive (munmap
    // may have freed the last VMA holding it), so the reference is taken
    // under RCU, and only if it is still live.
    sync::RcuReadGuard rcu;
    AnonVma* av = folio->anon_vma();
    if (av && !av->get_not_zero()) av = nullptr;
    return av;
}

void rmap_walk_anon(Folio* folio, AnonVma& av, FunctionRef<bool(Vma&, vaddr_t)> fn) {
    sync::ReadGuard g(av.lock);
    const pgoff_t idx = folio->index();
    const unsigned long n = folio->nr_pages();
    for (Vma* v : av.vmas) {
        pgoff_t vfirst = v->pgoff, vlast = v->pgoff + v->nr_pages();
        if (idx + n <= vfirst || idx >= vlast) continue;
        if (!fn(*v, v->start + ((idx - v->pgoff) << PAGE_SHIFT))) break;
    }
}

void rmap_walk(Folio* folio, FunctionRef<bool(Vma&, vaddr_t)> fn) {
    if (folio->is_anon()) {
        AnonVma* av = folio_get_anon_vma(folio);
        if (!av) return;
        rmap_walk_anon(folio, *av, fn);
        av->put();
        return;
    }
    AddressSpace* m = folio->mapping();
    if (!m) return;
    sync::ReadGuard g(m->i_mmap_rwsem);
    pgoff_t idx = folio->index();
    for (Vma* v : m->i_mmap) {
        pgoff_t vfirst = v->pgoff, vlast = v->pgoff + v->nr_pages();
        if (idx + folio->nr_pages() <= vfirst || idx >= vlast) continue;
        if (!fn(*v, v->start + ((idx - v->pgoff) << PAGE_SHIFT))) break;
    }
}

void for_each_folio_mapping_locked(Vma& vma, Folio* folio, vaddr_t addr, FolioMappingFn fn) {
    PhysMem& mem = mem_of(vma);
    pfn_t fpfn = mem.page_to_pfn(folio->head());
    unsigned long n = folio->nr_pages();
    unsigned long i = 0;
    // Start at the first page of the folio that lies inside the VMA.
    if (addr < vma.start) i = (vma.start - addr) >> PAGE_SHIFT;
    while (i < n) {
        vaddr_t a = addr + (i << PAGE_SHIFT);
        if (a >= vma.end) break;
        PageTable::Leaf leaf = vma.mm->pgtable.find_leaf(a);
        if (!leaf.slot) {
            ++i;
            continue;
        }
        unsigned long span = 1UL << (level_shift(leaf.level) - PAGE_SHIFT);
        entry_t e = leaf.entry;
        pfn_t epfn = pfn(e);
        bool maps = false;
        if (present(e) && !is_table(e)) {
            maps = epfn >= fpfn && epfn < fpfn + n;
        } else if (is_migration(e)) {
            maps = false;  // migration entries are handled by the migration code itself
        }
        if (maps) {
            RmapLevel lvl = leaf.level == PtLevel::Pte ? RmapLevel::Pte
                            : leaf.level == PtLevel::Pmd ? RmapLevel::Pmd
                                                         : RmapLevel::Pud;
            vaddr_t leaf_addr = a & ~((span << PAGE_SHIFT) - 1);
            fn(leaf.slot, lvl, leaf_addr, mem.pfn_to_page(epfn));
        }
        // Skip the rest of a huge leaf.
        if (leaf.level != PtLevel::Pte) {
            vaddr_t next = (a & ~((span << PAGE_SHIFT) - 1)) + (span << PAGE_SHIFT);
            i = (next - addr) >> PAGE_SHIFT;
        } else {
            ++i;
        }
    }
}

int folio_mkclean(Folio* folio) {
    int cleaned = 0;
    rmap_walk(folio, [&](Vma& vma, vaddr_t addr) {
        if (!(vma.flags & VM_SHARED)) return true;
        sync::SpinGuard g(vma.mm->page_table_lock);
        for_each_folio_mapping_locked(vma, folio, addr, [&](entry_t* slot, RmapLevel, vaddr_t, Page*) {
            entry_t e = sync::load(*slot);
            if (!write(e) && !dirty(e)) return;
            sync::store(*slot, mkclean(wrprotect(e)));
            ++cleaned;
        });
        return true;
    });
    return cleaned;
}

bool try_to_unmap(Folio* folio) {
    rmap_walk(folio, [&](Vma& vma, vaddr_t addr) {
        sync::SpinGuard g(vma.mm->page_table_lock);
        for_each_folio_mapping_locked(vma, folio, addr, [&](entry_t* slot, RmapLevel lvl, vaddr_t, Page* page) {
            entry_t e = sync::exchange(*slot, entry_t{0});
            if (dirty(e) && !folio->is_anon()) folio_mark_dirty(folio);
            int nr = lvl == RmapLevel::Pte ? 1 : static_cast<int>(folio->nr_pages());
            folio_remove_rmap(folio, page, lvl == RmapLevel::Pte ? 1 : nr, vma, lvl);
            account_rss(vma, folio, -nr);
            mem_of(vma).folio_put(folio);
        });
        return true;
    });
    return !folio->mapped();
}

void unmap_mapping_range(AddressSpace& mapping, pgoff_t first, pgoff_t nr, bool even_cows) {
    // Held across the zap so that no VMA in the list can be freed under us.
    sync::ReadGuard g(mapping.i_mmap_rwsem);
    pgoff_t last = nr ? first + nr : ~pgoff_t{0};  // nr == 0: to the end of the file
    for (Vma* v : mapping.i_mmap) {
        pgoff_t vfirst = v->pgoff, vlast = v->pgoff + v->nr_pages();
        pgoff_t a = std::max(first, vfirst), b = std::min(last, vlast);
        if (a >= b) continue;
        zap_vma_range_details(*v, v->addr_of(a), v->addr_of(b), even_cows ? ZapFilter::All : ZapFilter::SkipAnon);
    }
}

}  // namespace pl
