// pinlab — hardware memory errors (upstream mm/memory-failure.c, the
// memory_failure(pfn, 0) path without signals to the processes).
//
//  * A pfn without a struct page: -ENXIO (upstream: not an online page).
//  * Already poisoned: -EHWPOISON, as upstream since v5.19 (older kernels
//    returned 0).
//  * The zero pages and other reserved frames: marked, -EBUSY (a kernel
//    page: MF_IGNORED).
//  * Free frames (buddy, the hugetlb free pool, free ZONE_DEVICE pages) and
//    frames frozen by a migration: -EBUSY and NOT marked. Upstream takes a
//    free page off the buddy lists for good (take_page_off_buddy()); physmem
//    has no such call, and a mark on a free frame would be lost when it is
//    handed out again.
//  * Pages that are neither anonymous nor in a page cache (drivers' and the
//    kernel's own): marked, -EBUSY (unhandlable).
//  * A large anonymous folio (THP) is split first; if it cannot be
//    (it is pinned), the page is marked and -EBUSY returned, the folio left
//    mapped. Hugetlb folios are poisoned whole: PG_hwpoison on the head too,
//    every PMD/PUD mapping becomes a huge hwpoison entry.
//  * Mappings (hwpoison_user_mappings()): anonymous, shmem, hugetlb, dirty
//    page-cache and fsdax pages get hwpoison entries (pte::mk_swp(Hwpoison))
//    in place of their mappings — an access then SIGBUSes; a clean page of a
//    disk file system is only unmapped (a refault reads the data again).
//    Each mapping's mapcount, reference and RSS go.
//  * The page cache (me_pagecache_clean/dirty()): disk file systems drop the
//    folio from the cache (dirty data is lost); shmem and hugetlbfs keep it,
//    so that later faults see PG_hwpoison and fail.
//  * Then references beyond ours and the cache's (a pin): -EBUSY
//    (MF_FAILED). Otherwise the frame is recovered: memory_failure() keeps
//    its reference for good (page_handle_poison() does the same upstream),
//    noted in the reference ledger, so the frame never returns to the
//    allocator; 0.
// A poisoned frame that is freed later (e.g. after a failed recovery) stays
// out of the buddy allocator (physmem withholds PG_hwpoison frames); the
// pfns poisoned here are remembered so the invariant checker can account
// for such frames (hwpoisoned_pfns()).
#include <mutex>
#include <set>
#include <unordered_map>

#include "fs/inode.h"
#include "mm/internal.h"

namespace pl {

using namespace pte;

namespace {

// Poisoned pfns per PhysMem (not a model lock). An entry left by a machine
// that is gone and whose PhysMem address got reused only matters for a frame
// that also carries PG_hwpoison, which the checker verifies.
std::mutex g_poison_mu;
std::unordered_map<const PhysMem*, std::set<pfn_t>> g_poisoned;

void remember(const Kernel& k, pfn_t pfn) {
    std::lock_guard g(g_poison_mu);
    g_poisoned[k.mem.get()].insert(pfn);
}

// hwpoison_user_mappings() / try_to_unmap_one(TTU_HWPOISON): every mapping
// of `page` (of the whole folio for a huge mapping) goes, replaced by a
// hwpoison entry when `poison_entries`. Caller holds a reference and the
// folio lock.
void unmap_poisoned(Kernel& k, Folio* folio, Page* page, bool poison_entries) {
    PhysMem& mem = *k.mem;
    const pfn_t ppfn = mem.page_to_pfn(page);
    rmap_walk(folio, [&](Vma& vma, vaddr_t addr) {
        sync::SpinGuard g(vma.mm->page_table_lock);
        for_each_folio_mapping_locked(vma, folio, addr, [&](entry_t* slot, RmapLevel rl, vaddr_t, Page* mapped) {
            if (rl == RmapLevel::Pte && mapped != page) return;  // another page of a large folio
            entry_t e = sync::load(*slot);
            entry_t ne = poison_entries ? mk_swp(SwpType::Hwpoison, ppfn, e & (SOFT_DIRTY | UFFD_WP | HUGE)) : 0;
            sync::store(*slot, ne, sync::memory_order_release);
            if (!folio->is_anon() && dirty(e)) folio_mark_dirty(folio);
            const long nr = rl == RmapLevel::Pte ? 1 : static_cast<long>(folio->nr_pages());
            folio_remove_rmap(folio, mapped, 1, vma, rl);
            account_rss(vma, folio, -nr);
            mem.folio_put(folio);  // the mapping's reference; ours keeps the folio
        });
        return true;
    });
}

}  // namespace

std::vector<pfn_t> hwpoisoned_pfns(const Kernel& k) {
    std::lock_guard g(g_poison_mu);
    auto it = g_poisoned.find(k.mem.get());
    if (it == g_poisoned.end()) return {};
    return std::vector<pfn_t>(it->second.begin(), it->second.end());
}

Status memory_failure(Kernel& k, pfn_t pfn) {
    PhysMem& mem = *k.mem;
    Page* p = mem.pfn_to_page(pfn);
    if (!p) return Error(ENXIO);
    if (PageHWPoison(p)) return Error(EHWPOISON);
    Folio* folio = page_folio(p);

    // Kernel pages: the mark is all we can do.
    if (mem.is_any_zero_folio(folio) || folio->is_reserved()) {
        if (test_and_set_bit(p, PG_hwpoison)) return Error(EHWPOISON);
        remember(k, pfn);
        return Error(EBUSY);
    }
    // get_hwpoison_page(): free and frozen frames cannot be held.
    if (!folio->ref_try_add(1)) return Error(EBUSY);
    if (page_folio(p) != folio) {  // split or freed and reused meanwhile
        mem.folio_put(folio);
        return Error(EBUSY);
    }
    if (test_and_set_bit(p, PG_hwpoison)) {
        mem.folio_put(folio);
        return Error(EHWPOISON);
    }
    remember(k, pfn);
    if (folio->is_hugetlb() && !folio->test_and_set(PG_hwpoison))  // folio_set_hugetlb_hwpoison()
        remember(k, mem.page_to_pfn(folio->head()));

    folio->lock();
    auto give_up = [&](Error e) -> Status {
        folio->unlock();
        mem.folio_put(folio);
        return e;
    };
    if (!folio->is_anon() && !folio->mapping()) return give_up(Error(EBUSY));  // unhandlable

    // try_to_split_thp_page()
    if (folio->is_large() && !folio->is_hugetlb()) {
        if (!folio->is_anon()) return give_up(Error(EBUSY));
        if (!split_folio(mem, folio)) return give_up(Error(EBUSY));
        Folio* pf = page_folio(p);
        if (pf != folio) {
            // Our reference and lock are on the old head; move them to p's folio.
            const bool held = pf->ref_try_add(1);
            folio->unlock();
            mem.folio_put(folio);
            if (!held) return ok_status();  // unmapped, hence freed by the split: withheld by physmem
            folio = pf;
            folio->lock();
        }
    }

    const bool anon = folio->is_anon();
    AddressSpace* mapping = anon ? nullptr : folio->mapping();
    const bool dax = folio->is_zone_device() && mapping;
    const bool disk = mapping && !dax && mapping->can_writeback();
    bool poison_entries = true;
    if (disk) {
        // A clean page of a disk file can simply be dropped: mappings go
        // without hwpoison entries and a refault reads the data again.
        if (folio_mkclean(folio) > 0) folio_mark_dirty(folio);
        poison_entries = folio->is_dirty();
    }
    if (folio->mapped()) unmap_poisoned(k, folio, p, poison_entries);

    // The page cache.
    int cache_refs = 0;
    if (mapping && !dax) {
        if (disk) {
            mapping->delete_folio(folio);  // truncate_error_folio()
        } else {
            sync::SpinGuard g(mapping->i_pages_lock);
            auto it = mapping->i_pages.find(folio->index());
            if (it != mapping->i_pages.end() && it->second == folio) cache_refs = static_cast<int>(folio->nr_pages());
        }
    }
    int file_refs = 0;
    if (dax) {
        // fsdax: the file's own reference on its block.
        Inode& inode = mapping->host;
        sync::SpinGuard g(inode.dax_lock);
        auto it = inode.dax_blocks.find(folio->index());
        if (it != inode.dax_blocks.end() && it->second == mem.page_to_pfn(folio->head())) file_refs = 1;
    }
    if (folio->mapped() || folio->ref_count() != 1 + cache_refs + file_refs)
        return give_up(Error(EBUSY));  // still mapped somewhere, or pinned: MF_FAILED

    // Recovered: the frame is ours for good. An isolated anonymous folio no
    // longer belongs to its anon_vma (which may go away).
    if (anon) folio->set_raw_mapping(0);
    k.ref_note(folio, 1);
    folio->unlock();
    return ok_status();
}

}  // namespace pl
