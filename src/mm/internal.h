// pinlab — mm-internal interfaces (upstream's mm/internal.h and friends).
//
// Locking rules (upstream order): mmap_lock → folio lock → i_mmap_rwsem /
// anon_vma lock → page_table_lock → i_pages_lock / zone lock.
//  * Leaf entries of an mm change only under its page_table_lock.
//  * VMAs change only under mmap_lock for write.
//  * rmap_* mapcount changes happen under the page_table_lock of the mm
//    whose entry changes.
#pragma once

#include <functional>
#include <vector>

#include "base/function_ref.h"
#include "base/result.h"
#include "kernel/kernel.h"
#include "mm/folio.h"
#include "mm/mm_struct.h"
#include "mm/pte.h"
#include "mm/vm_ops.h"
#include "mm/vma.h"

namespace pl {

class AddressSpace;
class AnonVma;
class Inode;

enum class RmapLevel : uint8_t { Pte, Pmd, Pud };

inline Kernel& kernel_of(const Vma& v);
inline PhysMem& mem_of(const Vma& v);

// ---------------------------------------------------------------------------
// Frames behind entries (mm/memory.c)
// ---------------------------------------------------------------------------

// vm_normal_page(): the page a present leaf maps, or null when the entry has
// no "normal" page: special entries, pfns without a struct page, the zero
// page, raw pfns in VM_PFNMAP (COW'ed pages in a private PFNMAP are normal).
Page* vm_normal_page(const Vma& vma, vaddr_t addr, pte::entry_t e);
// Same for PMD and PUD leaves: the head page of the mapped range.
Page* vm_normal_page_huge(const Vma& vma, vaddr_t addr, pte::entry_t e, PtLevel level);
// The page (any, even the zero page or a special mapping's page) behind a
// present leaf at addr, or null if the pfn has no struct page.
Page* entry_page(const Vma& vma, vaddr_t addr, pte::entry_t e, PtLevel level);

// ---------------------------------------------------------------------------
// rmap (mm/rmap.c)
// ---------------------------------------------------------------------------

// anon_vma_prepare(): gives the VMA an anon_vma (shared across its fork family).
Status anon_vma_prepare(Vma& vma);
// anon_vma_fork(): the child VMA joins the parent's family.
void anon_vma_fork(Vma& child, Vma& parent);
// unlink_anon_vmas(): the VMA leaves its family.
void unlink_anon_vmas(Vma& vma);

// Mapping a brand-new anonymous folio: sets mapping/index and the mapcounts;
// PageAnonExclusive on each page (Pte) or on the head (Pmd) when `exclusive`.
void folio_add_new_anon_rmap(Folio* folio, Vma& vma, vaddr_t addr, RmapLevel level, bool exclusive);
// Mapping existing anonymous pages again (migration, mremap).
void folio_add_anon_rmap(Folio* folio, Page* page, int nr, Vma& vma, RmapLevel level, bool exclusive);
// Mapping page-cache (or dax/device) pages.
void folio_add_file_rmap(Folio* folio, Page* page, int nr, Vma& vma, RmapLevel level);
// Unmapping: mapcounts only; the caller drops the mapping's reference.
void folio_remove_rmap(Folio* folio, Page* page, int nr, Vma& vma, RmapLevel level);
// fork: duplicate nr PTE (or one PMD) mappings of anonymous pages. -EBUSY
// (nothing changed) when a page is PageAnonExclusive and may be pinned in an
// mm with MMF_HAS_PINNED: the caller must copy instead. Otherwise clears
// PageAnonExclusive and adds the mappings.
Status folio_try_dup_anon_rmap(Folio* folio, Page* page, int nr, Vma& src, RmapLevel level);
void folio_dup_file_rmap(Folio* folio, Page* page, int nr, RmapLevel level);
// folio_try_share_anon_rmap_*(): before an exclusive anon page's mapping is
// replaced by a migration entry. -EBUSY when it may be pinned.
Status folio_try_share_anon_rmap(Folio* folio, Page* page, RmapLevel level);
// folio_needs_cow_for_dma()
bool folio_needs_cow_for_dma(const Vma& vma, const Folio* folio);

// rmap_walk(): calls fn(vma, address) for each VMA that may map the folio
// (address of the folio's first page in that VMA; may lie outside it for
// partially covered folios). Stop by returning false. Takes the anon_vma or
// i_mmap lock for read.
void rmap_walk(Folio* folio, FunctionRef<bool(Vma&, vaddr_t)> fn);
// folio_get_anon_vma(): a reference on an anonymous folio's anon_vma (put()
// it), or nullptr when the folio has none or its last VMA let go of it.
AnonVma* folio_get_anon_vma(const Folio* folio);
// The anonymous half of rmap_walk() for a caller that holds a reference on
// the folio's anon_vma (migration holds one from unmap to move).
void rmap_walk_anon(Folio* folio, AnonVma& av, FunctionRef<bool(Vma&, vaddr_t)> fn);

// folio_mkclean(): write-protect and clean every shared-mapping PTE of the
// folio (before writeback). Returns how many were dirty.
int folio_mkclean(Folio* folio);
// unmap_mapping_range(): zap the pages of [first, first+nr) of the file in
// every VMA mapping it; private COW copies too when even_cows.
void unmap_mapping_range(AddressSpace& mapping, pgoff_t first, pgoff_t nr, bool even_cows);
// Unmaps a folio from every page table (try_to_unmap for file folios).
// Returns true if no mapping remains.
bool try_to_unmap(Folio* folio);

// ---------------------------------------------------------------------------
// Faults (mm/memory.c, mm/huge_memory.c, mm/hugetlb.c)
// ---------------------------------------------------------------------------

// handle_mm_fault(): caller holds mmap_lock for read. On VM_FAULT_RETRY or
// VM_FAULT_COMPLETED the lock has been released (unless RETRY_NOWAIT).
vm_fault_t handle_mm_fault(Vma& vma, vaddr_t addr, unsigned flags);
vm_fault_t hugetlb_fault(Vma& vma, vaddr_t addr, unsigned flags);
// migration_entry_wait(): a fault met a migration entry; wait until the
// migration replaced it (the caller then returns 0 so the fault is retried).
void migration_entry_wait(const pte::entry_t* slot, pte::entry_t entry);

// Entry points for drivers' ->mmap and ->fault (mm/memory.c, mm/huge_memory.c).
// remap_pfn_range(): VM_IO|VM_PFNMAP|VM_DONTEXPAND|VM_DONTDUMP, special PTEs.
Status remap_pfn_range(Vma& vma, vaddr_t addr, pfn_t pfn, uint64_t size);
// vmf_insert_pfn(): a special PTE in a VM_PFNMAP VMA.
vm_fault_t vmf_insert_pfn(Vma& vma, vaddr_t addr, pfn_t pfn, unsigned pfn_flags = 0);
// vmf_insert_mixed(): VM_MIXEDMAP. Where the arch has pte_special the entry
// is special (devmap with PFN_DEV|PFN_MAP on arch.pte_devmap), so GUP cannot
// use it; without pte_special a pfn with a struct page is inserted as a
// normal, refcounted page (insert_page) and GUP can reach it.
vm_fault_t vmf_insert_mixed(Vma& vma, vaddr_t addr, pfn_t pfn, unsigned pfn_flags = 0);
// vm_insert_page(): a normal page into a VM_MIXEDMAP VMA (takes a reference).
Status vm_insert_page(Vma& vma, vaddr_t addr, Page* page);
// pfn_t flags for huge PFN inserts.
inline constexpr unsigned PFN_DEV = 1u << 0;
inline constexpr unsigned PFN_MAP = 1u << 1;
// vmf_insert_pfn_pmd()/_pud(): a PMD/PUD leaf in a VM_PFNMAP/VM_MIXEDMAP
// VMA, holding no page reference. With PFN_DEV|PFN_MAP on arch.pte_devmap the
// entry is devmap; otherwise it is special where the arch can mark PMDs
// special (arch.pmd_special, upstream v6.12+), and neither devmap nor special
// before that — the case seed 003 found GUP-fast walking into.
vm_fault_t vmf_insert_pfn_pmd(Vma& vma, vaddr_t addr, pfn_t pfn, unsigned pfn_flags, bool write);
vm_fault_t vmf_insert_pfn_pud(Vma& vma, vaddr_t addr, pfn_t pfn, unsigned pfn_flags, bool write);

// ---------------------------------------------------------------------------
// Tearing down and copying mappings
// ---------------------------------------------------------------------------

// zap_page_range_single()/unmap_vmas(): clears [start, end) of one VMA,
// splitting PMD leaves that are only partly covered. Caller holds mmap_lock
// (or, for unmap_mapping_range, the file's i_mmap_rwsem).
enum class ZapFilter : uint8_t { All, SkipAnon };
// `unmapped_pinned`, when given, collects the folios left with no mapping
// at all that may be pinned (munmap()'s leak check, debug/pin_tracker).
void zap_vma_range_details(Vma& vma, vaddr_t start, vaddr_t end, ZapFilter filter,
                           std::vector<const Folio*>* unmapped_pinned = nullptr);
inline void zap_vma_range(Vma& vma, vaddr_t start, vaddr_t end) {
    zap_vma_range_details(vma, start, end, ZapFilter::All);
}
// MADV_DONTNEED's zap (zap_details.reclaim_pt = true): zap_vma_range(), then,
// with CONFIG_PT_RECLAIM (era current), free every PTE table that lies wholly
// inside [start, end) and is left empty (src/mm/pt_reclaim.cpp).
void zap_vma_range_reclaim_pt(Vma& vma, vaddr_t start, vaddr_t end);
// Resident-set accounting for nr pages of folio mapped (+) or unmapped (-).
void account_rss(Vma& vma, const Folio* folio, long nr);
// Calls fn(slot, level, leaf_addr, first_page) for each leaf of vma that maps
// part of folio, whose first page would sit at addr. Caller holds the mm's
// page_table_lock.
using FolioMappingFn = FunctionRef<void(pte::entry_t*, RmapLevel, vaddr_t, Page*)>;
void for_each_folio_mapping_locked(Vma& vma, Folio* folio, vaddr_t addr, FolioMappingFn fn);
// copy_page_range(): fork's copy of one VMA's entries into the child.
Status copy_page_range(Vma& dst, Vma& src);

// The critical section fork copies a VMA's entries in: both page-table locks
// (the child's first) and, for COW mappings, the parent's write_protect_seq
// held odd, so that GUP-fast cannot pin a page while fork shares it.
class ForkCopySection {
public:
    ForkCopySection(Vma& dst, Vma& src) PL_NO_TSA
        : src_mm_(*src.mm), dst_mm_(*dst.mm), cow_(src.is_cow_mapping()) {
        if (cow_) src_mm_.write_protect_seq.write_begin();
        dst_mm_.page_table_lock.lock();
        src_mm_.page_table_lock.lock();
    }
    ~ForkCopySection() PL_NO_TSA {
        src_mm_.page_table_lock.unlock();
        dst_mm_.page_table_lock.unlock();
        if (cow_) src_mm_.write_protect_seq.write_end();
    }
    ForkCopySection(const ForkCopySection&) = delete;
    ForkCopySection& operator=(const ForkCopySection&) = delete;
    bool cow() const { return cow_; }

private:
    MmStruct& src_mm_;
    MmStruct& dst_mm_;
    bool cow_;
};

// ---------------------------------------------------------------------------
// THP (mm/huge_memory.c)
// ---------------------------------------------------------------------------

// thp_vma_allowable(): may a PMD-sized anonymous THP back addr in this VMA?
bool thp_vma_allowable(const Vma& vma, vaddr_t haddr);
// __split_huge_pmd(): turns the PMD leaf covering addr into a PTE table
// (the folio stays large, now PTE-mapped). Caller holds mmap_lock.
void split_huge_pmd(Vma& vma, vaddr_t addr);
// Same, with page_table_lock already held.
void split_huge_pmd_locked(Vma& vma, vaddr_t addr, pte::entry_t* pmd);
// split_folio(): splits a large anonymous or page-cache folio (not hugetlb)
// into order-0 folios. -EBUSY if it is PMD-mapped anywhere or has references
// beyond its mappings, page cache and the caller's one (e.g. a pin).
// Caller holds one reference and the folio lock.
Status split_folio(PhysMem& mem, Folio* folio);
// MADV_COLLAPSE of one PMD-aligned range.
Status collapse_huge_page(Vma& vma, vaddr_t haddr);

// ---------------------------------------------------------------------------
// hugetlb (mm/hugetlb.c)
// ---------------------------------------------------------------------------

HugeSize hstate_of(const Vma& vma);
Status hugetlb_reserve_pages(Vma& vma);
void hugetlb_unreserve_vma(Vma& vma);

// ---------------------------------------------------------------------------
// The page cache (mm/filemap.c, mm/shmem.c, fs/*)
// ---------------------------------------------------------------------------

// Finds or creates the page-cache folio of `inode` at index (with a
// reference), reading from the backing store. `may_drop_lock`: the fault may
// drop the mmap_lock to "do I/O" and report VM_FAULT_RETRY instead
// (filemap_fault with ALLOW_RETRY). On success returns 0.
vm_fault_t filemap_get_or_read(Inode& inode, pgoff_t index, Folio** out);
// folio_mark_dirty(): PG_dirty plus dirty accounting.
void folio_mark_dirty(Folio* folio);
// Writes back one folio (clear_page_dirty_for_io, folio_mkclean, copy to the
// backing store). Pinned folios are written back too, as upstream does.
void writeback_folio(Inode& inode, Folio* folio);

// ---------------------------------------------------------------------------
// Migration (mm/migrate.c)
// ---------------------------------------------------------------------------

enum class MigrateReason : uint8_t { Compaction, LongtermPin, Syscall, MemoryFailure };
// Migrates one folio to a new folio placed by `gfp` (or inside `zone`).
// The caller holds one reference, which migration consumes on success
// (the old folio is freed once unreferenced). -EBUSY when the folio has
// unexpected references (e.g. it may be pinned) or could not be unmapped;
// -ENOMEM when no target could be allocated; -EAGAIN for a transient race.
Status migrate_folio(Kernel& k, Folio* folio, gfp_t gfp, MigrateReason reason);
// The same with the target chosen by `alloc_target(src)` (a folio of src's
// order, refcount 1; hugetlb sources need a hugetlb target): compaction
// places targets outside the range it empties. The caller's reference is a
// transient kernel reference, never noted in the reference ledger.
using MigrationTargetFn = std::function<Result<Folio*>(Folio* src)>;
Status migrate_folio_to(Kernel& k, Folio* folio, const MigrationTargetFn& alloc_target, MigrateReason reason);
// migrate_pages(MIGRATE_SYNC) with alloc_migration_target(): migrates the
// folios of `folios` (each held by one caller's reference, consumed for every
// folio that moves) to targets placed by `gfp`, in batches of up to 512 pages
// (each batch unmapped before any of it moves; -EAGAIN retried for up to 10
// passes). Afterwards `folios` holds the ones that did not move, still with
// the caller's reference (putback is the caller's); returns how many.
unsigned long migrate_pages(Kernel& k, std::vector<Folio*>& folios, gfp_t gfp, MigrateReason reason);

// ---------------------------------------------------------------------------
// Compaction (mm/compaction.c)
// ---------------------------------------------------------------------------

// Installs compact_zone_order() as PhysMem's compaction hook (called once at
// kernel creation, after the PhysMem exists).
void compaction_init(Kernel& k);
// PhysMem::CompactFn (ctx is the Kernel): tries to free a 2^order-aligned
// block of `zone` by migrating the movable folios in it elsewhere in the
// zone. True when a free block of at least `order` now exists.
bool compact_zone_order(void* ctx, ZoneId zone, unsigned order);
// echo 1 > /proc/sys/vm/compact_memory: compacts every zone; returns the
// number of folios moved.
long compact_memory(Kernel& k);

// ---------------------------------------------------------------------------
// Memory failure (mm/memory-failure.c)
// ---------------------------------------------------------------------------

// memory_failure(pfn, 0): marks the frame PG_hwpoison and isolates it: its
// mappings become hwpoison entries (clean page-cache pages are just
// unmapped and dropped from the cache), and the frame is kept out of the
// allocator for good. 0 when recovered; -EHWPOISON if it was poisoned
// already; -ENXIO for a pfn without a struct page; -EBUSY when it could not
// be isolated (kernel/reserved/free/unsplittable/pinned pages: still marked,
// except free frames, which physmem cannot take off the buddy lists).
Status memory_failure(Kernel& k, pfn_t pfn);
// Frames memory_failure() poisoned (for the invariant checker's leak count:
// a poisoned frame that is freed stays out of the buddy allocator).
std::vector<pfn_t> hwpoisoned_pfns(const Kernel& k);

// ---------------------------------------------------------------------------
// Inline definitions
// ---------------------------------------------------------------------------

inline Kernel& kernel_of(const Vma& v) { return v.mm->kernel; }
inline PhysMem& mem_of(const Vma& v) { return *v.mm->kernel.mem; }

}  // namespace pl
