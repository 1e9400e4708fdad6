// pinlab — dirty folios and their writeback (upstream mm/page-writeback.c).
//
// Dirty accounting: for a folio in the page cache of a mapping that can write
// back (disk file systems), PG_dirty and the nr_dirty count change together
// under the mapping's i_pages_lock, while the folio belongs to the mapping.
// shmem, hugetlb, secretmem and fsdax use noop_dirty_folio(): the flag only.
// A folio that left the page cache (truncated while pinned) gets the flag
// only, as upstream's folio_mark_dirty() on a folio without a mapping.
#include <vector>

#include "fs/fs_internal.h"
#include "fs/inode.h"
#include "kernel/kernel.h"
#include "mm/internal.h"

namespace pl {

namespace {

bool accounts_dirty(const AddressSpace* m) { return m && m->can_writeback() && !m->host.traits().dax; }

}  // namespace

void folio_mark_dirty(Folio* folio) {
    AddressSpace* m = folio->mapping();  // null for anonymous folios and truncated ones
    if (!accounts_dirty(m)) {
        if (!folio->is_dirty()) folio->set(PG_dirty);
        return;
    }
    if (folio->is_dirty()) return;
    bool newly_dirty = false;
    {
        sync::SpinGuard g(m->i_pages_lock);
        if (folio->mapping() == m) newly_dirty = !folio->test_and_set(PG_dirty);
        else folio->set(PG_dirty);  // truncated meanwhile
    }
    if (newly_dirty) m->host.kernel.vmstat.add(Vmstat::nr_dirty, static_cast<int64_t>(folio->nr_pages()));
}

bool folio_clear_dirty_accounted(Folio* folio) {
    AddressSpace* m = folio->mapping();
    if (!accounts_dirty(m)) return folio->test_and_clear(PG_dirty);
    bool was_dirty, account;
    {
        sync::SpinGuard g(m->i_pages_lock);
        was_dirty = folio->test_and_clear(PG_dirty);
        account = was_dirty && folio->mapping() == m;
    }
    if (account) m->host.kernel.vmstat.add(Vmstat::nr_dirty, -static_cast<int64_t>(folio->nr_pages()));
    return was_dirty;
}

// write_cache_pages() → folio_clear_dirty_for_io() → ->writepage for one
// folio. The folio is written whether or not someone holds a pin on it:
// a device may still be writing into it (DMA) after it was cleaned, and the
// next write through a user mapping faults (page_mkwrite) only because
// folio_mkclean() write-protected it.
void writeback_folio(Inode& inode, Folio* folio) {
    if (!inode.traits().writeback || inode.traits().dax) return;
    Kernel& k = inode.kernel;
    PhysMem& mem = *k.mem;
    FolioLockGuard lock(folio);
    if (folio->mapping() != &inode.mapping) return;  // truncated
    if (!folio->is_dirty()) return;
    // folio_clear_dirty_for_io(): write-protect the shared mappings first, so
    // that a write after this point dirties the folio again.
    if (folio_mkclean(folio)) folio_mark_dirty(folio);
    if (!folio_clear_dirty_accounted(folio)) return;
    const auto nr = static_cast<int64_t>(folio->nr_pages());
    // folio_start_writeback()
    folio->set(PG_writeback);
    k.vmstat.add(Vmstat::nr_writeback, nr);
    uint8_t buf[PAGE_SIZE];
    pgoff_t index = folio->index();
    for (unsigned long i = 0; i < folio->nr_pages(); ++i) {
        (void)mem.read_frame(mem.page_to_pfn(folio->page(i)), 0, buf, PAGE_SIZE);
        inode.disk.write_page(index + i, buf);
    }
    // folio_end_writeback(): the "I/O" completed synchronously.
    folio->clear(PG_writeback);
    k.vmstat.add(Vmstat::nr_writeback, -nr);
    k.vmstat.add(Vmstat::nr_written, nr);
}

// filemap_write_and_wait_range() over the whole file.
Status filemap_write_and_wait(Inode& inode) {
    if (!inode.traits().writeback || inode.traits().dax) return ok_status();
    AddressSpace& m = inode.mapping;
    PhysMem& mem = *inode.kernel.mem;
    std::vector<Folio*> dirty;  // the PAGECACHE_TAG_DIRTY walk
    {
        sync::SpinGuard g(m.i_pages_lock);
        for (auto& [index, folio] : m.i_pages)
            if (folio->is_dirty() && folio->ref_try_add(1)) dirty.push_back(folio);
    }
    for (Folio* folio : dirty) {
        writeback_folio(inode, folio);
        mem.folio_put(folio);
    }
    return ok_status();
}

}  // namespace pl
