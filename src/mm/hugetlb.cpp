// pinlab — hugetlb mappings: faults, copy-on-write, fork's copy of the page
// tables and huge page reservations (upstream mm/hugetlb.c).
//
// Model summary (see also docs/FIDELITY.md):
//  * A hugetlb VMA maps 2 MiB folios with PMD leaves and 1 GiB folios with
//    PUD leaves (pte::HUGE | PRESENT | USER, never SPECIAL). Each leaf holds
//    one folio reference and is one entire mapping of the folio
//    (folio_add_*_rmap at RmapLevel::Pmd or Pud).
//  * Shared mappings (VM_SHARED/VM_MAYSHARE) map page-cache folios of the
//    hugetlbfs inode, keyed by the base-page index of their first page. The
//    cache is filled with AddressSpace::add_folio(), so it holds
//    folio_nr_pages() references, as upstream's __filemap_add_folio() does
//    for hugetlb folios too.
//  * Private mappings map the file's page-cache folio read-only if there is
//    one (MAP_PRIVATE of a hugetlbfs file), else a new anonymous folio; a
//    write or an unshare goes through hugetlb_wp().
//  * Reservations. Shared: the inode keeps the set of huge page indices it
//    holds a pool reservation for (pages not yet allocated); Inode::huge_resv
//    is its size. Private: the VMA's private_data points at a refcounted
//    HugetlbResvMap with the indices still reserved for the owner mm.
//  * Concurrency: faults on one (mapping, index) are serialised by a hashed
//    fault mutex (upstream's hugetlb_fault_mutex_table), which truncation
//    and fallocate take too. Lock order: mmap_lock → fault mutex →
//    i_mmap_rwsem → page_table_lock → i_pages_lock / pool lock; the
//    reservation locks below are leaves except for the i_pages_lock peek in
//    hugetlb_reserve_pages().
#include <array>
#include <cstring>
#include <set>
#include <unordered_map>
#include <vector>

#include "fs/file.h"
#include "fs/fs.h"
#include "fs/inode.h"
#include "kernel/kernel.h"
#include "mm/anon_vma.h"
#include "mm/internal.h"

namespace pl {

using namespace pte;

// Used by fs/hugetlbfs.cpp.
const VmOperations& hugetlb_vm_ops();
sync::Rwsem& hugetlb_fault_mutex(const AddressSpace& mapping, pgoff_t idx);
Result<Folio*> hugetlb_add_new_cache_folio(Inode& inode, pgoff_t idx);
void hugetlb_unreserve_pages(Inode& inode, pgoff_t first, pgoff_t last);
void hugetlb_forget_inode(Inode& inode);
// Called from mm/memory.cpp's copy_page_range().
Status copy_hugetlb_page_range(Vma& dst, Vma& src);

namespace {

// ---------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------

uint64_t hsize(HugeSize s) { return PAGE_SIZE << huge_order(s); }
pgoff_t hpages(HugeSize s) { return pgoff_t{1} << huge_order(s); }
PtLevel hlevel(HugeSize s) { return s == HugeSize::Size2M ? PtLevel::Pmd : PtLevel::Pud; }
RmapLevel hrmap(HugeSize s) { return s == HugeSize::Size2M ? RmapLevel::Pmd : RmapLevel::Pud; }

bool vma_shared(const Vma& v) { return v.flags & (VM_SHARED | VM_MAYSHARE); }
Inode* vma_inode(const Vma& v) { return v.file ? v.file->inode : nullptr; }

// The first and one-past-last huge page indices (base-page units, aligned)
// that a VMA covers in its file.
pgoff_t vma_first_index(const Vma& v, HugeSize s) { return v.pgoff & ~(hpages(s) - 1); }
pgoff_t vma_end_index(const Vma& v, HugeSize s) {
    pgoff_t hp = hpages(s);
    return (v.pgoff + v.nr_pages() + hp - 1) & ~(hp - 1);
}

// ---------------------------------------------------------------------------
// Folio contents
// ---------------------------------------------------------------------------

// The pool hands out folios whose contents were released when they were
// freed; clear any buffer left anyway (clear_huge_page()).
void clear_huge_folio(PhysMem& mem, Folio* folio) {
    unsigned long n = folio->nr_pages();
    for (unsigned long i = 0; i < n; ++i)
        if (sync::load(folio->page(i)->data)) mem.clear_page(folio->page(i));
}

// copy_user_large_folio()
void copy_huge_folio(PhysMem& mem, Folio* dst, Folio* src) {
    unsigned long n = src->nr_pages();
    for (unsigned long i = 0; i < n; ++i) {
        if (!sync::load(src->page(i)->data) && !sync::load(dst->page(i)->data)) continue;  // both zero
        mem.copy_page(dst->page(i), src->page(i));
    }
}

// ---------------------------------------------------------------------------
// The fault mutex table
// ---------------------------------------------------------------------------

constexpr size_t kFaultMutexes = 64;
std::array<sync::Rwsem, kFaultMutexes> g_fault_mutex;

// ---------------------------------------------------------------------------
// Shared reservations: per inode, the huge page indices reserved and not yet
// backed by a page-cache folio (upstream: the inode's resv_map regions minus
// the pages already allocated). Kept here rather than in Inode; entries are
// dropped when the file is released (hugetlbfs evict). The inode number and
// kernel guard against a stale entry left by an inode that went away without
// a release and whose address was reused.
// ---------------------------------------------------------------------------

struct InodeResv {
    const Kernel* kernel = nullptr;
    uint64_t ino = 0;
    std::set<pgoff_t> idx;
};

sync::Spinlock g_iresv_lock;
std::unordered_map<const Inode*, InodeResv> g_iresv PL_GUARDED_BY(g_iresv_lock);

InodeResv& iresv_of_locked(const Inode& inode) PL_REQUIRES(g_iresv_lock) {
    InodeResv& r = g_iresv[&inode];
    if (r.kernel != &inode.kernel || r.ino != inode.ino) {
        r = InodeResv{};
        r.kernel = &inode.kernel;
        r.ino = inode.ino;
    }
    return r;
}

// Consumes the inode's reservation for idx, if it holds one.
bool inode_resv_take(Inode& inode, pgoff_t idx) {
    sync::SpinGuard g(g_iresv_lock);
    auto it = g_iresv.find(&inode);
    if (it == g_iresv.end() || it->second.kernel != &inode.kernel || it->second.ino != inode.ino) return false;
    if (!it->second.idx.erase(idx)) return false;
    --inode.huge_resv;
    return true;
}

// Gives idx its reservation back (the pool count is the caller's business).
void inode_resv_put_back(Inode& inode, pgoff_t idx) {
    sync::SpinGuard g(g_iresv_lock);
    if (iresv_of_locked(inode).idx.insert(idx).second) ++inode.huge_resv;
}

// ---------------------------------------------------------------------------
// Private reservations: the owner VMA's resv_map (HPAGE_RESV_OWNER).
// ---------------------------------------------------------------------------

// Shared by the owner's VMAs that split from one mapping (and by the VMA an
// mremap moved it to). Instead of a reference count (upstream's kref) the
// map is freed when the last VMA of the owner mm pointing at it lets go: VMA
// code in the model moves private_data between VMAs by hand (mremap), which
// a count would not see. Callers hold the owner's mmap_lock for write when
// detaching.
struct HugetlbResvMap {
    explicit HugetlbResvMap(MmStruct* o, HugeSize s) : owner(o), hs(s) {}
    MmStruct* const owner;  // only the mm that made the mapping owns the reservations
    const HugeSize hs;
    sync::Spinlock lock;
    std::set<pgoff_t> reserved PL_GUARDED_BY(lock);  // indices whose reservation is unused
};

HugetlbResvMap* vma_resv_map(const Vma& v) {
    if (!v.is_hugetlb() || vma_shared(v)) return nullptr;
    return static_cast<HugetlbResvMap*>(v.private_data);
}

// The VMA stops pointing at its map; the map goes with the owner's last VMA.
void resv_map_detach(Vma& v) {
    HugetlbResvMap* m = vma_resv_map(v);
    if (!m) return;
    v.private_data = nullptr;
    if (m->owner != v.mm) return;  // not ours to free
    bool in_use = false;
    v.mm->for_each_vma([&](Vma& o) {
        if (&o != &v && o.is_hugetlb() && o.private_data == m) in_use = true;
    });
    if (!in_use) delete m;
}

// The VMA's owner reservation for idx, consumed if present.
bool vma_resv_take(Vma& v, pgoff_t idx) {
    HugetlbResvMap* m = vma_resv_map(v);
    if (!m || m->owner != v.mm) return false;
    sync::SpinGuard g(m->lock);
    return m->reserved.erase(idx) > 0;
}

void vma_resv_put_back(Vma& v, pgoff_t idx) {
    HugetlbResvMap* m = vma_resv_map(v);
    if (!m || m->owner != v.mm) return;
    sync::SpinGuard g(m->lock);
    m->reserved.insert(idx);
}

// ---------------------------------------------------------------------------
// Allocation with reservations
// ---------------------------------------------------------------------------

enum class ResvKind : uint8_t { None, Vma, Inode };

struct HugeAlloc {
    Folio* folio = nullptr;
    ResvKind resv = ResvKind::None;
};

// alloc_hugetlb_folio(): a zeroed huge folio for a private mapping's index,
// using the VMA's reservation for it when there is one.
Result<HugeAlloc> alloc_private_huge(Vma& vma, HugeSize hs, pgoff_t idx) {
    PhysMem& mem = mem_of(vma);
    bool resv = vma_resv_take(vma, idx);
    auto r = mem.hugetlb_alloc(hs, resv);
    if (!r) {
        if (resv) vma_resv_put_back(vma, idx);  // the pool's count was not consumed
        return r.error();
    }
    clear_huge_folio(mem, *r);
    return HugeAlloc{*r, resv ? ResvKind::Vma : ResvKind::None};
}

// Frees a folio allocated by alloc_private_huge() that was never mapped and
// gives its reservation back (restore_reserve_on_error()).
void free_unused_huge(Vma& vma, HugeSize hs, pgoff_t idx, const HugeAlloc& a) {
    PhysMem& mem = mem_of(vma);
    mem.folio_put(a.folio);  // back to the pool's free list
    if (a.resv == ResvKind::Vma) {
        // The freed page is free again, so this reservation always fits.
        if (mem.hugetlb_reserve(hs, 1)) vma_resv_put_back(vma, idx);
    }
}

// make_huge_pte()
entry_t make_huge_entry(const Vma& vma, PhysMem& mem, Folio* folio, bool writable) {
    entry_t e = mk(mem.page_to_pfn(folio->head()), (vma.page_prot() & ~(WRITE | DIRTY | TABLE | SPECIAL | DEVMAP)) |
                                                       PRESENT | USER | HUGE | YOUNG);
    if (writable) e = mkwrite(mkdirty(e));
    return e;
}

// ---------------------------------------------------------------------------
// The fault
// ---------------------------------------------------------------------------

struct HFault {
    Vma& vma;
    MmStruct& mm;
    PhysMem& mem;
    Inode& inode;
    HugeSize hs;
    vaddr_t haddr;
    pgoff_t idx;  // base-page index of the huge page in the file
    unsigned flags;
    bool write() const { return flags & FAULT_FLAG_WRITE; }
    bool unshare() const { return flags & FAULT_FLAG_UNSHARE; }
    long nr() const { return static_cast<long>(hpages(hs)); }
};

vm_fault_t hugetlb_wp(HFault& f, entry_t* slot, entry_t orig) {
    Vma& vma = f.vma;
    PhysMem& mem = f.mem;
    if (vma_shared(vma)) {
        // MAP_SHARED: never copied, never unshared.
        if (f.unshare()) return 0;
        if (!(vma.flags & VM_WRITE)) return VM_FAULT_SIGSEGV;
        sync::SpinGuard g(f.mm.page_table_lock);
        if (sync::load(*slot) != orig) return 0;
        sync::store(*slot, mkyoung(mkdirty(mkwrite(orig))));
        return 0;
    }
    Page* head = mem.pfn_to_page(pte::pfn(orig));
    if (!head) return VM_FAULT_SIGBUS;
    Folio* old = page_folio(head);
    // Reuse: an exclusive anonymous folio, or one nobody else maps. Upstream
    // decides on the mapcount alone (not the refcount), accepting that a
    // FOLL_GET reference may see later writes; FOLL_PIN pins are always on
    // PageAnonExclusive folios (GUP unshares first).
    if (old->is_anon() && (PageAnonExclusive(old->head()) || old->mapcount() == 1)) {
        sync::SpinGuard g(f.mm.page_table_lock);
        if (sync::load(*slot) != orig) return 0;
        if (!PageAnonExclusive(old->head())) SetPageAnonExclusive(old->head());
        if (f.unshare()) return 0;
        if (vma.flags & VM_WRITE) sync::store(*slot, mkyoung(mkdirty(mkwrite(orig))));
        return 0;
    }
    // Copy: a shared anonymous folio, or a page-cache folio in a private mapping.
    if (!anon_vma_prepare(vma)) return VM_FAULT_OOM;
    old->ref_add(1);  // keep it alive while copying
    auto na = alloc_private_huge(vma, f.hs, f.idx);
    if (!na) {
        // Upstream: alloc_hugetlb_folio() fails with -ENOSPC, vmf_error()
        // makes that VM_FAULT_SIGBUS. (The owner's unmap_ref_private()
        // rescue, which steals the page from children, is not modelled.)
        mem.folio_put(old);
        return VM_FAULT_SIGBUS;
    }
    Folio* newf = na->folio;
    copy_huge_folio(mem, newf, old);
    {
        sync::SpinGuard g(f.mm.page_table_lock);
        if (sync::load(*slot) != orig) {
            free_unused_huge(vma, f.hs, f.idx, *na);
            mem.folio_put(old);
            return 0;
        }
        folio_remove_rmap(old, old->head(), 1, vma, hrmap(f.hs));
        account_rss(vma, old, -f.nr());
        folio_add_new_anon_rmap(newf, vma, f.haddr, hrmap(f.hs), /*exclusive=*/true);
        account_rss(vma, newf, f.nr());
        bool writable = !f.unshare() && (vma.flags & VM_WRITE);
        entry_t e = make_huge_entry(vma, mem, newf, writable);
        e |= orig & (SOFT_DIRTY | UFFD_WP);
        sync::store(*slot, e);
    }
    mem.folio_put(old);  // the old mapping's reference
    mem.folio_put(old);  // ours
    kernel_of(vma).vmstat.add(Vmstat::cow_copies);
    return 0;
}

// hugetlb_no_page()
vm_fault_t hugetlb_no_page(HFault& f, entry_t* slot) {
    Vma& vma = f.vma;
    PhysMem& mem = f.mem;
    Inode& inode = f.inode;
    // Beyond EOF (after a truncate): SIGBUS.
    unsigned shift = PAGE_SHIFT + huge_order(f.hs);
    if ((f.idx >> huge_order(f.hs)) >= (inode.size.load() >> shift)) return VM_FAULT_SIGBUS;

    bool shared = vma_shared(vma);
    Folio* folio = inode.mapping.get_folio(f.idx);  // with a reference
    HugeAlloc anon;
    if (!folio) {
        if (shared) {
            auto r = hugetlb_add_new_cache_folio(inode, f.idx);
            if (!r) return r.error() == Error(ENOMEM) ? VM_FAULT_OOM : VM_FAULT_SIGBUS;
            folio = *r;
        } else {
            if (!anon_vma_prepare(vma)) return VM_FAULT_OOM;
            auto r = alloc_private_huge(vma, f.hs, f.idx);
            if (!r) return VM_FAULT_SIGBUS;  // no huge page: SIGBUS, as upstream
            anon = *r;
            folio = anon.folio;
        }
    }
    if (PageHWPoison(folio->head())) {
        if (anon.folio) free_unused_huge(vma, f.hs, f.idx, anon);
        else mem.folio_put(folio);
        return VM_FAULT_HWPOISON_LARGE;
    }
    bool wp_after = false;
    entry_t e = 0;
    {
        sync::SpinGuard g(f.mm.page_table_lock);
        if (!none(sync::load(*slot))) {
            if (anon.folio) free_unused_huge(vma, f.hs, f.idx, anon);
            else mem.folio_put(folio);
            return 0;
        }
        bool writable;
        if (anon.folio) {
            // A new private page: exclusive, so a write fault may map it
            // writable right away (upstream maps it R/O and hugetlb_wp()
            // reuses it at once).
            folio_add_new_anon_rmap(folio, vma, f.haddr, hrmap(f.hs), /*exclusive=*/true);
            writable = f.write() && (vma.flags & VM_WRITE);
        } else {
            // The cache's folio; the reference from get_folio() or from the
            // allocation becomes the mapping's.
            folio_add_file_rmap(folio, folio->head(), 1, vma, hrmap(f.hs));
            writable = shared && (vma.flags & VM_SHARED) && (vma.flags & VM_WRITE);
            wp_after = !shared && (f.write() || f.unshare());
        }
        account_rss(vma, folio, f.nr());
        e = make_huge_entry(vma, mem, folio, writable);
        sync::store(*slot, e);
    }
    // A write (or unshare) to a page-cache page in a private mapping copies it.
    if (wp_after) return hugetlb_wp(f, slot, e);
    return 0;
}

}  // namespace

// ---------------------------------------------------------------------------
// Exported helpers
// ---------------------------------------------------------------------------

HugeSize hstate_of(const Vma& vma) {
    Inode* i = vma_inode(vma);
    return i ? i->huge_size : HugeSize::Size2M;
}

sync::Rwsem& hugetlb_fault_mutex(const AddressSpace& mapping, pgoff_t idx) {
    uintptr_t h = reinterpret_cast<uintptr_t>(&mapping) >> 6;
    h ^= idx * 0x9e3779b97f4a7c15ULL;
    h ^= h >> 29;
    return g_fault_mutex[h % kFaultMutexes];
}

// hugetlb_add_to_page_cache() after alloc_hugetlb_folio(): a new zeroed huge
// folio in the inode's page cache at idx, consuming the inode's reservation
// for idx if it holds one. Returns the folio with the caller's reference
// (besides the cache's). Caller holds the fault mutex for (mapping, idx).
// -ENOSPC when the pool has no page, -EEXIST when idx is cached already.
Result<Folio*> hugetlb_add_new_cache_folio(Inode& inode, pgoff_t idx) {
    PhysMem& mem = *inode.kernel.mem;
    HugeSize hs = inode.huge_size;
    bool resv = inode_resv_take(inode, idx);
    auto r = mem.hugetlb_alloc(hs, resv);
    if (!r) {
        if (resv) inode_resv_put_back(inode, idx);  // the pool's count was not consumed
        return Error(ENOSPC);
    }
    Folio* folio = *r;
    clear_huge_folio(mem, folio);
    folio->set(PG_uptodate);
    // Upstream marks hugetlb page-cache folios dirty so that generic code
    // never drops them (there is no backing store).
    folio->set(PG_dirty);
    Status s = inode.mapping.add_folio(folio, idx);
    if (!s) {
        folio->set_raw_mapping(0);
        mem.folio_put(folio);
        if (resv && mem.hugetlb_reserve(hs, 1)) inode_resv_put_back(inode, idx);
        return s.error();
    }
    if (folio->mapping() != &inode.mapping) {
        folio->set_raw_mapping(reinterpret_cast<uintptr_t>(&inode.mapping));
        folio->set_index(idx);
    }
    // A reservation made for idx meanwhile (by an mmap that did not see the
    // page yet) is no longer needed.
    if (!resv && inode_resv_take(inode, idx)) mem.hugetlb_unreserve(hs, 1);
    return folio;
}

// hugetlb_unreserve_pages(): gives back the inode's reservations for the
// huge pages in [first, last) (base-page indices).
void hugetlb_unreserve_pages(Inode& inode, pgoff_t first, pgoff_t last) {
    uint64_t n = 0;
    {
        sync::SpinGuard g(g_iresv_lock);
        auto it = g_iresv.find(&inode);
        if (it == g_iresv.end() || it->second.kernel != &inode.kernel || it->second.ino != inode.ino) return;
        auto& set = it->second.idx;
        for (auto i = set.lower_bound(first); i != set.end() && *i < last;) {
            i = set.erase(i);
            ++n;
        }
        inode.huge_resv -= n;
    }
    if (n) inode.kernel.mem->hugetlb_unreserve(inode.huge_size, n);
}

// The inode goes away: give back everything and drop its entry.
void hugetlb_forget_inode(Inode& inode) {
    hugetlb_unreserve_pages(inode, 0, ~pgoff_t{0});
    sync::SpinGuard g(g_iresv_lock);
    auto it = g_iresv.find(&inode);
    if (it != g_iresv.end() && it->second.kernel == &inode.kernel && it->second.ino == inode.ino) g_iresv.erase(it);
}

// ---------------------------------------------------------------------------
// hugetlb_fault
// ---------------------------------------------------------------------------

vm_fault_t hugetlb_fault(Vma& vma, vaddr_t address, unsigned flags) {
    Inode* inode = vma_inode(vma);
    if (!inode) return VM_FAULT_SIGBUS;
    HugeSize hs = hstate_of(vma);
    MmStruct& mm = *vma.mm;
    vaddr_t haddr = address & ~(hsize(hs) - 1);
    if (haddr < vma.start || haddr + hsize(hs) > vma.end) return VM_FAULT_SIGBUS;
    HFault f{vma, mm, mem_of(vma), *inode, hs, haddr, vma.pgoff_of(haddr), flags};

    entry_t* slot;
    {
        sync::SpinGuard g(mm.page_table_lock);
        slot = mm.pgtable.slot(haddr, hlevel(hs), /*alloc=*/true);
    }
    if (!slot) return VM_FAULT_OOM;
    entry_t e = sync::load(*slot);
    if (!none(e) && !present(e)) {
        if (is_migration(e)) {
            migration_entry_wait(slot, e);
            return 0;
        }
        if (swp_type(e) == SwpType::Hwpoison) return VM_FAULT_HWPOISON_LARGE;
        return VM_FAULT_SIGBUS;
    }
    if (is_table(e)) return VM_FAULT_SIGBUS;  // a lower-level table where a huge leaf belongs

    sync::WriteGuard fm(hugetlb_fault_mutex(inode->mapping, f.idx));
    e = sync::load(*slot);
    if (none(e)) return hugetlb_no_page(f, slot);
    if (!present(e)) return 0;  // changed meanwhile (migration started): refault
    if (e & PROTNONE) {
        if (vma.flags & VM_ACCESS_FLAGS) {
            sync::SpinGuard g(mm.page_table_lock);
            if (sync::load(*slot) == e) sync::store(*slot, e & ~PROTNONE);
            return 0;
        }
        return VM_FAULT_SIGSEGV;
    }
    if (flags & (FAULT_FLAG_WRITE | FAULT_FLAG_UNSHARE)) {
        if (!write(e)) return hugetlb_wp(f, slot, e);
        if (f.write()) e = mkdirty(e);
    }
    sync::SpinGuard g(mm.page_table_lock);
    entry_t cur = sync::load(*slot);
    if (present(cur) && pte::pfn(cur) == pte::pfn(e)) sync::store(*slot, cur | (e & (DIRTY | SOFT_DIRTY)) | YOUNG);
    return 0;
}

// ---------------------------------------------------------------------------
// Reservations
// ---------------------------------------------------------------------------

// hugetlb_reserve_pages(): at mmap, with the VMA set up. Shared mappings
// reserve the file's huge pages in range that are neither cached nor
// reserved yet (the inode keeps them until truncation); private mappings
// reserve the whole range for the owner VMA. -ENOMEM when the pool cannot
// cover it, as upstream's mmap() fails.
Status hugetlb_reserve_pages(Vma& vma) {
    Inode* inode = vma_inode(vma);
    if (!vma.is_hugetlb() || !inode) return ok_status();
    if (vma.flags & VM_NORESERVE) return ok_status();
    HugeSize hs = hstate_of(vma);
    PhysMem& mem = mem_of(vma);
    pgoff_t hp = hpages(hs);
    pgoff_t from = vma_first_index(vma, hs), to = vma_end_index(vma, hs);
    if (vma_shared(vma)) {
        sync::SpinGuard g(g_iresv_lock);
        InodeResv& r = iresv_of_locked(*inode);
        std::vector<pgoff_t> missing;
        for (pgoff_t i = from; i < to; i += hp) {
            if (r.idx.count(i)) continue;
            {
                sync::SpinGuard gi(inode->mapping.i_pages_lock);
                if (inode->mapping.peek_folio_locked(i)) continue;
            }
            missing.push_back(i);
        }
        if (missing.empty()) return ok_status();
        if (!mem.hugetlb_reserve(hs, missing.size())) return Error(ENOMEM);
        r.idx.insert(missing.begin(), missing.end());
        inode->huge_resv += missing.size();
        return ok_status();
    }
    if (vma_resv_map(vma)) {  // (not expected: a fresh VMA)
        hugetlb_unreserve_vma(vma);
        resv_map_detach(vma);
    }
    uint64_t n = (to - from) / hp;
    if (n && !mem.hugetlb_reserve(hs, n)) return Error(ENOMEM);
    auto* m = new HugetlbResvMap(vma.mm, hs);
    {
        sync::SpinGuard g(m->lock);
        for (pgoff_t i = from; i < to; i += hp) m->reserved.insert(i);
    }
    vma.private_data = m;
    return ok_status();
}

// Gives back the unused reservations of a private VMA's range (munmap,
// hugetlb_vm_op_close()). Idempotent: the indices are removed as they are
// returned, so calling it and then ->close is harmless.
void hugetlb_unreserve_vma(Vma& vma) {
    HugetlbResvMap* m = vma_resv_map(vma);
    if (!m || m->owner != vma.mm) return;
    pgoff_t from = vma_first_index(vma, m->hs), to = vma_end_index(vma, m->hs);
    uint64_t n = 0;
    {
        sync::SpinGuard g(m->lock);
        for (auto i = m->reserved.lower_bound(from); i != m->reserved.end() && *i < to;) {
            i = m->reserved.erase(i);
            ++n;
        }
    }
    if (n) mem_of(vma).hugetlb_unreserve(m->hs, n);
}

// ---------------------------------------------------------------------------
// vm_operations
// ---------------------------------------------------------------------------

namespace {

class HugetlbVmOps final : public VmOperations {
public:
    const char* name() const override { return "hugetlb"; }
    // hugetlb_vm_op_open(): a split (same mm) shares the owner's resv_map;
    // a fork child owns no reservations (hugetlb_dup_vma_private()).
    void open(Vma& v) const override {
        HugetlbResvMap* m = vma_resv_map(v);
        if (m && m->owner != v.mm) v.private_data = nullptr;
    }
    // hugetlb_vm_op_close(): the owner gives back what this VMA did not use.
    void close(Vma& v) const override {
        hugetlb_unreserve_vma(v);
        resv_map_detach(v);
    }
    // Never called: handle_mm_fault() sends hugetlb VMAs to hugetlb_fault().
    vm_fault_t fault(VmFault&) const override { return VM_FAULT_SIGBUS; }
    // hugetlb_vm_op_split(): only at huge page boundaries.
    Status may_split(Vma& v, vaddr_t addr) const override {
        if (addr & (hsize(hstate_of(v)) - 1)) return Error(EINVAL);
        return ok_status();
    }
};

// The child's own copy of a possibly pinned exclusive anonymous huge page
// (copy_hugetlb_page_range()'s early COW). Both page_table_locks held.
Status copy_huge_for_child(Vma& dst, vaddr_t addr, entry_t* dslot, Folio* src_folio, entry_t src_e, HugeSize hs) {
    PhysMem& mem = mem_of(dst);
    PL_TRY(anon_vma_prepare(dst));
    auto nf = mem.hugetlb_alloc(hs, /*reserved=*/false);  // the child has no reservations
    if (!nf) return Error(ENOMEM);  // upstream: -ENOSPC from alloc_hugetlb_folio()
    Folio* newf = *nf;
    clear_huge_folio(mem, newf);
    copy_huge_folio(mem, newf, src_folio);
    folio_add_new_anon_rmap(newf, dst, addr, hrmap(hs), /*exclusive=*/true);
    account_rss(dst, newf, static_cast<long>(hpages(hs)));
    entry_t e = make_huge_entry(dst, mem, newf, dst.flags & VM_WRITE);
    if ((dst.flags & VM_UFFD_WP) && uffd_wp(src_e)) e |= UFFD_WP;
    sync::store(*dslot, e);
    kernel_of(dst).vmstat.add(Vmstat::fork_pinned_copies);
    return ok_status();
}

}  // namespace

const VmOperations& hugetlb_vm_ops() {
    static const HugetlbVmOps ops;
    return ops;
}

// ---------------------------------------------------------------------------
// fork
// ---------------------------------------------------------------------------

Status copy_hugetlb_page_range(Vma& dst, Vma& src) {
    HugeSize hs = hstate_of(src);
    uint64_t hsz = hsize(hs);
    PtLevel level = hlevel(hs);
    RmapLevel rlevel = hrmap(hs);
    long nr = static_cast<long>(hpages(hs));
    MmStruct& smm = *src.mm;
    MmStruct& dmm = *dst.mm;
    PhysMem& mem = mem_of(src);
    Status status;
    {
        ForkCopySection section(dst, src);
        const bool cow = section.cow();
        for (vaddr_t a = src.start & ~(hsz - 1); a < src.end; a += hsz) {
            entry_t* sslot = smm.pgtable.slot(a, level, false);
            if (!sslot) continue;
            entry_t e = sync::load(*sslot);
            if (none(e) || is_table(e)) continue;
            entry_t* dslot = dmm.pgtable.slot(a, level, true);
            if (!dslot) {
                status = Error(ENOMEM);
                break;
            }
            if (!present(e)) {
                if (is_migration(e) && swp_type(e) != SwpType::MigrationRead && cow) {
                    // An exclusive migration entry becomes a readable one in both.
                    e = (e & ~(0xfULL << 1)) | (static_cast<entry_t>(SwpType::MigrationRead) << 1);
                    sync::store(*sslot, e);
                }
                if (!(dst.flags & VM_UFFD_WP)) e &= ~UFFD_WP;
                sync::store(*dslot, e);
                continue;
            }
            Page* page = mem.pfn_to_page(pte::pfn(e));
            if (page) {
                Folio* folio = page_folio(page);
                folio->ref_add(1);
                if (folio->is_anon()) {
                    if (!folio_try_dup_anon_rmap(folio, folio->head(), 1, src, rlevel)) {
                        // Exclusive and maybe pinned: the child gets its own copy now.
                        mem.folio_put(folio);
                        Status s = copy_huge_for_child(dst, a, dslot, folio, e, hs);
                        if (!s) {
                            status = s;
                            break;
                        }
                        continue;
                    }
                } else {
                    folio_dup_file_rmap(folio, folio->head(), 1, rlevel);
                }
                account_rss(dst, folio, nr);
            }
            if (cow && write(e)) {
                e = wrprotect(e);
                sync::store(*sslot, e);
            }
            if (!(dst.flags & VM_UFFD_WP)) e &= ~UFFD_WP;
            sync::store(*dslot, e);
        }
    }
    return status;
}

}  // namespace pl
