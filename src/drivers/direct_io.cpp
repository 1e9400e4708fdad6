// pinlab — O_DIRECT reads and writes (fs/iomap/direct-io.c __iomap_dio_rw(),
// iomap_dio_bio_iter(), iomap_dio_complete(); block/bio.c
// bio_iov_iter_get_pages(), bio_set_pages_dirty(), bio_release_pages();
// lib/iov_iter.c iov_iter_extract_pages(); mm/filemap.c
// kiocb_write_and_wait(), kiocb_invalidate_pages(),
// kiocb_invalidate_post_direct_write(); mm/truncate.c
// invalidate_inode_pages2_range()). The "device" moves the data between the
// pinned user pages and the disk (the inode's backing store) when the I/O
// completes, so that callers can act on the buffer while it is in flight.
#include "base/handle_registry.h"
#include "drivers/direct_io.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <string>

#include "base/config.h"
#include "debug/pin_tracker.h"
#include "fs/file.h"
#include "fs/fs.h"
#include "fs/inode.h"
#include "gup/foll_flags.h"
#include "kapi/kapi_internal.h"
#include "kernel/kernel.h"
#include "kernel/task.h"
#include "mm/folio.h"
#include "mm/internal.h"
#include "mm/physmem.h"
#include "pinlab/kapi.h"

using namespace pl;

namespace {

// MAX_RW_COUNT: rw_verify_area() clamps every read/write to this.
constexpr unsigned long kMaxRwCount = INT_MAX & PAGE_MASK;

HandleRegistry<Dio>& registry() {
    static HandleRegistry<Dio> r;
    return r;
}

// invalidate_inode_pages2_range(): every folio of [first, last] leaves the
// page cache, mapped or pinned (the refcount is ignored: a pinned folio lives
// on outside the cache). A folio dirtied again since the flush cannot be
// dropped (the disk file systems have no ->launder_folio), nor one frozen by
// migration right now: -EBUSY.
int invalidate_range(Inode& inode, pgoff_t first, pgoff_t last) {
    AddressSpace& m = inode.mapping;
    if (m.nrpages.load() == 0) return 0;
    int ret = 0;
    std::vector<Folio*> batch;
    {
        sync::SpinGuard g(m.i_pages_lock);
        auto it = m.i_pages.upper_bound(first);
        if (it != m.i_pages.begin()) {
            auto prev = std::prev(it);
            if (prev->first + prev->second->nr_pages() > first) it = prev;  // a large folio covering `first`
        }
        for (; it != m.i_pages.end() && it->first <= last; ++it) {
            if (it->second->ref_try_add(1)) batch.push_back(it->second);
            else ret = -EBUSY;
        }
    }
    // Zap the whole range in one go before locking the folios.
    if (std::any_of(batch.begin(), batch.end(), [](Folio* f) { return f->mapped(); }))
        unmap_mapping_range(m, first, last - first + 1, /*even_cows=*/false);
    PhysMem& mem = *inode.kernel.mem;
    for (Folio* folio : batch) {
        {
            FolioLockGuard lock(folio);
            if (folio->mapping() == &m) {
                if (folio->mapped()) (void)try_to_unmap(folio);  // faulted in again meanwhile
                if (folio->is_dirty()) ret = -EBUSY;
                else m.delete_folio(folio);
            }
        }
        mem.folio_put(folio);
    }
    return ret;
}

pgoff_t first_index(unsigned long pos) { return pos >> PAGE_SHIFT; }
pgoff_t last_index(unsigned long pos, unsigned long len) { return (pos + len - 1) >> PAGE_SHIFT; }

// The bio's data transfer: the disk's blocks into the pinned pages (read) or
// the pinned pages' bytes onto the disk (write), as a DMA engine would see
// them now.
void dma_transfer(Dio& d) {
    Inode& inode = *d.file->inode;
    PhysMem& mem = *d.kernel->mem;
    uint8_t block[PAGE_SIZE];
    unsigned long done = 0;
    while (done < d.len) {
        const unsigned long ua = d.addr + done, fpos = d.pos + done;
        const unsigned uoff = static_cast<unsigned>(ua & ~PAGE_MASK), foff = static_cast<unsigned>(fpos & ~PAGE_MASK);
        const unsigned n = static_cast<unsigned>(
            std::min<unsigned long>({d.len - done, PAGE_SIZE - uoff, PAGE_SIZE - foff}));
        const size_t idx = (ua >> PAGE_SHIFT) - (d.addr >> PAGE_SHIFT);
        const pfn_t pfn = mem.page_to_pfn(reinterpret_cast<Page*>(d.pages[idx]));
        inode.disk.read_page(fpos >> PAGE_SHIFT, block);
        if (d.dir == DioDir::Read) {
            (void)mem.write_frame(pfn, uoff, block + foff, n);
        } else {
            (void)mem.read_frame(pfn, uoff, block + foff, n);
            inode.disk.write_page(fpos >> PAGE_SHIFT, block);
        }
        done += n;
    }
}

// iomap_dio_bio_end_io() + iomap_dio_complete(): the device runs, the pages
// are released (bio_release_pages(): dirtied again for a read, whose data
// the pages now hold), a write extends i_size and drops what the page cache
// picked up of the range meanwhile.
long dio_complete(Dio* d) {
    Inode& inode = *d->file->inode;
    {
        sync::WriteGuard g(inode.i_rwsem);
        dma_transfer(*d);
        if (d->dir == DioDir::Write) {
            if (d->pos + d->len > inode.size.load()) inode.size.store(d->pos + d->len);
            // kiocb_invalidate_post_direct_write() → dio_warn_stale_pagecache()
            if (invalidate_range(inode, first_index(d->pos), last_index(d->pos, d->len)))
                d->kernel->warn("iomap_dio_complete",
                                "Page cache invalidation failure on direct I/O. Possible data corruption due to "
                                "collision with buffered I/O!");
        }
    }
    {
        PinOwnerScope owner("direct_io", "bio_release_pages");
        if (d->pinned) {
            ::unpin_user_pages_dirty_lock(d->pages.data(), d->pages.size(), d->dir == DioDir::Read);
        } else {
            // Before v6.3: set_page_dirty_lock() + put_page() of GET references.
            for (page* p : d->pages) {
                if (d->dir == DioDir::Read) ::set_page_dirty_lock(p);
                ::put_page(p);
            }
        }
    }
    const long ret = static_cast<long>(d->result);
    d->file->put();
    delete d;
    return ret;
}

// ext4/xfs fall back to a buffered write when the page cache of the range
// cannot be invalidated (__iomap_dio_rw() returns -ENOTBLK): the user's bytes
// are copied as write() would copy them.
long buffered_fallback(Task& t, File& f, unsigned long addr, unsigned long len, unsigned long off) {
    std::vector<uint8_t> buf(len);
    long r = ::pl_read(reinterpret_cast<task_struct*>(&t), addr, buf.data(), len);
    if (r < 0) return r;
    auto w = file_pwrite(f, buf.data(), len, off);
    return w ? static_cast<long>(*w) : -static_cast<long>(w.error().errnum);
}

long dio_submit(DioDir dir, task_struct* ct, pl_file* cf, unsigned long addr, unsigned long len, unsigned long off,
                pl_dio** inflight, const char* fn) {
    if (inflight) *inflight = nullptr;
    Task* t = reinterpret_cast<Task*>(ct);
    if (!t || !t->mm) {
        kapi_set_error(std::string(fn) + ": invalid argument 't'");
        return -EINVAL;
    }
    if (!cf) return -EBADF;
    File* f = reinterpret_cast<File*>(cf);
    Inode* inode = f->inode;
    // open(O_DIRECT) needs ->direct_IO: the model's disk file systems only.
    if (!inode || !inode->traits().writeback || inode->traits().dax) {
        kapi_set_error(std::string(fn) + ": -EINVAL: O_DIRECT is modelled on ext4, xfs and btrfs files only");
        return -EINVAL;
    }
    // iomap_dio_bio_iter(): position, length and buffer aligned to the
    // logical block size (bdev_iter_is_aligned() for the memory side).
    if ((addr | len | off) & (kDioBlockSize - 1)) return -EINVAL;
    if (len == 0) return 0;
    len = std::min(len, kMaxRwCount);
    unsigned long end = 0;
    if (__builtin_add_overflow(off, len, &end) || end > (1UL << 62)) return -EINVAL;  // MAX_LFS_FILESIZE
    if (__builtin_add_overflow(addr, len, &end)) return -EFAULT;                      // access_ok()

    Kernel& k = t->kernel;
    AsTask as(t);
    auto* d = new Dio;
    {
        sync::WriteGuard g(inode->i_rwsem);
        d->result = len;
        if (dir == DioDir::Read) {
            const uint64_t size = inode->size.load();
            if (off >= size) {
                delete d;
                return 0;
            }
            d->result = std::min<uint64_t>(len, size - off);  // dio->i_size: clamped at completion
        }
        // kiocb_write_and_wait() (read) / kiocb_invalidate_pages() (write).
        (void)file_fsync(*f);
        if (dir == DioDir::Write && invalidate_range(*inode, first_index(off), last_index(off, len))) {
            delete d;
            d = nullptr;
        }
    }
    if (!d) return -ENOTBLK;  // the caller falls back to a buffered write
    d->kernel = &k;
    d->file = f;
    d->dir = dir;
    d->addr = addr;
    d->len = len;
    d->pos = off;
    // iov_iter_extract_pages() of a user-backed iter (v6.3 on): FOLL_PIN
    // through pin_user_pages_fast(), FOLL_WRITE when the I/O stores into
    // memory. Before, iov_iter_get_pages() took plain GET references with
    // get_user_pages_fast(), which fork() and COW know nothing about.
    d->pinned = k.cfg.era > Era::v6_0;
    const unsigned long nr = last_index(addr, len) - first_index(addr) + 1;
    d->pages.assign(nr, nullptr);
    long got = 0;
    {
        PinOwnerScope owner("direct_io", d->pinned ? "iov_iter_extract_pages" : "iov_iter_get_pages");
        const unsigned flags = dir == DioDir::Read ? FOLL_WRITE : 0;
        const int n = static_cast<int>(nr);
        got = d->pinned ? ::pin_user_pages_fast(addr & PAGE_MASK, n, flags, d->pages.data())
                        : ::get_user_pages_fast(addr & PAGE_MASK, n, flags, d->pages.data());
        if (got >= 0 && static_cast<unsigned long>(got) < nr) {
            // See FIDELITY: the first extent is not submitted alone.
            if (d->pinned) {
                ::unpin_user_pages(d->pages.data(), static_cast<unsigned long>(got));
            } else {
                for (long i = 0; i < got; i++) ::put_page(d->pages[static_cast<size_t>(i)]);
            }
            got = -EFAULT;
        }
    }
    if (got < 0) {
        delete d;
        return got;
    }
    // bio_set_pages_dirty(): a read's pages are dirtied before submission.
    if (dir == DioDir::Read)
        for (page* p : d->pages) ::set_page_dirty_lock(p);
    f->get();
    if (!inflight) return dio_complete(d);
    registry().add(d);
    *inflight = reinterpret_cast<pl_dio*>(d);
    return static_cast<long>(d->result);
}

}  // namespace

extern "C" {

long pl_direct_read(task_struct* t, pl_file* f, unsigned long addr, unsigned long len, unsigned long off,
                    pl_dio** inflight) {
    return dio_submit(DioDir::Read, t, f, addr, len, off, inflight, "pl_direct_read");
}

long pl_direct_write(task_struct* t, pl_file* f, unsigned long addr, unsigned long len, unsigned long off,
                     pl_dio** inflight) {
    long r = dio_submit(DioDir::Write, t, f, addr, len, off, inflight, "pl_direct_write");
    if (r == -ENOTBLK) return buffered_fallback(*reinterpret_cast<Task*>(t), *reinterpret_cast<File*>(f), addr, len, off);
    return r;
}

long pl_dio_complete(pl_dio* dio) {
    Dio* d = reinterpret_cast<Dio*>(dio);
    if (!registry().remove(d)) {
        kapi_set_error("pl_dio_complete: invalid argument 'dio'");
        return -EINVAL;
    }
    return dio_complete(d);
}

}  // extern "C"
