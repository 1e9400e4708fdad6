// pinlab — mmap(), munmap() and VMA splitting (upstream mm/mmap.c, mm/vma.c).
#include "mm/mmap.h"

#include "pinlab/uapi.h"

#include "fs/file.h"
#include "fs/fs.h"
#include "fs/inode.h"
#include "debug/pin_tracker.h"
#include "gup/populate.h"
#include "kernel/task.h"
#include "mm/anon_vma.h"
#include "mm/internal.h"
#include "mm/vma_merge.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif

namespace pl {

namespace {

constexpr int kMapType = 0x0f;
constexpr int kKnownMapFlags = MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_POPULATE | MAP_NORESERVE |
                               MAP_HUGETLB | MAP_LOCKED | MAP_NONBLOCK | MAP_FIXED_NOREPLACE | MAP_GROWSDOWN |
                               MAP_DENYWRITE | MAP_EXECUTABLE | MAP_STACK | (0x3f << MAP_HUGE_SHIFT);

vm_flags_t calc_vm_prot_bits(int prot) {
    vm_flags_t f = 0;
    if (prot & PROT_READ) f |= VM_READ;
    if (prot & PROT_WRITE) f |= VM_WRITE;
    if (prot & PROT_EXEC) f |= VM_EXEC;
    return f;
}

}  // namespace

vm_flags_t vm_flags_from_prot(int prot) { return calc_vm_prot_bits(prot); }

// The VMA's reference on its file and its place in the file's i_mmap.
void vma_link_file(Vma& v) {
    if (!v.file) return;
    v.file->get();
    v.file->inode->mapping.link_vma(&v);
}

void vma_unlink_file(Vma& v) {
    if (!v.file) return;
    v.file->inode->mapping.unlink_vma(&v);
    v.file->put();
    v.file = nullptr;
}

// remove_vma(): the last step of unmapping a VMA whose entries are gone.
void vma_destroy(MmStruct& mm, Vma* v) {
    if (v->ops) v->ops->close(*v);
    if (v->is_hugetlb()) hugetlb_unreserve_vma(*v);
    unlink_anon_vmas(*v);
    vma_unlink_file(*v);
    auto owned = mm.remove_vma(v);
}

namespace {

// vma_prepare()/vma_complete(): the VMA's i_mmap_rwsem, then its anon_vma
// lock, held for write while its bounds change.
class RmapWriteLocks {
public:
    explicit RmapWriteLocks(Vma& v) PL_NO_TSA
        : mapping_(v.file ? &v.file->inode->mapping : nullptr), anon_vma_(v.anon_vma) {
        if (mapping_) mapping_->i_mmap_rwsem.down_write();
        if (anon_vma_) anon_vma_->lock.down_write();
    }
    ~RmapWriteLocks() PL_NO_TSA {
        if (anon_vma_) anon_vma_->lock.up_write();
        if (mapping_) mapping_->i_mmap_rwsem.up_write();
    }
    RmapWriteLocks(const RmapWriteLocks&) = delete;
    RmapWriteLocks& operator=(const RmapWriteLocks&) = delete;

private:
    AddressSpace* mapping_;
    AnonVma* anon_vma_;
};

}  // namespace

void vma_set_flags(Vma& v, vm_flags_t flags) {
    if (v.flags == flags) return;
    RmapWriteLocks locks(v);
    v.flags = flags;
}

void vma_set_end(Vma& v, vaddr_t end) {
    if (v.end == end) return;
    RmapWriteLocks locks(v);  // rmap walkers read vm_end under these
    v.end = end;
}

Result<Vma*> split_vma(MmStruct& mm, Vma* vma, vaddr_t addr) {
    if (addr <= vma->start || addr >= vma->end) return vma;
    if (vma->ops) PL_TRY(vma->ops->may_split(*vma, addr));
    if (vma->is_hugetlb() && (addr & (vma->huge_page_size() - 1))) return Error(EINVAL);
    // A THP straddling the boundary becomes PTE-mapped (vma_adjust_trans_huge()).
    if (addr & ~PMD_MASK) split_huge_pmd(*vma, addr);
    auto upper = std::make_unique<Vma>(*vma);
    upper->id = mm.kernel.next_id();
    upper->start = addr;
    upper->pgoff = vma->pgoff_of(addr);
    upper->anon_vma = nullptr;
    upper->file = nullptr;
    // Rmap walkers (migration, unmap_mapping_range) run without the mmap_lock.
    // As upstream (anon_vma_clone(), then vma_prepare()/vma_complete()), the
    // upper part joins the anon_vma and i_mmap before the lower part shrinks,
    // so every mapped page stays reachable through one of them (a walk may
    // visit the overlap twice, which is harmless), and vm_end changes under
    // the rmap locks the walkers read it under.
    Vma* u = mm.insert_vma(std::move(upper));
    if (vma->anon_vma) {
        vma->anon_vma->get();
        u->anon_vma = vma->anon_vma;
        u->anon_vma->link(u);
    }
    u->file = vma->file;
    vma_link_file(*u);
    {
        RmapWriteLocks locks(*vma);
        vma->end = addr;
    }
    if (u->ops) u->ops->open(*u);
    return u;
}

Status split_vma_range(MmStruct& mm, vaddr_t start, vaddr_t end) {
    if (Vma* v = mm.vma_lookup(start); v && v->start < start) PL_TRY(split_vma(mm, v, start));
    if (end > 0)
        if (Vma* v = mm.vma_lookup(end - 1); v && v->end > end) PL_TRY(split_vma(mm, v, end));
    return ok_status();
}

Status do_munmap(MmStruct& mm, vaddr_t start, uint64_t len) {
    if (!page_aligned(start) || start > TASK_SIZE || len > TASK_SIZE - start) return Error(EINVAL);
    len = page_align_up(len);
    if (len == 0) return Error(EINVAL);
    vaddr_t end = start + len;
    Vma* first = mm.find_vma(start);
    if (!first || first->start >= end) return ok_status();
    // Hugetlb VMAs only split at huge page boundaries.
    PL_TRY(split_vma_range(mm, start, end));
    std::vector<Vma*> victims;
    for (Vma* v = mm.find_vma(start); v && v->start < end; v = mm.next_vma(v)) victims.push_back(v);
    if (victims.empty()) return ok_status();
    Vma* prev = mm.prev_vma(victims.front());
    Vma* next = mm.next_vma(victims.back());
    std::vector<const Folio*> unmapped_pinned;
    for (Vma* v : victims) zap_vma_range_details(*v, v->start, v->end, ZapFilter::All, &unmapped_pinned);
    {
        sync::SpinGuard g(mm.page_table_lock);
        mm.pgtable.free_pgtables(victims.front()->start, victims.back()->end, prev ? prev->end : 0,
                                 next ? next->start : TASK_SIZE + PAGE_SIZE);
    }
    for (Vma* v : victims) vma_destroy(mm, v);
    // Pins the unmapping task took itself and can no longer reach (the pin
    // tracker's munmap leak check; model bookkeeping, nothing upstream does).
    if (Task* t = current(); t && t->mm == &mm) pin_track_munmap(mm.kernel, t->pid, unmapped_pinned);
    return ok_status();
}

namespace {

// do_mmap() proper, under the mmap_lock held for write. *populate: how much
// to populate once the lock is released (vm_mmap_pgoff()'s mm_populate()).
Result<vaddr_t> do_mmap_locked(MmStruct& mm, vaddr_t addr, uint64_t len, int prot, int flags, File* file, uint64_t off,
                               uint64_t* populate) {
    Kernel& k = mm.kernel;
    if (len == 0) return Error(EINVAL);
    int type = flags & kMapType;
    if (type != MAP_SHARED && type != MAP_PRIVATE && type != MAP_SHARED_VALIDATE) return Error(EINVAL);
    if (type == MAP_SHARED_VALIDATE && (flags & ~kKnownMapFlags)) return Error(EOPNOTSUPP);
    bool shared = type != MAP_PRIVATE;
    if (!page_aligned(off)) return Error(EINVAL);
    bool anon = (flags & MAP_ANONYMOUS) || !file;
    if (!(flags & MAP_ANONYMOUS) && !file) return Error(EBADF);
    if (anon) file = nullptr;

    bool hugetlb = false;
    HugeSize hs = HugeSize::Size2M;
    if (file && file->inode->traits().hugetlb) {
        hugetlb = true;
        hs = file->inode->huge_size;
    } else if (flags & MAP_HUGETLB) {
        if (!anon) return Error(EINVAL);
        hugetlb = true;
        int code = (flags >> MAP_HUGE_SHIFT) & 0x3f;
        if (code == 30) hs = HugeSize::Size1G;
        else if (code == 0 || code == 21) hs = HugeSize::Size2M;
        else return Error(EINVAL);
    }
    uint64_t align = hugetlb ? (PAGE_SIZE << huge_order(hs)) : PAGE_SIZE;
    uint64_t alen = (len + align - 1) & ~(align - 1);
    if (alen < len || alen == 0 || alen > TASK_SIZE) return Error(ENOMEM);
    len = alen;
    if ((off >> PAGE_SHIFT) + (len >> PAGE_SHIFT) < (off >> PAGE_SHIFT)) return Error(EOVERFLOW);
    // file_mmap_ok(): the mapping must end within MAX_LFS_FILESIZE.
    constexpr uint64_t kMaxLfsFileSize = (1ULL << 63) - 1;
    if (file && (len > kMaxLfsFileSize || (off >> PAGE_SHIFT) > ((kMaxLfsFileSize - len) >> PAGE_SHIFT)))
        return Error(EOVERFLOW);

    vm_flags_t vmf = calc_vm_prot_bits(prot) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | mm.def_flags | VM_SOFTDIRTY;
    if (shared) vmf |= VM_SHARED | VM_MAYSHARE;
    if (flags & MAP_LOCKED) vmf |= VM_LOCKED;
    if (flags & MAP_NORESERVE) vmf |= VM_NORESERVE;
    if (hugetlb) vmf |= VM_HUGETLB;

    sync::WriteGuard lock(mm.mmap_lock);
    vaddr_t start;
    if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
        if (!page_aligned(addr) || (hugetlb && (addr & (align - 1)))) return Error(EINVAL);
        if (addr > TASK_SIZE || len > TASK_SIZE - addr || addr < 16 * PAGE_SIZE) return Error(ENOMEM);
        if (flags & MAP_FIXED_NOREPLACE && !(flags & MAP_FIXED)) {
            if (!mm.range_is_free(addr, addr + len)) return Error(EEXIST);
        } else {
            PL_TRY(do_munmap(mm, addr, len));
        }
        start = addr;
    } else {
        // Anonymous mappings of whole PMDs are PMD-aligned so that THPs fit
        // (thp_get_unmapped_area()).
        uint64_t want = align;
        if (!hugetlb && anon && (len % PMD_SIZE) == 0) want = PMD_SIZE;
        if (addr && page_aligned(addr) && !(addr & (want - 1)) && addr <= TASK_SIZE - len &&
            addr >= 16 * PAGE_SIZE && mm.range_is_free(addr, addr + len))
            start = addr;
        else
            start = mm.get_unmapped_area(len, want);
        if (!start) return Error(ENOMEM);
    }

    // __mmap_region(): a private anonymous range first tries to grow a
    // neighbour (vma_merge_new_range()); only then is a new VMA made.
    if (!file && !shared && !hugetlb && vma_merge_new_anon(mm, start, start + len, vmf)) {
        if ((flags & MAP_POPULATE && !(flags & MAP_NONBLOCK)) || (vmf & VM_LOCKED)) *populate = len;
        return start;
    }

    auto v = std::make_unique<Vma>();
    v->mm = &mm;
    v->id = k.next_id();
    v->start = start;
    v->end = start + len;
    v->flags = vmf;
    v->pgoff = anon ? (start >> PAGE_SHIFT) : (off >> PAGE_SHIFT);
    Vma& vma = *v;

    File* internal = nullptr;  // a file this mmap created and must drop its own reference to
    if (anon && hugetlb) {
        PL_TRY_ASSIGN(internal, hugetlb_file_setup(k, len, hs));
        file = internal;
        v->pgoff = 0;
    }
    if (file) {
        v->file = file;
        Status s = file->fops->mmap(*file, vma);
        if (!s) {
            if (internal) internal->put();
            return s.error();
        }
        vma_link_file(vma);
    } else if (shared) {
        v->pgoff = 0;
        Status s = shmem_zero_setup(vma);
        if (!s) return s.error();
    }
    if (internal) internal->put();  // the VMA holds its own reference now
    Vma* inserted = mm.insert_vma(std::move(v));
    if (inserted->is_hugetlb()) {
        Status s = hugetlb_reserve_pages(*inserted);
        if (!s) {
            vma_destroy(mm, inserted);
            return s.error();
        }
    }
    if ((flags & MAP_POPULATE && !(flags & MAP_NONBLOCK)) || (vmf & VM_LOCKED)) *populate = len;
    return start;
}

}  // namespace

Result<vaddr_t> do_mmap(MmStruct& mm, vaddr_t addr, uint64_t len, int prot, int flags, File* file, uint64_t off) {
    uint64_t populate = 0;
    Result<vaddr_t> r = do_mmap_locked(mm, addr, len, prot, flags, file, off, &populate);
    // MAP_POPULATE / MAP_LOCKED: __mm_populate() through GUP, errors ignored.
    if (r && populate) mm_populate(mm, *r, populate);
    return r;
}

}  // namespace pl
