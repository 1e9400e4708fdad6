// pinlab — the page cache: lookups, reads from the backing store, buffered
// read/write, and the generic file fault with its mmap_lock drop (upstream
// mm/filemap.c).
#include <algorithm>
#include <cstring>

#include "fs/file.h"
#include "fs/fs.h"
#include "fs/fs_internal.h"
#include "fs/inode.h"
#include "mm/fault_around.h"
#include "mm/internal.h"

namespace pl {

namespace {

bool is_disk(const Inode& inode) { return inode.traits().writeback && !inode.traits().dax; }

pfn_t pfn_of(const Inode& inode, const Page* p) { return inode.kernel.mem->page_to_pfn(p); }

// Reads block `index` of the backing store into the (new, zeroed) folio.
// Holes need nothing: the frame is already zero.
void read_block(Inode& inode, Folio* folio, pgoff_t index) {
    if (!inode.disk.has_block(index)) return;
    uint8_t buf[PAGE_SIZE];
    inode.disk.read_page(index, buf);
    (void)inode.kernel.mem->write_frame(pfn_of(inode, folio->head()), 0, buf, PAGE_SIZE);
}

Result<Folio*> alloc_cache_folio(Inode& inode) {
    const FsTraits& t = inode.traits();
    if (t.shmem) return shmem_alloc_folio(inode);
    if (t.secretmem) return secretmem_alloc_folio(inode);
    // Page-cache folios are movable (mapping_gfp_mask() is GFP_HIGHUSER_MOVABLE).
    return inode.kernel.mem->alloc_folio(0, current_gfp_context(GFP_HIGHUSER_MOVABLE));
}

// filemap_create_folio(): allocates, fills and inserts the folio at index.
// 0 with the folio (one reference for the caller) in *out; VM_FAULT_SIGBUS
// when index lies beyond EOF (check_eof), VM_FAULT_OOM, or VM_FAULT_RETRY
// when another thread inserted a folio first (look it up again).
vm_fault_t create_folio(Inode& inode, pgoff_t index, bool check_eof, Folio** out, bool ra_mark = false) {
    PhysMem& mem = *inode.kernel.mem;
    if (check_eof && index >= size_to_pages(inode.size.load())) return VM_FAULT_SIGBUS;
    auto nf = alloc_cache_folio(inode);
    if (!nf) return VM_FAULT_OOM;
    Folio* folio = *nf;
    // The model's I/O is synchronous: the folio is read before it is
    // published, so nobody sees it !uptodate.
    if (is_disk(inode)) read_block(inode, folio, index);
    folio->set(PG_uptodate);
    // ra_alloc_folio(): the marker goes on before the folio is published.
    if (ra_mark) folio->set(PG_readahead);
    Status s = inode.mapping.add_folio(folio, index);
    if (!s) {
        mem.folio_put(folio);
        return s.error() == Error(EEXIST) ? VM_FAULT_RETRY : VM_FAULT_OOM;
    }
    *out = folio;  // the allocation's reference goes to the caller
    return 0;
}

}  // namespace

vm_fault_t filemap_get_or_create(Inode& inode, pgoff_t index, CreateMode mode, Folio** out, bool* major) {
    const FsTraits& t = inode.traits();
    if (t.dax) return dax_get_block(inode, index, /*alloc=*/true, out);
    AddressSpace& m = inode.mapping;
    if (t.hugetlb) {
        // hugetlb folios are created by the hugetlb fault and fallocate paths.
        Folio* f = m.get_folio(index);
        if (!f) return VM_FAULT_SIGBUS;
        *out = f;
        return 0;
    }
    while (true) {
        if (Folio* f = m.get_folio(index)) {
            *out = f;
            return 0;
        }
        vm_fault_t r;
        if (mode == CreateMode::Fault) {
            // Against truncation and hole punching: they hold it for write
            // while they change i_size and remove folios.
            sync::ReadGuard g(inode.invalidate_lock);
            r = create_folio(inode, index, /*check_eof=*/true, out);
        } else {
            r = create_folio(inode, index, /*check_eof=*/false, out);
        }
        if (r == VM_FAULT_RETRY) continue;
        if (!r && major && is_disk(inode)) *major = true;
        return r;
    }
}

vm_fault_t filemap_get_or_read(Inode& inode, pgoff_t index, Folio** out) {
    return filemap_get_or_create(inode, index, CreateMode::Fault, out);
}

// ---------------------------------------------------------------------------
// read(2) / write(2)
// ---------------------------------------------------------------------------

// filemap_read(); shmem_file_read_iter() reads holes as zeros without
// allocating (SGP_READ).
Result<uint64_t> filemap_read(Inode& inode, void* buf, uint64_t len, uint64_t off) {
    PhysMem& mem = *inode.kernel.mem;
    auto* dst = static_cast<uint8_t*>(buf);
    bool lookup_only = inode.traits().shmem;
    bool oom = false;
    uint64_t done = for_each_page_chunk(off, clamp_to_eof(inode.size.load(), off, len), [&](const PageChunk& c) {
        Folio* folio = nullptr;
        if (lookup_only) {
            folio = inode.mapping.get_folio(c.index);
        } else {
            vm_fault_t r = filemap_get_or_create(inode, c.index, CreateMode::Fault, &folio);
            if (r == VM_FAULT_SIGBUS) return false;  // truncated meanwhile: a short read
            if (r) {
                oom = c.done == 0;
                return false;
            }
        }
        if (folio) {
            (void)mem.read_frame(pfn_of(inode, folio->head()), c.offset, dst + c.done, c.len);
            mem.folio_put(folio);
        } else {
            std::memset(dst + c.done, 0, c.len);
        }
        return true;
    });
    if (oom) return Error(ENOMEM);
    return done;
}

// generic_perform_write(): write_begin (find or create, lock), copy,
// write_end (dirty, extend i_size). Caller: disk and shmem inodes.
Result<uint64_t> filemap_write(Inode& inode, const void* buf, uint64_t len, uint64_t off) {
    if (len == 0) return uint64_t{0};
    if (off >= MAX_FILE_SIZE || len > MAX_FILE_SIZE - off) return Error(EFBIG);
    PhysMem& mem = *inode.kernel.mem;
    AddressSpace& m = inode.mapping;
    const auto* src = static_cast<const uint8_t*>(buf);
    sync::WriteGuard g(inode.i_rwsem);
    uint64_t done = 0;
    while (done < len) {
        uint64_t pos = off + done;
        pgoff_t index = pos >> PAGE_SHIFT;
        unsigned poff = static_cast<unsigned>(pos & ~PAGE_MASK);
        unsigned n = static_cast<unsigned>(std::min<uint64_t>(PAGE_SIZE - poff, len - done));
        Folio* folio = nullptr;
        vm_fault_t r = filemap_get_or_create(inode, index, CreateMode::Write, &folio);
        if (r) {
            if (done) break;
            return Error(r == VM_FAULT_OOM ? ENOMEM : EIO);
        }
        folio->lock();
        if (folio->mapping() != &m) {
            // Migrated (or otherwise replaced) before we locked it: look again.
            folio->unlock();
            mem.folio_put(folio);
            continue;
        }
        (void)mem.write_frame(pfn_of(inode, folio->head()), poff, src + done, n);
        folio_mark_dirty(folio);
        done += n;
        // i_size_write() under the folio lock, as generic_write_end() does.
        if (off + done > inode.size.load()) inode.size.store(off + done);
        folio->unlock();
        mem.folio_put(folio);
    }
    return done;
}

// hugetlbfs_read_iter(): copies from the huge folios in the cache; holes read zero.
Result<uint64_t> hugetlbfs_read(Inode& inode, void* buf, uint64_t len, uint64_t off) {
    PhysMem& mem = *inode.kernel.mem;
    auto* dst = static_cast<uint8_t*>(buf);
    return for_each_page_chunk(off, clamp_to_eof(inode.size.load(), off, len), [&](const PageChunk& c) {
        pgoff_t first = 0;
        if (Folio* folio = mapping_get_folio(inode.mapping, c.index, &first)) {
            (void)mem.read_frame(mem.page_to_pfn(folio->page(c.index - first)), c.offset, dst + c.done, c.len);
            mem.folio_put(folio);
        } else {
            std::memset(dst + c.done, 0, c.len);
        }
        return true;
    });
}

// The disk's bytes (what survives without the page cache), up to EOF.
Result<uint64_t> disk_read(Inode& inode, void* buf, uint64_t len, uint64_t off) {
    uint64_t size = inode.size.load();
    if (off >= size) return uint64_t{0};
    len = std::min(len, size - off);
    auto* dst = static_cast<uint8_t*>(buf);
    uint8_t block[PAGE_SIZE];
    uint64_t done = 0;
    while (done < len) {
        uint64_t pos = off + done;
        unsigned poff = static_cast<unsigned>(pos & ~PAGE_MASK);
        unsigned n = static_cast<unsigned>(std::min<uint64_t>(PAGE_SIZE - poff, len - done));
        inode.disk.read_page(pos >> PAGE_SHIFT, block);
        std::memcpy(dst + done, block + poff, n);
        done += n;
    }
    return done;
}

// ---------------------------------------------------------------------------
// filemap_fault / filemap_page_mkwrite
// ---------------------------------------------------------------------------

namespace {

// ---- mmap read-around (do_sync_mmap_readahead(), mm/readahead.c) ----

// file_ra_state's window: [start, start + size), and the page at
// start + size - async_size that gets the PG_readahead marker (none when
// async_size is 0).
struct RaWindow {
    pgoff_t start = 0, size = 0, async_size = 0;
};

// page_cache_ra_order() with order-0 folios (what read-around asks for,
// ra->order = 0): every page of the window that is not cached yet is read
// (holes as zero-filled uptodate folios), none past the page holding the
// last byte; cached pages are passed over, and so is the marker if its page
// was cached already. The model's I/O is synchronous, so the folios are
// uptodate and unlocked once this returns.
void page_cache_ra(Inode& inode, const RaWindow& ra) {
    PhysMem& mem = *inode.kernel.mem;
    const uint64_t isize = inode.size.load();
    if (isize == 0) return;
    const pgoff_t last = (isize - 1) >> PAGE_SHIFT;
    const pgoff_t mark = ra.start + ra.size - ra.async_size;
    sync::ReadGuard g(inode.invalidate_lock);
    for (pgoff_t i = ra.start; i < ra.start + ra.size && i <= last; ++i) {
        if (Folio* f = inode.mapping.get_folio(i)) {
            mem.folio_put(f);
            continue;
        }
        Folio* f = nullptr;
        vm_fault_t r = create_folio(inode, i, /*check_eof=*/true, &f, ra.async_size && i == mark);
        if (r == VM_FAULT_RETRY) continue;  // another thread inserted it
        if (r) break;                       // no memory (or truncated): read-ahead just stops
        mem.folio_put(f);
    }
}

// ra_pages: the bdi's read_ahead_kb in pages (file_ra_state_init()).
pgoff_t ra_pages_of(const Inode& inode) { return inode.kernel.cfg.readahead_kb >> (PAGE_SHIFT - 10); }

// do_sync_mmap_readahead(): a major fault on a disk file reads a window
// around the page, so that fault-around on the retry finds the neighbours.
// `flags` are the VMA's, taken before the mmap_lock may be dropped.
// Not modelled: the mmap_miss heuristic (reads stop after MMAP_LOTSAMISS
// misses), and the VM_HUGEPAGE forced-THP read (PMD-order folios).
void do_sync_mmap_readahead(Inode& inode, vm_flags_t flags, pgoff_t index, pgoff_t vma_pgoff,
                            unsigned long vma_pages) {
    if (!is_disk(inode)) return;
    const pgoff_t ra_pages = ra_pages_of(inode);
    // MADV_RANDOM: no read-ahead (but VM_EXEC still reads around).
    if ((flags & (VM_RAND_READ | VM_EXEC)) == VM_RAND_READ) return;
    if (!ra_pages) return;
    RaWindow ra;
    if (flags & VM_SEQ_READ) {
        // page_cache_sync_ra(ra_pages) on a fresh file_ra_state: at index 0
        // the initial window (get_init_ra_size(ra_pages, ra_pages) is
        // ra_pages, async half of it); elsewhere a "small random read" of
        // ra_pages from the page (do_page_cache_ra(), no marker).
        if (index == 0) ra = {0, ra_pages, ra_pages >> 1};
        else ra = {index, ra_pages, 0};
    } else if (flags & VM_EXEC) {
        // Executable text: from the page, up to ra_pages but not past the
        // VMA, no async part (exec_folio_order() is 0 on x86).
        const pgoff_t start = std::max(index, vma_pgoff);
        const pgoff_t end = std::min<pgoff_t>(start + ra_pages, vma_pgoff + vma_pages);
        ra = {start, end > start ? end - start : 0, 0};
    } else {
        // mmap read-around: ra_pages centred on the page, the last quarter
        // asynchronous.
        ra = {index > ra_pages / 2 ? index - ra_pages / 2 : 0, ra_pages, ra_pages / 4};
    }
    page_cache_ra(inode, ra);
}

// do_async_mmap_readahead() on a cached folio: a hit on the PG_readahead
// marker clears it (page_cache_async_ra(); not on a page under writeback,
// whose bit upstream means PG_reclaim). The next window that upstream then
// reads (larger folios, ra->order + 2) is not modelled.
void do_async_mmap_readahead(Inode& inode, vm_flags_t flags, Folio* folio) {
    if ((flags & VM_RAND_READ) || !ra_pages_of(inode)) return;
    if (folio->is_writeback()) return;
    folio->clear(PG_readahead);
}

// filemap_fault(). Without the folio in the cache the fault is major: with
// FAULT_FLAG_ALLOW_RETRY (and not yet TRIED) the mmap_lock is dropped for the
// "I/O" (maybe_unlock_mmap_for_io) and VM_FAULT_RETRY returned, so the caller
// (GUP, the page-fault handler) must take the lock again and look the VMA up
// anew. RETRY_NOWAIT starts the read but keeps the lock.
vm_fault_t filemap_fault(VmFault& vmf) {
    Vma* vma = vmf.vma;
    File* file = vma->file;
    Inode& inode = *file->inode;
    AddressSpace& m = inode.mapping;
    PhysMem& mem = *inode.kernel.mem;
    const pgoff_t index = vmf.pgoff;
    const bool allow_retry = (vmf.flags & FAULT_FLAG_ALLOW_RETRY) && !(vmf.flags & FAULT_FLAG_TRIED);
    const bool nowait = vmf.flags & FAULT_FLAG_RETRY_NOWAIT;
    vm_fault_t ret = 0;

    // Drops the mmap_lock, keeping the file (and so the inode) alive; the
    // VMA may be gone once this returns.
    auto drop_mmap_lock = [&]() {
        file->get();
        MmStruct& mm = *vma->mm;
        vma = nullptr;
        vmf.vma = nullptr;
        mmap_read_unlock(mm);
    };

    // The VMA may be gone once the lock is dropped: what read-ahead needs of it.
    const vm_flags_t vm_flags = vma->flags;
    const pgoff_t vma_pgoff = vma->pgoff;
    const unsigned long vma_pages = vma->nr_pages();

    while (true) {
        if (index >= size_to_pages(inode.size.load())) return VM_FAULT_SIGBUS;
        Folio* folio = m.get_folio(index);
        if (folio && !(vmf.flags & FAULT_FLAG_TRIED) && folio->test(PG_readahead))
            do_async_mmap_readahead(inode, vm_flags, folio);
        if (!folio) {
            // No page: a major fault (do_sync_mmap_readahead() reads the
            // window, then __filemap_get_folio(FGP_CREAT) finds or makes the page).
            inode.kernel.vmstat.add(Vmstat::pgmajfault);
            ret = VM_FAULT_MAJOR;
            if (allow_retry) {
                Folio* f = nullptr;
                if (nowait) {
                    // Readahead is started; the lock stays held.
                    do_sync_mmap_readahead(inode, vm_flags, index, vma_pgoff, vma_pages);
                    if (!filemap_get_or_create(inode, index, CreateMode::Fault, &f)) mem.folio_put(f);
                    return ret | VM_FAULT_RETRY;
                }
                drop_mmap_lock();
                do_sync_mmap_readahead(inode, vm_flags, index, vma_pgoff, vma_pages);
                if (!filemap_get_or_create(inode, index, CreateMode::Fault, &f)) mem.folio_put(f);
                file->put();
                return ret | VM_FAULT_RETRY;
            }
            do_sync_mmap_readahead(inode, vm_flags, index, vma_pgoff, vma_pages);
            vm_fault_t r = filemap_get_or_create(inode, index, CreateMode::Fault, &folio);
            if (r) return r | ret;
        }
        // lock_folio_maybe_drop_mmap(): a locked folio (writeback, truncation,
        // migration in progress) is waited for without the mmap_lock.
        if (!folio->trylock()) {
            if (allow_retry) {
                if (nowait) {
                    mem.folio_put(folio);
                    return ret | VM_FAULT_RETRY;
                }
                drop_mmap_lock();
                folio->lock();
                folio->unlock();
                mem.folio_put(folio);
                file->put();
                return ret | VM_FAULT_RETRY;
            }
            folio->lock();
        }
        if (folio->mapping() != &m) {
            // Truncated or migrated while we looked: start over.
            folio->unlock();
            mem.folio_put(folio);
            continue;
        }
        if (index >= size_to_pages(inode.size.load())) {
            folio->unlock();
            mem.folio_put(folio);
            return VM_FAULT_SIGBUS;
        }
        folio->unlock();
        vmf.page = folio->page(index - folio->index());
        return ret;
    }
}

// filemap_page_mkwrite() / ext4_page_mkwrite(): a shared mapping's page is
// about to become writable.
vm_fault_t filemap_page_mkwrite(VmFault& vmf) {
    Inode& inode = *vmf.vma->file->inode;
    Folio* folio = page_folio(vmf.page);
    sync::ReadGuard g(inode.invalidate_lock);
    FolioLockGuard lock(folio);
    // folio_mkwrite_check_truncate(): gone from the file, or beyond EOF.
    if (folio->mapping() != &inode.mapping || folio->index() >= size_to_pages(inode.size.load()))
        return VM_FAULT_NOPAGE;
    folio_mark_dirty(folio);
    // folio_wait_stable(): no change to a page under writeback.
    sync::Backoff b(folio);
    while (folio->is_writeback()) b.pause();
    return 0;
}

class FilemapVmOps final : public VmOperations {
public:
    explicit FilemapVmOps(const char* n) : name_(n) {}
    const char* name() const override { return name_; }
    vm_fault_t fault(VmFault& vmf) const override { return filemap_fault(vmf); }
    bool has_map_pages() const override { return true; }
    vm_fault_t map_pages(VmFault& vmf, pgoff_t s, pgoff_t e) const override { return filemap_map_pages(vmf, s, e); }
    bool has_page_mkwrite() const override { return true; }
    vm_fault_t page_mkwrite(VmFault& vmf) const override { return filemap_page_mkwrite(vmf); }

private:
    const char* name_;
};

}  // namespace

const VmOperations& filemap_vm_ops(FsKind fs) {
    static const FilemapVmOps ext4("ext4_file_vm_ops");
    static const FilemapVmOps xfs("xfs_file_vm_ops");
    static const FilemapVmOps btrfs("btrfs_file_vm_ops");
    static const FilemapVmOps generic("generic_file_vm_ops");
    switch (fs) {
    case FsKind::Ext4: return ext4;
    case FsKind::Xfs: return xfs;
    case FsKind::Btrfs: return btrfs;
    default: return generic;
    }
}

}  // namespace pl
