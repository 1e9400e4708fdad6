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
        const size_t fidx = (fpos >> PAGE_SHIFT) - (d.pos >> PAGE_SHIFT);
        if (!d.pages[idx] || (fidx < d.holes.size() && d.holes[fidx])) {  // zeroed at submission
            done += n;
            continue;
        }
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
        std::erase(d->pages, nullptr);  // pages only holes landed in were never pinned
        d->pages.insert(d->pages.end(), d->again.begin(), d->again.end());
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

// tmpfs and memfd take O_DIRECT since v6.6 (shmem_file_open() sets
// FMODE_CAN_ODIRECT) but do the I/O buffered, through the page cache:
// shmem_file_read_iter() / shmem_file_write_iter() copy with
// copy_to_user()/copy_from_user(), take no pins and need no alignment. A
// fault after some progress ends the I/O short, as generic_perform_write()
// and filemap_read() do. (Also btrfs's buffered fallback for writes, below.)
long buffered_io(DioDir dir, Task& t, File& f, unsigned long addr, unsigned long len, unsigned long off) {
    len = std::min(len, kMaxRwCount);
    uint8_t buf[PAGE_SIZE];
    auto* ct = reinterpret_cast<task_struct*>(&t);
    unsigned long done = 0;
    while (done < len) {
        // One user page at a time, so that a fault ends the copy at the
        // page where it happened.
        const unsigned long n = std::min(len - done, PAGE_SIZE - ((addr + done) & ~PAGE_MASK));
        long moved = 0;
        if (dir == DioDir::Read) {
            auto r = file_pread(f, buf, n, off + done);
            if (!r) return done ? static_cast<long>(done) : -static_cast<long>(r.error().errnum);
            if (*r == 0) break;  // EOF
            moved = ::pl_write(ct, addr + done, buf, *r);
        } else {
            moved = ::pl_read(ct, addr + done, buf, n);
            if (moved > 0) {
                auto w = file_pwrite(f, buf, static_cast<uint64_t>(moved), off + done);
                if (!w) return done ? static_cast<long>(done) : -static_cast<long>(w.error().errnum);
            }
        }
        if (moved <= 0) return done ? static_cast<long>(done) : (moved ? moved : -EFAULT);
        done += static_cast<unsigned long>(moved);
        if (static_cast<unsigned long>(moved) < n) break;  // short: EOF or a fault
    }
    return static_cast<long>(done);
}

// A read whose range has holes (or unwritten extents: the model has none),
// in file order as iomap_dio_iter() walks the extents: a hole's bytes are
// zeroed in the user buffer at once by iomap_dio_hole_iter() (iov_iter_zero(),
// a copy that takes no page reference); the user pages that data blocks land
// in are pinned (iomap_dio_bio_iter()). A fault ends the walk: what was
// pinned before it still moves, and the read fails with -EFAULT.
long read_with_holes(Dio* d) {
    Task* t = current();
    static const uint8_t kZeros[PAGE_SIZE] = {};
    PinOwnerScope owner("direct_io", "iov_iter_extract_pages");
    unsigned long done = 0;
    bool fault = false, any = false;
    while (done < d->len) {
        const unsigned long ua = d->addr + done, fpos = d->pos + done;
        const unsigned long n = std::min<unsigned long>(
            {d->len - done, PAGE_SIZE - (ua & ~PAGE_MASK), PAGE_SIZE - (fpos & ~PAGE_MASK)});
        const size_t idx = (ua >> PAGE_SHIFT) - (d->addr >> PAGE_SHIFT);
        if (d->holes[(fpos >> PAGE_SHIFT) - (d->pos >> PAGE_SHIFT)]) {
            fault = ::pl_write(reinterpret_cast<task_struct*>(t), ua, kZeros, n) < 0;
        } else if (!d->pages[idx]) {
            fault = ::pin_user_pages_fast(ua & PAGE_MASK, 1, FOLL_WRITE, &d->pages[idx]) != 1;
            any = any || !fault;
        }
        if (fault) break;
        done += n;
    }
    if (!any) {  // nothing but holes (up to the fault): no bio
        const long r = fault ? -EFAULT : static_cast<long>(d->result);
        delete d;
        return r;
    }
    for (page* p : d->pages)
        if (p) ::set_page_dirty_lock(p);  // bio_set_pages_dirty()
    if (fault) {
        d->len = done;  // the bios submitted before the fault complete
        d->result = 0;
    }
    d->file->get();
    const long r = dio_complete(d);
    return fault ? -EFAULT : r;
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
    if (inode && inode->traits().shmem && !inode->traits().hugetlb && t->kernel.cfg.era == Era::current) {
        unsigned long end = 0;
        if (__builtin_add_overflow(addr, len, &end)) return -EFAULT;  // access_ok()
        AsTask as(t);
        return buffered_io(dir, *t, *f, addr, len, off);  // *inflight stays NULL: done at once
    }
    // btrfs_direct_write() falls back to a buffered write whenever the inode
    // has data checksums (the default), since user pages may change under a
    // bio whose checksum is already computed ("btrfs: always fallback to
    // buffered write if the inode requires checksum"): no pins. The range is
    // then flushed, as btrfs does before returning.
    if (dir == DioDir::Write && inode && inode->fs == FsKind::Btrfs && t->kernel.cfg.era == Era::current) {
        if (len == 0) return 0;
        unsigned long end = 0;
        if (__builtin_add_overflow(addr, len, &end)) return -EFAULT;  // access_ok()
        AsTask as(t);
        const long r = buffered_io(DioDir::Write, *t, *f, addr, len, off);
        if (r > 0) (void)file_fsync(*f);
        return r;
    }
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
        // iomap_dio_iter(): the extents of a read as they are now, flushed.
        if (dir == DioDir::Read && k.cfg.era > Era::v6_0)
            for (pgoff_t i = first_index(off); i <= last_index(off, len); i++)
                d->holes.push_back(!inode->disk.has_block(i));
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
    // A read over holes runs to completion at once, `inflight` or not (see FIDELITY).
    if (std::find(d->holes.begin(), d->holes.end(), true) != d->holes.end()) return read_with_holes(d);
    // iomap_iter() hands iomap_dio_bio_iter() one extent at a time, and each
    // extent gets bios of its own whose bio_iov_iter_get_pages() extracts
    // (pins) that extent's part of the buffer in a call of its own. A write
    // sees runs of allocated blocks and holes (ext4_iomap_begin() allocates
    // a hole's blocks for that hole only), so a write across a boundary pins
    // each side separately: GUP-fast grabs (and for an unshare, drops) again
    // per extent, and a page straddling the boundary is pinned twice. A read
    // has no holes here (read_with_holes() took those): one extent.
    long got = 0;
    {
        PinOwnerScope owner("direct_io", d->pinned ? "iov_iter_extract_pages" : "iov_iter_get_pages");
        const unsigned flags = dir == DioDir::Read ? FOLL_WRITE : 0;
        const pgoff_t final = last_index(off, len);
        unsigned long done = 0;  // bytes whose pages are extracted
        while (done < len) {
            const pgoff_t first = first_index(off + done);
            pgoff_t last = final;
            if (dir == DioDir::Write) {
                const bool mapped = inode->disk.has_block(first);
                for (pgoff_t i = first + 1; i <= final; i++)
                    if (inode->disk.has_block(i) != mapped) {
                        last = i - 1;
                        break;
                    }
            }
            const unsigned long run = std::min(off + len, (last + 1) << PAGE_SHIFT) - (off + done);
            const unsigned long ua = addr + done;
            const size_t idx = first_index(ua) - first_index(addr);
            const int n = static_cast<int>(last_index(ua, run) - first_index(ua) + 1);
            std::vector<page*> pages(static_cast<size_t>(n), nullptr);
            got = d->pinned ? ::pin_user_pages_fast(ua & PAGE_MASK, n, flags, pages.data())
                            : ::get_user_pages_fast(ua & PAGE_MASK, n, flags, pages.data());
            for (long i = 0; i < got; i++) {
                page*& slot = d->pages[idx + static_cast<size_t>(i)];
                if (slot) d->again.push_back(pages[static_cast<size_t>(i)]);
                else slot = pages[static_cast<size_t>(i)];
            }
            if (got < n) {
                if (got > 0) done += std::min(run, static_cast<unsigned long>(got) * PAGE_SIZE - (ua & ~PAGE_MASK));
                break;
            }
            done += run;
        }
        if (done < len) {
            // iomap_dio_bio_iter() submitted bios for what it could pin and
            // fails on the next extraction: the I/O returns the error, but
            // the first part's data has moved (read: into memory; write:
            // onto the disk, i_size unchanged).
            if (done > 0) {
                d->len = done;
                sync::WriteGuard g(inode->i_rwsem);
                dma_transfer(*d);
            }
            // bio_release_pages(): a read's pages hold data now, so dirty.
            const bool dirty = done > 0 && dir == DioDir::Read;
            std::erase(d->pages, nullptr);
            d->pages.insert(d->pages.end(), d->again.begin(), d->again.end());
            if (d->pinned) {
                ::unpin_user_pages_dirty_lock(d->pages.data(), d->pages.size(), dirty);
            } else {
                for (page* p : d->pages) {
                    if (dirty) ::set_page_dirty_lock(p);
                    ::put_page(p);
                }
            }
            if (got >= 0) got = -EFAULT;
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
