// pinlab — TTM-like buffer objects (upstream drivers/gpu/drm/ttm/ttm_bo.c,
// ttm_bo_vm.c, ttm_pool.c, as of the v5.x "huge page-table entries" series).
//
// A bo is backed either by system RAM (pages the driver allocates and frees
// itself, in chunks of up to 2 MiB so that huge entries are possible) or by
// VRAM (device I/O memory: pfns without a struct page). User space maps it
// through its file; the fault handler (ttm_bo_vm.cpp) inserts PFN entries:
// PTEs with vmf_insert_pfn() (VM_PFNMAP) or vmf_insert_mixed() (VM_MIXEDMAP),
// and PMD/PUD leaves with vmf_insert_pfn_pmd()/_pud() where the bo is
// contiguous and aligned. None of these entries holds a page reference: the
// pages are the driver's, which is why GUP must never reach them (seed 003).
#pragma once

#include <vector>

#include "base/result.h"
#include "base/sync/rwsem.h"
#include "kernel/kernel.h"
#include "mm/folio.h"

namespace pl {

class File;
class Vma;

enum class TtmPlacement : uint8_t { System = 0, Vram = 1 };  // TTM_PL_SYSTEM / TTM_PL_VRAM
enum class TtmMapMode : uint8_t { PfnMap, MixedMap };         // VM_PFNMAP (TTM since 2021) or VM_MIXEDMAP (v5.11)
enum class TtmHuge : uint8_t { Off, On };                     // ->huge_fault inserts PMD/PUD leaves
enum class TtmHugePfnFlags : uint8_t { Dev, DevMap };         // PFN_DEV, or PFN_DEV|PFN_MAP (Hellström's fix)

struct TtmBoOptions {
    TtmMapMode mode = TtmMapMode::PfnMap;
    TtmHuge huge = TtmHuge::On;
    TtmHugePfnFlags huge_pfn = TtmHugePfnFlags::Dev;
};

// One physically contiguous piece of the backing: a RAM folio (the driver's
// reference is in the ledger) or, for VRAM, the whole iomem range.
struct TtmChunk {
    pfn_t pfn = 0;
    unsigned long nr = 0;
    Folio* folio = nullptr;  // System only
};

class TtmBo {
public:
    // ttm_bo_init_reserved() + ttm_tt/ttm_resource allocation. -EINVAL for a
    // size of 0, -ENOMEM when the placement has no room.
    static Result<TtmBo*> create(Kernel& k, uint64_t size, TtmPlacement placement, TtmBoOptions opts);

    Kernel& kernel;
    const unsigned long nr_pages;
    const TtmBoOptions opts;
    File* file = nullptr;  // the bo's mmap file; its release frees the bo

    // The dma_resv lock (a ww_mutex upstream): faults, moves and CPU access
    // of the contents serialise on it. Taken after the mmap_lock, before
    // i_mmap_rwsem (unmap_mapping_range) and the page-table lock.
    mutable sync::Rwsem resv;

    TtmPlacement placement() const PL_NO_TSA { return placement_; }
    // The pfn backing page `pgoff` (caller holds resv). BAD_PFN past the end.
    pfn_t pfn_at(pgoff_t pgoff) const PL_NO_TSA;
    // Whether [pgoff, pgoff + nr) lies inside one chunk of the backing
    // (ttm_bo_vm_insert_huge()'s contiguity check, made stricter).
    bool contiguous(pgoff_t pgoff, unsigned long nr) const PL_NO_TSA;

    // ttm_bo_handle_move_mem() with ttm_bo_move_memcpy(): the bo's mappings
    // are zapped first (ttm_bo_unmap_virtual()), the contents copied to a new
    // backing, and the old backing freed. A move to the current placement
    // does nothing.
    Status move(TtmPlacement to);
    // CPU access through the kernel mapping (ttm_bo_kmap / ttm_bo_access).
    Status access(uint64_t off, void* buf, uint64_t len, bool write);
    // ttm_bo_release(): the last reference went (the file was released).
    void release();

private:
    TtmBo(Kernel& k, unsigned long nr, TtmBoOptions o) : kernel(k), nr_pages(nr), opts(o) {}
    Result<std::vector<TtmChunk>> alloc_backing(TtmPlacement p) const;
    // Frees a backing. `where`/`how` name the event for the pin tracker.
    void free_backing(std::vector<TtmChunk>& chunks, TtmPlacement p, const char* where, const char* how);

    TtmPlacement placement_ = TtmPlacement::System;
    std::vector<TtmChunk> chunks_;
};

// The bo behind a file made by ttm_bo_file_create(), or null.
TtmBo* ttm_bo_of_file(const File* f);
// Creates a bo and its file (one reference, the caller's).
Result<File*> ttm_bo_file_create(Kernel& k, uint64_t size, TtmPlacement placement, TtmBoOptions opts);

// The vm_operations and mmap of a bo (ttm_bo_vm.cpp).
Status ttm_bo_mmap(TtmBo& bo, Vma& vma);

}  // namespace pl
