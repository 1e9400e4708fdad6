// pinlab — memfd_pin_folios() (upstream mm/gup.c, with memfd_alloc_folio()
// of mm/memfd.c): pin the page-cache folios of a shmem or hugetlb memfd that
// cover [start, end], allocating the missing ones, with FOLL_LONGTERM's
// semantics (udmabuf, VFIO/iommufd keep these pins indefinitely).
#include <cerrno>
#include <string>
#include <vector>

#include "debug/pin_tracker.h"
#include "fs/file.h"
#include "fs/fs_internal.h"
#include "fs/inode.h"
#include "gup/foll_flags.h"
#include "gup/gup_longterm.h"
#include "gup/pin_accounting.h"
#include "mm/gfp.h"
#include "mm/internal.h"
#include "pinlab/kapi.h"

namespace pl {
// mm/hugetlb.cpp (as fs/hugetlbfs.cpp uses them).
sync::Rwsem& hugetlb_fault_mutex(const AddressSpace& mapping, pgoff_t idx);
Result<Folio*> hugetlb_add_new_cache_folio(Inode& inode, pgoff_t idx);
}  // namespace pl

using namespace pl;

namespace {

// PAGEVEC_SIZE: filemap_get_folios_contig() returns at most this many.
constexpr size_t kBatch = 31;

// filemap_get_folios_contig(): the folios, each with a reference, that
// cover *start, *start + 1, ... up to end or the first hole; *start moves
// past the last one returned.
std::vector<Folio*> get_folios_contig(AddressSpace& mapping, pgoff_t* start, pgoff_t end) {
    std::vector<Folio*> batch;
    pgoff_t idx = *start;
    while (idx <= end && batch.size() < kBatch) {
        pgoff_t first = 0;
        Folio* f = mapping_get_folio(mapping, idx, &first);
        if (!f) break;
        batch.push_back(f);
        idx = first + f->nr_pages();
    }
    if (!batch.empty()) *start = idx;
    return batch;
}

void release_batch(PhysMem& mem, std::vector<Folio*>& batch) {
    for (Folio* f : batch) mem.folio_put(f);
    batch.clear();
}

// memfd_alloc_folio(): the folio at idx (a base-page index), created if
// missing, with a reference. Runs under memalloc_pin_save(), so what it
// allocates is born outside ZONE_MOVABLE/CMA.
Result<Folio*> memfd_alloc_folio(Inode& inode, pgoff_t idx) {
    if (inode.traits().hugetlb) {
        // A pool page with the inode's reservation for idx if it holds one,
        // added to the page cache under the hugetlb fault mutex.
        sync::WriteGuard fm(hugetlb_fault_mutex(inode.mapping, idx));
        auto r = hugetlb_add_new_cache_folio(inode, idx);
        if (!r) return r.error() == Error(EEXIST) ? Error(EEXIST) : Error(ENOMEM);
        return *r;
    }
    // shmem_read_folio(): find or allocate (SGP_CACHE). Beyond EOF (after a
    // racing truncate) shmem says -EINVAL.
    Folio* f = nullptr;
    vm_fault_t r = filemap_get_or_create(inode, idx, CreateMode::Fault, &f);
    if (r & VM_FAULT_SIGBUS) return Error(EINVAL);
    if (r) return Error(ENOMEM);
    return f;
}

}  // namespace

extern "C" {

long memfd_pin_folios(pl_file* memfd, long long start, long long end, folio** cfolios, unsigned int max_folios,
                      unsigned long* offset) {
    GupCallScope owner("memfd_pin_folios");  // the pin tracker's default owner
    if (start < 0 || start > end || !max_folios) return -EINVAL;
    if (!memfd) return -EINVAL;
    // Upstream trusts these; the model refuses rather than write through NULL.
    if (!cfolios || !offset) return -EINVAL;
    File& file = *reinterpret_cast<File*>(memfd);
    if (!file.inode) return -EINVAL;
    Inode& inode = *file.inode;
    const bool hugetlb = inode.traits().hugetlb;
    // shmem_file() || is_file_hugepages().
    if (!inode.traits().shmem && !hugetlb) return -EINVAL;
    if (static_cast<unsigned long long>(end) >= inode.size.load()) return -EINVAL;

    Kernel& k = inode.kernel;
    PhysMem& mem = *k.mem;
    Folio** folios = reinterpret_cast<Folio**>(cfolios);
    const unsigned pgshift = hugetlb ? PAGE_SHIFT + huge_order(inode.huge_size) : PAGE_SHIFT;
    const uint64_t ustart = static_cast<uint64_t>(start), uend = static_cast<uint64_t>(end);

    MemallocPinScope pin_scope;  // memalloc_pin_save()
    // Upstream loops while migration succeeds; a folio that stayed
    // unpinnable every round would spin forever (the model's GFP_USER
    // targets cannot), so give up with a warning as gup_longterm_locked() does.
    constexpr int kMaxRounds = 64;
    for (int round = 0; round < kMaxRounds; ++round) {
        unsigned nr_folios = 0;
        // Page-cache indices are in base pages, huge-page aligned for hugetlb.
        pgoff_t start_idx = (ustart >> pgshift) << (pgshift - PAGE_SHIFT);
        const pgoff_t end_idx = (uend >> pgshift) << (pgshift - PAGE_SHIFT);
        Folio* allocated = nullptr;  // memfd_alloc_folio()'s reference, dropped after the next lookup
        while (start_idx <= end_idx && nr_folios < max_folios) {
            std::vector<Folio*> batch = get_folios_contig(inode.mapping, &start_idx, end_idx);
            if (allocated) {
                mem.folio_put(allocated);
                allocated = nullptr;
            }
            for (Folio* f : batch) {
                if (!try_grab_folio(k, f, 1, FOLL_PIN)) {
                    release_batch(mem, batch);
                    unpin_folios(cfolios, nr_folios);
                    return -EINVAL;
                }
                // offset_in_folio(folio, start)
                if (nr_folios == 0) *offset = static_cast<unsigned long>(ustart & (f->nr_pages() * PAGE_SIZE - 1));
                folios[nr_folios] = f;
                if (++nr_folios == max_folios) break;
            }
            const bool found = !batch.empty();
            release_batch(mem, batch);
            if (!found) {
                Result<Folio*> a = memfd_alloc_folio(inode, start_idx);
                if (a) {
                    allocated = *a;
                } else if (a.error() != Error(EEXIST)) {
                    unpin_folios(cfolios, nr_folios);
                    return a.error().negative();
                }
            }
        }
        if (allocated) mem.folio_put(allocated);
        // Pins on folios in ZONE_MOVABLE/CMA are dropped and the folios
        // migrated (-EAGAIN: pin everything again); on any other error the
        // pins are gone too.
        long ret = check_and_migrate_movable_folios(k, folios, nr_folios);
        if (ret == 0) return nr_folios;
        if (ret != -EAGAIN) return ret;
    }
    k.warn("memfd_pin_folios", "range still not longterm-pinnable after " + std::to_string(kMaxRounds) +
                                   " migration rounds");
    return -ENOMEM;
}

}  // extern "C"
