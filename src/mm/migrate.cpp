// pinlab — page migration (upstream mm/migrate.c: migrate_pages() →
// migrate_pages_batch() → migrate_folio_unmap() / migrate_folio_move()).
//
// migrate_pages() takes a list of isolated folios in batches of up to
// NR_MAX_BATCHED_MIGRATION (512) pages: every folio of a batch is unmapped
// (steps 1-4 below) before any is moved (steps 5-7), and folios that failed
// with -EAGAIN are retried for up to NR_MAX_MIGRATE_PAGES_RETRY (10) passes.
// migrate_folio()/migrate_folio_to() are the same two halves for one folio.
//
// Each folio moves under its folio lock, held from unmap to move:
//  1. checks: the zero pages and reserved frames are never moved; ZONE_DEVICE
//     folios only when device-coherent (GUP's FOLL_LONGTERM needs them in
//     normal RAM); folios that are neither anonymous nor in a page cache
//     (a driver's vm_insert_page() pages: not on the LRU, no movable_ops),
//     secretmem and folios under writeback are refused (-EBUSY);
//  2. a PMD-mapped anonymous THP has its PMD mappings split first and is
//     migrated as a PTE-mapped large folio (upstream installs PMD migration
//     entries and restores the PMD mapping; see docs/FIDELITY.md). Hugetlb
//     folios keep their PMD/PUD mappings: their migration entries are huge;
//  3. the target is allocated (-ENOMEM);
//  4. unmap (try_to_migrate()): each mapping becomes a migration entry —
//     MigrationWrite for writable entries, MigrationReadExclusive for
//     read-only PageAnonExclusive ones, MigrationRead otherwise, keeping
//     soft-dirty, uffd-wp, young, dirty (and HUGE) — and gives up its
//     mapcount and reference. An exclusive anonymous page is first shared
//     (folio_try_share_anon_rmap); when that says "maybe pinned" the entry is
//     put back, every entry already converted is restored and the migration
//     fails with -EBUSY;
//  5. the reference check (folio_migrate_mapping()): with no mapping left,
//     the refcount must be exactly the caller's 1 + the page cache's
//     folio_nr_pages; anything more (a GUP GET/PIN, a get_page()) restores
//     the mappings and fails with -EBUSY. A file folio's count is then
//     frozen at 0 while its page-cache slot changes (the page-cache lookup
//     and GUP-fast's folio_try_get() fail and retry); an anonymous folio's
//     is only compared, never frozen, as upstream (GUP-fast can still take
//     a reference after the test: its recheck of the PTE, which now holds a
//     migration entry, makes it let go). Then the
//     contents (RAM frames: the old frame's contents buffer is handed over,
//     PhysMem::move_page_contents(); ZONE_DEVICE sources are copied), flags,
//     mapping and index move over, and the page-cache slot switches to the
//     new folio with the cache's references;
//  6. remove_migration_ptes(): every migration entry for the old pfns
//     becomes a present entry for the corresponding new page, with the
//     mapping's mapcount and reference on the new folio;
//  7. the old folio loses the caller's reference and is freed. A pin still
//     on it (possible only with gup.fast_pte_recheck=off) is reported to the
//     pin tracker as "pinned_page_moved".
//
// Each mm's page_table_lock is held only while that mm's entries of the
// folio change. GUP-fast sees the old present entry (with an unfrozen count:
// a reference it takes then makes step 5 fail), a non-present migration
// entry, or the new entry — never a half-copied page.
//
// RSS: the model's zap of a migration or hwpoison entry does not touch the
// RSS counters (upstream's does), so a migration entry is not counted in RSS
// here: unmapping subtracts and restoring adds back.
#include <vector>

#include "debug/pin_tracker.h"
#include "fs/inode.h"
#include "mm/anon_vma.h"
#include "mm/internal.h"

namespace pl {

using namespace pte;

namespace {

RmapLevel rmap_level_of(PtLevel l) {
    return l == PtLevel::Pte ? RmapLevel::Pte : l == PtLevel::Pmd ? RmapLevel::Pmd : RmapLevel::Pud;
}

long level_pages(PtLevel l) { return 1L << (level_shift(l) - PAGE_SHIFT); }

HugeSize huge_size_of(const Folio* f) { return f->order() == PUD_ORDER ? HugeSize::Size1G : HugeSize::Size2M; }

// Splits every PMD mapping of an anonymous THP (split_huge_pmd_address()
// as try_to_migrate() does with TTU_SPLIT_HUGE_PMD). The folio stays large.
void split_pmd_mappings(PhysMem& mem, Folio* folio) {
    const pfn_t head = mem.page_to_pfn(folio->head());
    rmap_walk(folio, [&](Vma& vma, vaddr_t addr) {
        if (addr & ~PMD_MASK) return true;  // not PMD-aligned here: cannot be PMD-mapped
        if (addr < vma.start || addr + PMD_SIZE > vma.end) return true;
        sync::SpinGuard g(vma.mm->page_table_lock);
        entry_t* pmd = vma.mm->pgtable.pmd_slot(addr, false);
        if (!pmd) return true;
        entry_t e = sync::load(*pmd);
        if (is_leaf(e) && huge(e) && pte::pfn(e) == head) split_huge_pmd_locked(vma, addr, pmd);
        return true;
    });
}

// rmap_walk() of a folio under migration: an anonymous one through the
// anon_vma reference migrate_folio_unmap() took (folio_get_anon_vma()), so
// that the anon_vma outlives the moment the folio has no mapping at all.
template <typename Fn>
void migration_rmap_walk(Folio* folio, AnonVma* av, Fn&& fn) {
    if (!folio->is_anon()) rmap_walk(folio, fn);
    else if (av) rmap_walk_anon(folio, *av, fn);
}

// remove_migration_ptes(): every migration entry pointing into src's pfns
// becomes a present entry for the page at the same offset in dst (dst ==
// src to undo a failed migration). The walk uses src's anon_vma or mapping
// and index, which dst shares.
void remove_migration_ptes(Kernel& k, Folio* src, Folio* dst, AnonVma* av) {
    PhysMem& mem = *k.mem;
    const pfn_t spfn = mem.page_to_pfn(src->head());
    const unsigned long n = src->nr_pages();
    const bool anon = src->is_anon();
    migration_rmap_walk(src, av, [&](Vma& vma, vaddr_t addr) {
        MmStruct& mm = *vma.mm;
        sync::SpinGuard g(mm.page_table_lock);
        unsigned long i = addr < vma.start ? (vma.start - addr) >> PAGE_SHIFT : 0;
        while (i < n) {
            vaddr_t a = addr + (i << PAGE_SHIFT);
            if (a >= vma.end) break;
            PageTable::Leaf leaf = mm.pgtable.find_leaf(a);
            if (!leaf.slot) {
                ++i;
                continue;
            }
            const long span = level_pages(leaf.level);
            const vaddr_t leaf_addr = a & ~((static_cast<uint64_t>(span) << PAGE_SHIFT) - 1);
            entry_t e = leaf.entry;
            if (is_migration(e) && pte::pfn(e) >= spfn && pte::pfn(e) < spfn + n) {
                const unsigned long off = pte::pfn(e) - spfn;
                Page* np = dst->page(off);
                const SwpType t = swp_type(e);
                const bool writable = t == SwpType::MigrationWrite;
                const bool exclusive = anon && t != SwpType::MigrationRead;
                const RmapLevel rl = rmap_level_of(leaf.level);
                // The new entry: the VMA's protection, write only from the
                // migration entry, young, and the bits the entry kept.
                entry_t ne = mk(mem.page_to_pfn(np), (vma.page_prot() & ~WRITE) | PRESENT | USER | YOUNG);
                if (leaf.level != PtLevel::Pte) ne |= HUGE;
                ne |= e & (DIRTY | SOFT_DIRTY);
                if (writable) ne |= WRITE;
                else if (uffd_wp(e)) ne |= UFFD_WP;
                Page* rpage = rl == RmapLevel::Pte ? np : dst->head();
                if (anon) folio_add_anon_rmap(dst, rpage, 1, vma, rl, exclusive);
                else folio_add_file_rmap(dst, rpage, 1, vma, rl);
                dst->ref_add(1);
                account_rss(vma, dst, span);
                sync::store(*leaf.slot, ne, sync::memory_order_release);
            }
            if (leaf.level != PtLevel::Pte) i = ((leaf_addr - addr) >> PAGE_SHIFT) + static_cast<unsigned long>(span);
            else ++i;
        }
        return true;
    });
}

// try_to_migrate(): replaces every mapping of folio by a migration entry.
// -EBUSY (all entries restored) when an exclusive anonymous page may be pinned.
Status unmap_to_migration_entries(Kernel& k, Folio* folio, AnonVma* av) {
    PhysMem& mem = *k.mem;
    const bool anon = folio->is_anon();
    Status result;
    migration_rmap_walk(folio, av, [&](Vma& vma, vaddr_t addr) {
        sync::SpinGuard g(vma.mm->page_table_lock);
        for_each_folio_mapping_locked(vma, folio, addr, [&](entry_t* slot, RmapLevel rl, vaddr_t, Page* page) {
            if (!result) return;
            entry_t e = sync::load(*slot);
            Page* flag_page = rl == RmapLevel::Pte ? page : folio->head();
            const bool exclusive = anon && PageAnonExclusive(flag_page);
            SwpType t = write(e) ? SwpType::MigrationWrite
                        : exclusive ? SwpType::MigrationReadExclusive
                                    : SwpType::MigrationRead;
            // The entry goes non-present first, so GUP-fast cannot start a
            // new pin on it; then the exclusive page is shared, which fails
            // if a pin may already exist (the barrier pairs with GUP-fast's).
            sync::store(*slot, mk_swp(t, pte::pfn(e), e), sync::memory_order_release);
            if (exclusive && !folio_try_share_anon_rmap(folio, page, rl)) {
                sync::store(*slot, e, sync::memory_order_release);
                result = Error(EBUSY);
                return;
            }
            if (!anon && dirty(e)) folio_mark_dirty(folio);
            const long nr = rl == RmapLevel::Pte ? 1 : static_cast<long>(folio->nr_pages());
            folio_remove_rmap(folio, page, 1, vma, rl);
            account_rss(vma, folio, -nr);
            mem.folio_put(folio);  // the mapping's reference; the caller's keeps it alive
        });
        return bool(result);
    });
    if (!result) remove_migration_ptes(k, folio, folio, av);
    return result;
}

// folio_migrate_flags() for the flags the model has; PG_hwpoison never moves.
void copy_flags(Folio* dst, Folio* src) {
    constexpr uint64_t kMoved = (1ULL << PG_dirty) | (1ULL << PG_uptodate) | (1ULL << PG_swapbacked) |
                                (1ULL << PG_referenced) | (1ULL << PG_active) | (1ULL << PG_mlocked);
    // One read of src's flags, one atomic OR into dst's: the same result as
    // testing and setting them one by one.
    const uint64_t moved = sync::load(src->head()->flags, sync::memory_order_acquire) & kMoved;
    if (moved) sync::fetch_or(dst->head()->flags, moved);
    // PageAnonExclusive is per page. Mapped pages had it cleared by the
    // unmap (their migration entries carry it); this copies what is left.
    const unsigned long n = src->nr_pages();
    for (unsigned long i = 0; i < n; ++i)
        if (PageAnonExclusive(src->page(i))) SetPageAnonExclusive(dst->page(i));
}

// folio_mc_copy(). The source is unmapped (a file folio also frozen) and about to be freed, so
// a RAM frame's buffer simply changes hands; a ZONE_DEVICE frame keeps its
// own (its driver may still look at it after page_free).
void copy_contents(PhysMem& mem, Folio* dst, Folio* src) {
    const unsigned long n = src->nr_pages();
    const bool device = src->is_zone_device();
    for (unsigned long i = 0; i < n; ++i) {
        if (!sync::load(src->page(i)->data) && !sync::load(dst->page(i)->data)) continue;  // both zero
        if (device) mem.copy_page(dst->page(i), src->page(i));
        else mem.move_page_contents(dst->page(i), src->page(i));
    }
}

Result<Folio*> default_target(PhysMem& mem, Folio* src, gfp_t gfp) {
    if (src->is_hugetlb()) return mem.hugetlb_alloc(huge_size_of(src), /*reserved=*/false);
    gfp_t g = current_gfp_context(gfp);
    if (src->order()) g |= __GFP_COMP;
    return mem.alloc_folio(src->order(), g);
}

void count(Kernel& k, Vmstat item, const Folio* f) { k.vmstat.add(item, static_cast<int64_t>(f->nr_pages())); }

// Where the target comes from: alloc_migration_target() with a gfp, or the
// caller's function (compaction).
struct TargetSource {
    gfp_t gfp = 0;
    const MigrationTargetFn* fn = nullptr;
    Result<Folio*> alloc(PhysMem& mem, Folio* src) const { return fn ? (*fn)(src) : default_target(mem, src, gfp); }
};

// What migrate_folio_unmap() hands to migrate_folio_move(): the locked
// target and the anon_vma reference (nullptr for file folios).
struct Unmapped {
    Folio* dst = nullptr;
    AnonVma* anon_vma = nullptr;
};

// migrate_folio_unmap(): steps 1-4. On success the folio is locked and has
// no mapping left (migration entries instead), and *out holds the locked
// target. On failure nothing changed (the folio is unlocked, mapped again).
Status migrate_folio_unmap(Kernel& k, Folio* folio, const TargetSource& target, Unmapped* out) {
    PhysMem& mem = *k.mem;
    // --- 1. what can move ---------------------------------------------------------
    if (mem.is_any_zero_folio(folio) || folio->is_reserved()) return Error(EBUSY);
    if (folio->is_zone_device()) {
        DevPagemap* pgmap = mem.page_pgmap(folio->head());
        if (!pgmap || pgmap->type != PgmapType::DeviceCoherent) return Error(EBUSY);
    }
    if (!folio->trylock()) return Error(EAGAIN);
    AnonVma* av = nullptr;
    auto fail = [&](Error e) -> Status {
        if (av) av->put();
        folio->unlock();
        count(k, Vmstat::pgmigrate_fail, folio);
        return e;
    };
    // Checked under the lock: truncation and migration change these only
    // with the folio locked.
    if (!folio->is_anon() && !folio->mapping()) return fail(Error(EBUSY));  // not an LRU folio
    if (folio->test(PG_secretmem) || folio->is_writeback()) return fail(Error(EBUSY));
    for (unsigned long i = 0; i < folio->nr_pages(); ++i)
        if (PageHWPoison(folio->page(i))) return fail(Error(EBUSY));
    // Held until the move is done: once every mapping is a migration entry,
    // nothing else keeps the anon_vma alive for remove_migration_ptes().
    if (folio->is_anon()) av = folio_get_anon_vma(folio);

    // --- 2. PMD-mapped THP → PTE-mapped --------------------------------------------
    if (folio->is_large() && !folio->is_hugetlb() && folio->entire_mapcount() > 0) {
        if (!folio->is_anon()) return fail(Error(EBUSY));
        split_pmd_mappings(mem, folio);
        if (folio->entire_mapcount() > 0) return fail(Error(EAGAIN));  // no memory for a PTE table
    }

    // --- 3. the target ---------------------------------------------------------------
    auto allocated = target.alloc(mem, folio);
    if (!allocated) return fail(Error(ENOMEM));
    Folio* dst = *allocated;
    if (dst->order() != folio->order() || dst->is_hugetlb() != folio->is_hugetlb()) {
        mem.folio_put(dst);
        return fail(Error(EINVAL));
    }
    (void)dst->trylock();  // fresh: nobody else can see it yet

    auto fail_with_target = [&](Error e) -> Status {
        dst->unlock();
        mem.folio_put(dst);
        return fail(e);
    };

    // --- 4. unmap ------------------------------------------------------------------------
    if (Status s = unmap_to_migration_entries(k, folio, av); !s) return fail_with_target(s.error());
    if (folio->mapped()) {
        // A mapping the rmap walk could not reach (or convert).
        remove_migration_ptes(k, folio, folio, av);
        return fail_with_target(Error(EBUSY));
    }
    *out = Unmapped{dst, av};
    return ok_status();
}

// migrate_folio_move(): steps 5-7 for a folio migrate_folio_unmap() left
// unmapped. On success the caller's reference is consumed (the old folio is
// freed); on failure the folio is mapped again and unlocked, the target freed.
Status migrate_folio_move(Kernel& k, Folio* folio, const Unmapped& u) {
    PhysMem& mem = *k.mem;
    Folio* dst = u.dst;
    // --- 5. references, copy, page-cache slot ------------------------------------------
    const unsigned long nr = folio->nr_pages();
    AddressSpace* mapping = folio->is_anon() ? nullptr : folio->mapping();
    bool moved = false;
    if (mapping) {
        sync::SpinGuard g(mapping->i_pages_lock);
        auto it = mapping->i_pages.find(folio->index());
        const bool cached = it != mapping->i_pages.end() && it->second == folio;
        const int expected = 1 + (cached ? static_cast<int>(nr) : 0);
        if (folio->ref_freeze(expected)) {
            moved = true;
            copy_contents(mem, dst, folio);
            copy_flags(dst, folio);
            dst->set_index(folio->index());
            dst->set_raw_mapping(folio->raw_mapping());
            if (cached) {
                dst->ref_add(static_cast<int>(nr));  // the cache's references move over
                it->second = dst;
            }
            folio->ref_unfreeze(expected - (cached ? static_cast<int>(nr) : 0));
        }
    } else if (folio->ref_count() == 1) {
        // Anonymous, no mapping: upstream only compares the count
        // (__folio_migrate_mapping()); the unmap left GUP-fast nothing to
        // start a pin from, and one that read the PTE before the unmap
        // rechecks it after its grab (gup_fast_pte_range()).
        moved = true;
        copy_contents(mem, dst, folio);
        copy_flags(dst, folio);
        dst->set_index(folio->index());
        dst->set_raw_mapping(folio->raw_mapping());
    }
    if (!moved) {
        // Somebody else holds a reference: maybe a pin. Undo.
        remove_migration_ptes(k, folio, folio, u.anon_vma);
        if (u.anon_vma) u.anon_vma->put();
        dst->unlock();
        mem.folio_put(dst);
        folio->unlock();
        count(k, Vmstat::pgmigrate_fail, folio);
        return Error(EBUSY);
    }

    // --- 6. map the new folio where the old one was ----------------------------------------
    remove_migration_ptes(k, folio, dst, u.anon_vma);
    if (u.anon_vma) u.anon_vma->put();

    // --- 7. the old folio goes ----------------------------------------------------------------
    // Its dirty state (and the accounting that goes with it) now belongs to
    // dst; it belongs to no file and no anon_vma any more.
    if (folio->is_dirty()) folio->clear(PG_dirty);
    for (unsigned long i = 0; i < nr; ++i)
        if (PageAnonExclusive(folio->page(i))) ClearPageAnonExclusive(folio->page(i));
    folio->set_raw_mapping(0);
    folio->unlock();
    // A pin taken after the reference check (GUP-fast without its PTE
    // recheck) keeps the old frame: the pin holder and the process part.
    if (folio->maybe_dma_pinned()) pin_track_moved(k, folio, folio->head(), "migrate_folio_move", "migrated");
    mem.folio_put(folio);  // the caller's reference, consumed: the folio is freed
    dst->unlock();
    mem.folio_put(dst);  // the allocation's reference; the mappings and cache hold theirs
    count(k, Vmstat::pgmigrate_success, dst);
    return ok_status();
}

Status migrate_one(Kernel& k, Folio* folio, const TargetSource& target) {
    Unmapped u;
    Status s = migrate_folio_unmap(k, folio, target, &u);
    if (s) s = migrate_folio_move(k, folio, u);
    return s;
}

constexpr unsigned long kMaxBatchedPages = 512;  // NR_MAX_BATCHED_MIGRATION (HPAGE_PMD_NR)
constexpr int kMaxPasses = 10;                   // NR_MAX_MIGRATE_PAGES_RETRY

}  // namespace

Status migrate_folio(Kernel& k, Folio* folio, gfp_t gfp, MigrateReason) {
    return migrate_one(k, folio, TargetSource{gfp, nullptr});
}

Status migrate_folio_to(Kernel& k, Folio* folio, const MigrationTargetFn& alloc_target, MigrateReason) {
    return migrate_one(k, folio, TargetSource{0, &alloc_target});
}

unsigned long migrate_pages(Kernel& k, std::vector<Folio*>& folios, gfp_t gfp, MigrateReason) {
    const TargetSource target{gfp, nullptr};
    std::vector<Folio*> failed;
    std::vector<Folio*> pending, retry;
    std::vector<std::pair<Folio*, Unmapped>> unmapped;
    bool out_of_memory = false;
    size_t next = 0;
    while (next < folios.size()) {
        // migrate_pages(): the next batch, at least one folio.
        pending.clear();
        unsigned long pages = 0;
        while (next < folios.size() && (pending.empty() || pages + folios[next]->nr_pages() <= kMaxBatchedPages)) {
            pages += folios[next]->nr_pages();
            pending.push_back(folios[next++]);
        }
        if (out_of_memory) {  // no point trying the rest
            failed.insert(failed.end(), pending.begin(), pending.end());
            continue;
        }
        // migrate_pages_batch(): unmap them all, then move them all; a
        // transient failure is tried again in the next pass.
        for (int pass = 0; pass < kMaxPasses && !pending.empty(); ++pass) {
            unmapped.clear();
            retry.clear();
            for (size_t i = 0; i < pending.size(); ++i) {
                Folio* f = pending[i];
                if (out_of_memory) {
                    failed.push_back(f);
                    continue;
                }
                Unmapped u;
                Status s = migrate_folio_unmap(k, f, target, &u);
                if (s) unmapped.emplace_back(f, u);
                else if (s.error().errnum == EAGAIN) retry.push_back(f);
                else {
                    // -ENOMEM: move what is unmapped, leave the rest (upstream
                    // stops the whole migrate_pages() when memory is low).
                    out_of_memory = s.error().errnum == ENOMEM;
                    failed.push_back(f);
                }
            }
            for (const auto& [src, u] : unmapped) {
                Status s = migrate_folio_move(k, src, u);
                if (!s) (s.error().errnum == EAGAIN ? retry : failed).push_back(src);
            }
            pending.swap(retry);
        }
        failed.insert(failed.end(), pending.begin(), pending.end());  // still -EAGAIN after every pass
    }
    folios.swap(failed);
    return folios.size();
}

}  // namespace pl
