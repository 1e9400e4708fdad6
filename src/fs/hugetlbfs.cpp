// pinlab — hugetlbfs: the file operations behind hugetlbfs and memfd-hugetlb
// files and MAP_HUGETLB anonymous mappings, truncation and fallocate of their
// page cache (upstream fs/hugetlbfs/inode.c).
#include <vector>

#include "fs/file.h"
#include "fs/fs.h"
#include "fs/inode.h"
#include "kernel/kernel.h"
#include "mm/internal.h"

namespace pl {

// mm/hugetlb.cpp
const VmOperations& hugetlb_vm_ops();
sync::Rwsem& hugetlb_fault_mutex(const AddressSpace& mapping, pgoff_t idx);
Result<Folio*> hugetlb_add_new_cache_folio(Inode& inode, pgoff_t idx);
void hugetlb_unreserve_pages(Inode& inode, pgoff_t first, pgoff_t last);
void hugetlb_forget_inode(Inode& inode);

namespace {

uint64_t hsize(HugeSize s) { return PAGE_SIZE << huge_order(s); }
pgoff_t hpages(HugeSize s) { return pgoff_t{1} << huge_order(s); }

class HugetlbfsFileOps final : public FileOperations {
public:
    // hugetlbfs_file_mmap()
    Status mmap(File& f, Vma& vma) const override {
        Inode& inode = *f.inode;
        uint64_t hsz = hsize(inode.huge_size);
        pgoff_t hp = hpages(inode.huge_size);
        // Upstream checks the address in hugetlb_get_unmapped_area() /
        // prepare_hugepage_range() and the offset here; both give -EINVAL.
        if ((vma.start & (hsz - 1)) || (vma.end & (hsz - 1))) return Error(EINVAL);
        if (vma.pgoff & (hp - 1)) return Error(EINVAL);
        uint64_t vma_len = vma.end - vma.start;
        uint64_t len = vma_len + (vma.pgoff << PAGE_SHIFT);
        if (len < vma_len) return Error(EINVAL);  // overflow
        vma.flags |= VM_HUGETLB | VM_DONTEXPAND;
        vma.ops = &hugetlb_vm_ops();
        // A writable mapping past EOF extends the file (upstream does this
        // in ->mmap as well).
        if ((vma.flags & VM_WRITE) && inode.size.load() < len) inode.size.store(len);
        return ok_status();
    }
    // The last reference to the file: in the model a hugetlbfs inode has
    // exactly one File, so this is the inode's eviction
    // (hugetlbfs_evict_inode(): remove_inode_hugepages() and the release of
    // its reservations). No VMA maps the file any more.
    void release(File& f) const override {
        if (!f.inode) return;
        hugetlbfs_truncate_range(*f.inode, 0, ~pgoff_t{0});
        hugetlb_forget_inode(*f.inode);
    }
};

}  // namespace

const FileOperations& hugetlbfs_file_operations() {
    static const HugetlbfsFileOps ops;
    return ops;
}

// hugetlb_file_setup(): the internal file of a MAP_HUGETLB|MAP_ANONYMOUS
// mapping. No reservation here: mmap passes VM_NORESERVE to it upstream and
// reserves for the VMA in hugetlb_reserve_pages().
Result<File*> hugetlb_file_setup(Kernel& k, uint64_t size, HugeSize hs) {
    if (size == 0) return Error(EINVAL);
    uint64_t hsz = hsize(hs);
    uint64_t rounded = (size + hsz - 1) & ~(hsz - 1);
    if (rounded < size) return Error(ENOMEM);
    Inode* inode = k.inode_new(FsKind::Hugetlbfs);
    if (!inode) return Error(ENOSPC);
    inode->huge_size = hs;
    inode->size.store(rounded);
    // The File takes over the reference inode_new() returned.
    return new File(inode, &hugetlbfs_file_operations(), "hugetlb:anon");
}

// remove_inode_hugepages() after hugetlb_vmdelete_list(): for truncation
// (last == ~0) and hole punching. Partial huge pages at either end are kept
// (upstream zeroes the partial range of a punched hole; not modelled). Every
// mapping of the removed pages goes, private COW copies included, as
// upstream's hugetlb_vmdelete_list() zaps the whole range of every VMA. The
// caller updates i_size first when truncating (so that a racing fault sees
// the new size and gets SIGBUS).
void hugetlbfs_truncate_range(Inode& inode, pgoff_t first, pgoff_t last) {
    AddressSpace& m = inode.mapping;
    PhysMem& mem = *inode.kernel.mem;
    pgoff_t hp = hpages(inode.huge_size);
    bool to_end = last == ~pgoff_t{0};
    pgoff_t start = (first + hp - 1) & ~(hp - 1);
    if (start < first) return;  // overflow: nothing whole in range
    pgoff_t end = to_end ? last : (last & ~(hp - 1));
    if (start >= end) return;

    unmap_mapping_range(m, start, to_end ? 0 : end - start, /*even_cows=*/true);

    std::vector<Folio*> victims;
    {
        sync::SpinGuard g(m.i_pages_lock);
        for (auto it = m.i_pages.lower_bound(start); it != m.i_pages.end() && it->first < end; ++it)
            if (it->second->ref_try_add(1)) victims.push_back(it->second);
    }
    for (Folio* folio : victims) {
        pgoff_t idx = folio->index();
        {
            sync::WriteGuard fm(hugetlb_fault_mutex(m, idx));
            bool cached;
            {
                sync::SpinGuard g(m.i_pages_lock);
                cached = m.peek_folio_locked(idx) == folio;
            }
            if (cached) {
                // A fault may have mapped it again before we got the mutex.
                if (folio->mapped()) unmap_mapping_range(m, idx, hp, /*even_cows=*/true);
                m.delete_folio(folio);
            }
        }
        mem.folio_put(folio);
    }
    hugetlb_unreserve_pages(inode, start, end);
}

// hugetlbfs_fallocate(mode 0): allocate zeroed huge pages into the cache for
// every huge page touching [off, off + len), consuming the inode's
// reservations where it holds them. -ENOSPC when the pool runs dry (pages
// allocated so far stay). Extends i_size to off + len. Takes i_rwsem (the
// inode lock) itself, as upstream does, so truncation cannot race with it.
Status hugetlbfs_fallocate(Inode& inode, uint64_t off, uint64_t len) {
    if (len == 0) return Error(EINVAL);
    sync::WriteGuard il(inode.i_rwsem);
    PhysMem& mem = *inode.kernel.mem;
    uint64_t hsz = hsize(inode.huge_size);
    uint64_t end_byte = off + len;
    if (end_byte < off) return Error(EFBIG);
    uint64_t first = off & ~(hsz - 1);
    uint64_t last = (end_byte + hsz - 1) & ~(hsz - 1);
    if (last < end_byte) return Error(EFBIG);
    for (uint64_t a = first; a < last; a += hsz) {
        pgoff_t idx = a >> PAGE_SHIFT;
        sync::WriteGuard fm(hugetlb_fault_mutex(inode.mapping, idx));
        bool cached;
        {
            sync::SpinGuard g(inode.mapping.i_pages_lock);
            cached = inode.mapping.peek_folio_locked(idx) != nullptr;
        }
        if (cached) continue;
        auto r = hugetlb_add_new_cache_folio(inode, idx);
        if (!r) return r.error() == Error(ENOMEM) ? Error(ENOMEM) : Error(ENOSPC);
        mem.folio_put(*r);  // the cache keeps its own references
    }
    uint64_t cur = inode.size.load();
    while (cur < end_byte && !inode.size.compare_exchange(cur, end_byte)) {
    }
    return ok_status();
}

}  // namespace pl
