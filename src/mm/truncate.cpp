// pinlab — truncation and hole punching (upstream mm/truncate.c, with the
// file systems' setattr/fallocate around it: ext4_setattr, ext4_punch_hole,
// shmem_setattr, shmem_fallocate, hugetlbfs_setattr, hugetlbfs_punch_hole,
// secretmem_setattr).
//
// Lock order: i_rwsem → invalidate_lock → (unmap: i_mmap_rwsem →
// page_table_lock) → folio lock → i_mmap_rwsem → i_pages_lock.
#include <algorithm>
#include <cstring>
#include <vector>

#include "debug/pin_tracker.h"
#include "fs/fs.h"
#include "fs/fs_internal.h"
#include "fs/inode.h"
#include "mm/internal.h"

namespace pl {

namespace {

constexpr pgoff_t kEnd = ~pgoff_t{0};
const uint8_t kZeros[PAGE_SIZE] = {};

bool is_disk(const Inode& inode) { return inode.traits().writeback && !inode.traits().dax; }

// truncate_inode_folio(): the folio leaves the page cache. Mappings that
// appeared after the caller's unmap_mapping_range() are zapped first
// (truncate_cleanup_folio); a pinned folio stays alive through its pins but
// no longer belongs to the file. Caller holds a reference.
void truncate_folio(Inode& inode, Folio* folio) {
    FolioLockGuard lock(folio);
    if (folio->mapping() != &inode.mapping) return;
    if (folio->mapped()) (void)try_to_unmap(folio);
    inode.mapping.delete_folio(folio);
    // A pin holder (O_DIRECT, RDMA, io_uring) now writes to a page no file
    // will ever read again: legal, and worth a report (debug/pin_tracker).
    if (folio->maybe_dma_pinned())
        (void)pin_track_moved(inode.kernel, folio, nullptr, "truncate_inode_pages_range", "truncated out of its file");
}

// Removes the folios that start in [first, last) (page indices).
void remove_range(Inode& inode, pgoff_t first, pgoff_t last) {
    AddressSpace& m = inode.mapping;
    PhysMem& mem = *inode.kernel.mem;
    sync::Backoff backoff(&m);
    while (true) {
        std::vector<Folio*> batch;  // find_lock_entries()
        bool busy = false;
        {
            sync::SpinGuard g(m.i_pages_lock);
            for (auto it = m.i_pages.lower_bound(first); it != m.i_pages.end() && it->first < last; ++it) {
                if (it->second->ref_try_add(1)) batch.push_back(it->second);
                else busy = true;  // frozen by migration: look again
                if (batch.size() >= 64) break;
            }
        }
        if (batch.empty()) {
            if (!busy) return;
            backoff.pause();
            continue;
        }
        for (Folio* folio : batch) {
            truncate_folio(inode, folio);
            mem.folio_put(folio);
        }
    }
}

// Writes zeros over bytes [from, to) of the page at `index` of `folio`.
void zero_in_page(PhysMem& mem, Page* page, unsigned from, unsigned to) {
    if (to > from) (void)mem.write_frame(mem.page_to_pfn(page), from, kZeros, to - from);
}

// truncate_inode_partial_folio() / ext4_block_zero_page_range(): zeroes
// bytes [from, to) of page `index`. Disk file systems bring the block into
// the page cache to do it (and dirty it); shmem zeroes only a cached page
// (a hole reads zero anyway); fsdax zeroes the block in place. Caller holds
// invalidate_lock for write.
void zero_partial_page(Inode& inode, pgoff_t index, unsigned from, unsigned to) {
    if (to <= from) return;
    PhysMem& mem = *inode.kernel.mem;
    const FsTraits& t = inode.traits();
    if (t.dax) {
        dax_zero_range(inode, (index << PAGE_SHIFT) + from, (index << PAGE_SHIFT) + to);
        return;
    }
    Folio* folio = inode.mapping.get_folio(index);
    if (!folio && is_disk(inode) && inode.disk.has_block(index)) {
        if (filemap_get_or_create(inode, index, CreateMode::Locked, &folio)) folio = nullptr;
    }
    if (!folio) return;
    {
        FolioLockGuard lock(folio);
        if (folio->mapping() == &inode.mapping) {
            zero_in_page(mem, folio->head(), from, to);
            if (is_disk(inode)) folio_mark_dirty(folio);
        }
    }
    mem.folio_put(folio);
}

// Zeroes bytes [from, to) in the hugetlb folios of the cache
// (hugetlbfs_zero_partial_page()).
void hugetlb_zero_range(Inode& inode, uint64_t from, uint64_t to) {
    PhysMem& mem = *inode.kernel.mem;
    while (from < to) {
        pgoff_t index = from >> PAGE_SHIFT;
        unsigned poff = static_cast<unsigned>(from & ~PAGE_MASK);
        unsigned n = static_cast<unsigned>(std::min<uint64_t>(PAGE_SIZE - poff, to - from));
        pgoff_t first = 0;
        if (Folio* folio = mapping_get_folio(inode.mapping, index, &first)) {
            zero_in_page(mem, folio->page(index - first), poff, poff + n);
            mem.folio_put(folio);
        }
        from += n;
    }
}

// The blocks of [first, last) go back to the file system.
void punch_blocks(Inode& inode, pgoff_t first, pgoff_t last) {
    if (last <= first) return;
    if (inode.traits().dax) dax_free_blocks(inode, first, last);
    else if (is_disk(inode)) inode.disk.punch(first, last - 1);
}

Status punch_hole(Inode& inode, uint64_t off, uint64_t len) {
    AddressSpace& m = inode.mapping;
    uint64_t end = off + len;
    sync::WriteGuard g1(inode.i_rwsem);
    sync::WriteGuard g2(inode.invalidate_lock);
    if (inode.traits().hugetlb) {
        // hugetlbfs_punch_hole(): whole huge pages go, the partial ones at
        // the edges are zeroed.
        uint64_t hs = inode.page_size();
        uint64_t hole_start = (off + hs - 1) / hs * hs;
        uint64_t hole_end = end / hs * hs;
        if (hole_start >= hole_end) {
            hugetlb_zero_range(inode, off, end);
            return ok_status();
        }
        hugetlb_zero_range(inode, off, hole_start);
        hugetlb_zero_range(inode, hole_end, end);
        hugetlbfs_truncate_range(inode, hole_start >> PAGE_SHIFT, hole_end >> PAGE_SHIFT);
        return ok_status();
    }
    // Nothing lies beyond the page holding EOF.
    uint64_t limit = page_align_up(inode.size.load());
    if (off >= limit) return ok_status();
    end = std::min(end, limit);
    pgoff_t first = size_to_pages(off);  // first whole page of the hole
    pgoff_t last = end >> PAGE_SHIFT;    // one past the last whole page
    // truncate_pagecache_range(): private COW copies stay (even_cows = false).
    if (last > first) unmap_mapping_range(m, first, last - first, /*even_cows=*/false);
    if (first > last) {
        // The hole lies inside one page.
        zero_partial_page(inode, off >> PAGE_SHIFT, static_cast<unsigned>(off & ~PAGE_MASK),
                          static_cast<unsigned>(end - (off & PAGE_MASK)));
    } else {
        if (off & ~PAGE_MASK)
            zero_partial_page(inode, off >> PAGE_SHIFT, static_cast<unsigned>(off & ~PAGE_MASK), PAGE_SIZE);
        if (end & ~PAGE_MASK) zero_partial_page(inode, end >> PAGE_SHIFT, 0, static_cast<unsigned>(end & ~PAGE_MASK));
    }
    if (last > first) {
        remove_range(inode, first, last);
        punch_blocks(inode, first, last);
    }
    return ok_status();
}

}  // namespace

Status inode_truncate(Inode& inode, uint64_t newsize) {
    const FsTraits& t = inode.traits();
    AddressSpace& m = inode.mapping;
    if (newsize > MAX_FILE_SIZE) return Error(EFBIG);
    // hugetlbfs_setattr(): sizes are whole huge pages.
    if (t.hugetlb && newsize % inode.page_size()) return Error(EINVAL);
    sync::WriteGuard g1(inode.i_rwsem);
    if (t.secretmem) {
        // secretmem_setattr(): the size is fixed once a page exists.
        if (m.nrpages.load()) return Error(EINVAL);
        inode.size.store(newsize);
        return ok_status();
    }
    sync::WriteGuard g2(inode.invalidate_lock);
    uint64_t old = inode.size.load();
    // i_size_write() first: faults and reads that raced see the new EOF
    // once they take invalidate_lock or recheck the size.
    inode.size.store(newsize);
    if (newsize >= old) return ok_status();
    if (t.hugetlb) {
        // hugetlb_vmtruncate(): unmaps and removes the huge pages.
        hugetlbfs_truncate_range(inode, newsize >> PAGE_SHIFT, kEnd);
        return ok_status();
    }
    pgoff_t first = size_to_pages(newsize);
    // truncate_pagecache(): unmap (private COWs too), drop the folios, zero
    // the tail of the partial page, unmap again for COWs made meanwhile.
    unmap_mapping_range(m, first, 0, /*even_cows=*/true);
    remove_range(inode, first, kEnd);
    if (newsize & ~PAGE_MASK)
        zero_partial_page(inode, newsize >> PAGE_SHIFT, static_cast<unsigned>(newsize & ~PAGE_MASK), PAGE_SIZE);
    unmap_mapping_range(m, first, 0, /*even_cows=*/true);
    // The file system frees the blocks beyond EOF.
    punch_blocks(inode, first, kEnd);
    return ok_status();
}

Status inode_fallocate(Inode& inode, int mode, uint64_t off, uint64_t len) {
    const FsTraits& t = inode.traits();
    // vfs_fallocate() checks.
    if (len == 0) return Error(EINVAL);
    if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) return Error(EOPNOTSUPP);
    if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE)) return Error(EOPNOTSUPP);
    if (off >= MAX_FILE_SIZE || len > MAX_FILE_SIZE - off) return Error(EFBIG);
    if (t.secretmem) return Error(EOPNOTSUPP);  // no ->fallocate
    if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) return punch_hole(inode, off, len);
    if (mode != 0) return Error(EOPNOTSUPP);  // preallocation with KEEP_SIZE is not modelled
    if (t.hugetlb) {
        // hugetlbfs_fallocate() takes the inode lock itself.
        PL_TRY(hugetlbfs_fallocate(inode, off, len));
        sync::WriteGuard g(inode.i_rwsem);
        if (off + len > inode.size.load()) inode.size.store(off + len);
        return ok_status();
    }
    sync::WriteGuard g(inode.i_rwsem);
    // shmem preallocates pages; disk file systems and fsdax reserve blocks,
    // which the model does not track (blocks appear on write).
    if (t.shmem) PL_TRY(shmem_fallocate(inode, off, len));
    if (off + len > inode.size.load()) inode.size.store(off + len);
    return ok_status();
}

// truncate_inode_pages_final(). hugetlbfs evicts its pages (and gives back
// their reservations) in its ->release, before the inode goes; whatever is
// left is removed here.
void truncate_inode_pages_final(Inode& inode) { remove_range(inode, 0, kEnd); }

}  // namespace pl
