// pinlab — read fault-around (upstream do_fault_around()/should_fault_around()
// in mm/memory.c; filemap_map_pages(), next_uptodate_folio() and
// filemap_map_folio_range() in mm/filemap.c).
#include "mm/fault_around.h"

#include <algorithm>
#include <bit>
#include <string>

#include "debug/trace.h"
#include "fs/file.h"
#include "fs/fs_internal.h"
#include "fs/inode.h"
#include "mm/internal.h"

namespace pl {

unsigned long fault_around_pages(const Config& cfg) {
    const uint64_t pages = std::min<uint64_t>(cfg.fault_around_bytes >> PAGE_SHIFT, PTRS_PER_TABLE);
    return pages ? static_cast<unsigned long>(std::bit_floor(pages)) : 1UL;
}

bool should_fault_around(const Vma& vma) {
    // No ->map_pages (hugetlbfs, DAX, secretmem, drivers): nothing to map around.
    if (!vma.ops || !vma.ops->has_map_pages()) return false;
    // uffd_disable_fault_around(): userfaultfd must see each fault of a
    // write-protected range (the model has no VM_UFFD_MINOR).
    if (vma.flags & VM_UFFD_WP) return false;
    // One page is no "around" at all.
    return fault_around_pages(kernel_of(vma).cfg) > 1;
}

vm_fault_t do_fault_around(VmFault& vmf) {
    Vma& vma = *vmf.vma;
    const pgoff_t nr = fault_around_pages(kernel_of(vma).cfg);
    // Offsets within the page table of the faulting address, and of the
    // address within the VMA, in pages.
    const pgoff_t pte_off = (vmf.address >> PAGE_SHIFT) & (PTRS_PER_TABLE - 1);
    const pgoff_t vma_off = vmf.pgoff - vma.pgoff;
    // Start: aligned down to the window, but not before the VMA's start nor
    // the table's first entry.
    const pgoff_t from = std::max<pgoff_t>(pte_off & ~(nr - 1), pte_off - std::min(pte_off, vma_off));
    // End (inclusive): the window, the table and the VMA, whichever ends first.
    const pgoff_t to =
        std::min({from + nr, static_cast<pgoff_t>(PTRS_PER_TABLE), pte_off + vma.nr_pages() - vma_off}) - 1;
    return vma.ops->map_pages(vmf, vmf.pgoff + from - pte_off, vmf.pgoff + to - pte_off);
}

namespace {

// next_uptodate_folio(): the next folio of the cache at or after *index (up
// to end) that may be mapped now, returned referenced and locked, with
// *index moved to the first of its pages in range. Frozen folios (migration,
// split), locked ones (I/O, truncation, migration), !uptodate ones and those
// that left the file or now lie beyond EOF are passed over: their own
// fault will deal with them.
Folio* next_uptodate_folio(AddressSpace& m, pgoff_t* index, pgoff_t end) {
    PhysMem& mem = *m.host.kernel.mem;
    while (*index <= end) {
        Folio* folio = nullptr;
        pgoff_t first = 0, next = 0;
        {
            sync::SpinGuard g(m.i_pages_lock);
            auto it = m.i_pages.upper_bound(*index);
            if (it != m.i_pages.begin()) {
                auto prev = std::prev(it);
                if (*index - prev->first < prev->second->nr_pages()) it = prev;
            }
            if (it == m.i_pages.end() || it->first > end) return nullptr;
            first = it->first;
            next = first + it->second->nr_pages();
            if (it->second->ref_try_add(1)) folio = it->second;
        }
        *index = std::max(*index, first);
        if (folio) {
            // A PG_readahead folio is left to its own fault, which starts the
            // next read-ahead (do_async_mmap_readahead()).
            if (!folio->is_locked() && folio->test(PG_uptodate) && !folio->test(PG_readahead) &&
                folio->trylock()) {
                // Under the folio lock: still this file's, and inside i_size.
                if (folio->mapping() == &m && folio->test(PG_uptodate) &&
                    *index < size_to_pages(m.host.size.load()))
                    return folio;
                folio->unlock();
            }
            mem.folio_put(folio);
        }
        *index = next;
    }
    return nullptr;
}

}  // namespace

vm_fault_t filemap_map_pages(VmFault& vmf, pgoff_t start_pgoff, pgoff_t end_pgoff) {
    Vma& vma = *vmf.vma;
    Inode& inode = *vma.file->inode;
    AddressSpace& m = inode.mapping;
    PhysMem& mem = *inode.kernel.mem;
    MmStruct& mm = *vma.mm;
    // Clip to EOF first (next_uptodate_folio() checks again under the folio
    // lock, against a racing truncation). An empty file has nothing to map.
    const pgoff_t max_idx = size_to_pages(inode.size.load());
    if (max_idx == 0) return 0;
    const pgoff_t file_end = max_idx - 1;
    end_pgoff = std::min(end_pgoff, file_end);

    vm_fault_t ret = 0;
    unsigned long total = 0;
    {
        // pte_offset_map_lock(): the whole window sits in one page table,
        // mapped under one hold of its lock.
        sync::SpinGuard g(mm.page_table_lock);
        pgoff_t index = start_pgoff;
        while (Folio* folio = next_uptodate_folio(m, &index, end_pgoff)) {
            const pgoff_t first = folio->index();
            const unsigned long nr = folio->nr_pages();
            pgoff_t from = index, last = std::min<pgoff_t>(first + nr - 1, end_pgoff);
            // filemap_map_folio_range(): a large folio is mapped whole when it
            // lies inside EOF (shmem: always), the VMA and one page table.
            if (folio->is_large() && first >= vma.pgoff && first + nr <= vma.pgoff + vma.nr_pages()) {
                const vaddr_t a0 = vma.addr_of(first);
                if ((file_end >= first + nr || inode.traits().shmem) &&
                    (a0 & PMD_MASK) == ((a0 + nr * PAGE_SIZE - 1) & PMD_MASK)) {
                    from = first;
                    last = first + nr - 1;
                }
            }
            unsigned long mapped = 0;
            for (pgoff_t i = from; i <= last; ++i) {
                Page* page = folio->page(i - first);
                if (PageHWPoison(page)) continue;
                const vaddr_t addr = vma.addr_of(i);
                pte::entry_t* slot = mm.pgtable.pte_slot(addr, /*alloc=*/false);
                // Mapped already, or a marker: left to that address's own fault.
                if (!slot || !pte::none(sync::load(*slot))) continue;
                // set_pte_range() of a read fault: vm_page_prot, so read-only
                // wherever a write must fault first (COW, page_mkwrite, dirty
                // accounting); the page-cache page itself, even in a private
                // mapping.
                pte::entry_t e = pte::mk(mem.page_to_pfn(page), vma.page_prot() | pte::YOUNG);
                if (pte::write(e) && folio->is_dirty()) e = pte::mkdirty(e);
                folio_add_file_rmap(folio, page, 1, vma, RmapLevel::Pte);
                account_rss(vma, folio, 1);
                // The lookup's reference becomes the first PTE's; each further
                // PTE takes its own.
                if (mapped++) folio->ref_add(1);
                sync::store(*slot, e);
                if (addr == vmf.address) ret = VM_FAULT_NOPAGE;
            }
            folio->unlock();
            // Nothing mapped: drop the lookup's reference (the cache holds
            // its own, so this is never the last).
            if (!mapped) mem.folio_put(folio);
            total += mapped;
            index = last + 1;
        }
    }
    if (total && trace::on())
        trace::note(trace::Kind::Decision, "do_fault_around", vmf.address,
                    ("mapped " + std::to_string(total) + " cached page(s) of file offsets [" +
                     std::to_string(start_pgoff) + ", " + std::to_string(end_pgoff) + "]" +
                     (ret == VM_FAULT_NOPAGE ? ", the faulting one among them (no ->fault)" : ""))
                        .c_str());
    return ret;
}

}  // namespace pl
