// pinlab — fsdax: files on persistent memory, mapped straight from their
// ZONE_DEVICE pages with no page cache (upstream fs/dax.c plus the DAX
// paths of ext4/xfs).
//
// Blocks: each inode gets its own MEMORY_DEVICE_FS_DAX pgmap on first use,
// sized to the file rounded up to 512 pages (at least 512); a file that
// outgrows it gets further pgmaps, kept in a side table. A block is one
// order-0 pgmap page, allocated on first write or fault and recorded in
// inode.dax_blocks; the file holds one reference on it. A mapped block's
// folio has mapping = &inode.mapping and its index, as upstream's
// dax_associate_entry() sets them, and memory.cpp maps it as an ordinary,
// refcounted file page (current upstream, since fsdax pages became
// refcounted). Truncation and hole punching drop the file's reference and
// disassociate the folio; a pinned block goes back to its pgmap only when
// the pin is released. The pgmaps are unmapped at inode teardown unless a
// block is still referenced elsewhere, in which case they stay until the
// kernel goes away.
#include <algorithm>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "fs/file.h"
#include "fs/fs.h"
#include "fs/fs_internal.h"
#include "fs/inode.h"
#include "mm/internal.h"

namespace pl {

namespace {

constexpr unsigned long kPgmapChunk = 512;
constexpr unsigned long kPgmapMax = 8192;  // 32 MiB: large files use several pgmaps

// Pgmaps beyond inode.dax_pgmap, per inode (not a model lock: only touched
// with the inode's dax_lock held, or at teardown).
std::mutex g_extra_mu;
std::unordered_map<const Inode*, std::vector<DevPagemap*>> g_extra;

std::vector<DevPagemap*> extra_pgmaps(const Inode& inode) {
    std::lock_guard g(g_extra_mu);
    auto it = g_extra.find(&inode);
    return it == g_extra.end() ? std::vector<DevPagemap*>{} : it->second;
}

unsigned long chunk_pages(uint64_t pages) {
    pages = std::clamp<uint64_t>(pages, 1, kPgmapMax);
    return static_cast<unsigned long>((pages + kPgmapChunk - 1) / kPgmapChunk * kPgmapChunk);
}

// A free block from the inode's pgmaps, creating one when all are full.
// -ENOSPC when device memory is exhausted.
Result<Folio*> alloc_block_locked(Inode& inode) PL_REQUIRES(inode.dax_lock) {
    PhysMem& mem = *inode.kernel.mem;
    if (!inode.dax_pgmap) {
        auto pg = mem.memremap_pages(PgmapType::Fsdax, chunk_pages(size_to_pages(inode.size.load())), nullptr, nullptr);
        if (!pg) return Error(ENOSPC);
        inode.dax_pgmap = *pg;
    }
    if (auto f = mem.pgmap_alloc(inode.dax_pgmap, 0)) return f;
    for (DevPagemap* pg : extra_pgmaps(inode))
        if (auto f = mem.pgmap_alloc(pg, 0)) return f;
    // The file outgrew its pgmaps: add one for the rest of it.
    uint64_t have = inode.dax_pgmap->nr_pages;
    for (DevPagemap* pg : extra_pgmaps(inode)) have += pg->nr_pages;
    uint64_t want = size_to_pages(inode.size.load());
    auto pg = mem.memremap_pages(PgmapType::Fsdax, chunk_pages(want > have ? want - have : 1), nullptr, nullptr);
    if (!pg) return Error(ENOSPC);
    {
        std::lock_guard g(g_extra_mu);
        g_extra[&inode].push_back(*pg);
    }
    auto f = mem.pgmap_alloc(*pg, 0);
    if (!f) return Error(ENOSPC);
    return f;
}

pfn_t pfn_of(const Inode& inode, const Page* p) { return inode.kernel.mem->page_to_pfn(p); }

}  // namespace

vm_fault_t dax_get_block(Inode& inode, pgoff_t index, bool alloc, Folio** out) {
    PhysMem& mem = *inode.kernel.mem;
    sync::SpinGuard g(inode.dax_lock);
    auto it = inode.dax_blocks.find(index);
    if (it != inode.dax_blocks.end()) {
        Folio* folio = page_folio(mem.pfn_to_page(it->second));
        folio->ref_add(1);
        *out = folio;
        return 0;
    }
    if (!alloc) return VM_FAULT_SIGBUS;
    auto nf = alloc_block_locked(inode);
    if (!nf) return VM_FAULT_SIGBUS;  // vmf_error(-ENOSPC)
    Folio* folio = *nf;
    mem.clear_page(folio->head());  // a new block reads zero
    folio->set_index(index);
    folio->set_raw_mapping(reinterpret_cast<uintptr_t>(&inode.mapping));
    folio->set(PG_uptodate);
    inode.dax_blocks.emplace(index, pfn_of(inode, folio->head()));
    folio->ref_add(1);  // the allocation's reference is the file's; this one is the caller's
    *out = folio;
    return 0;
}

void dax_zero_range(Inode& inode, uint64_t from, uint64_t to) {
    static const uint8_t zeros[PAGE_SIZE] = {};
    PhysMem& mem = *inode.kernel.mem;
    while (from < to) {
        unsigned poff = static_cast<unsigned>(from & ~PAGE_MASK);
        unsigned n = static_cast<unsigned>(std::min<uint64_t>(PAGE_SIZE - poff, to - from));
        Folio* folio = nullptr;
        if (!dax_get_block(inode, from >> PAGE_SHIFT, /*alloc=*/false, &folio)) {
            (void)mem.write_frame(pfn_of(inode, folio->head()), poff, zeros, n);
            mem.folio_put(folio);
        }
        from += n;
    }
}

void dax_free_blocks(Inode& inode, pgoff_t first, pgoff_t last) {
    PhysMem& mem = *inode.kernel.mem;
    std::vector<pfn_t> dead;
    {
        sync::SpinGuard g(inode.dax_lock);
        for (auto it = inode.dax_blocks.lower_bound(first); it != inode.dax_blocks.end() && it->first < last;) {
            dead.push_back(it->second);
            it = inode.dax_blocks.erase(it);
        }
    }
    for (pfn_t pfn : dead) {
        Folio* folio = page_folio(mem.pfn_to_page(pfn));
        // dax_disassociate_entry()
        folio->clear(PG_dirty);
        folio->set_raw_mapping(0);
        mem.folio_put(folio);
    }
}

// dax_writeback_mapping_range(): the data is already on the medium; dirty
// blocks are write-protected and cleaned (dax_entry_mkclean) so the next
// write through a mapping faults again.
void dax_writeback(Inode& inode) {
    PhysMem& mem = *inode.kernel.mem;
    std::vector<Folio*> dirty;
    {
        sync::SpinGuard g(inode.dax_lock);
        for (auto& [index, pfn] : inode.dax_blocks) {
            Folio* folio = page_folio(mem.pfn_to_page(pfn));
            if (folio->is_dirty()) {
                folio->ref_add(1);
                dirty.push_back(folio);
            }
        }
    }
    for (Folio* folio : dirty) {
        {
            FolioLockGuard lock(folio);
            if (folio->mapping() == &inode.mapping) {
                (void)folio_mkclean(folio);
                folio->clear(PG_dirty);
            }
        }
        mem.folio_put(folio);
    }
}

void dax_inode_teardown(Inode& inode) {
    PhysMem& mem = *inode.kernel.mem;
    std::vector<pfn_t> blocks;
    {
        sync::SpinGuard g(inode.dax_lock);
        for (auto& [index, pfn] : inode.dax_blocks) blocks.push_back(pfn);
        inode.dax_blocks.clear();
    }
    bool busy = false;
    for (pfn_t pfn : blocks) {
        Folio* folio = page_folio(mem.pfn_to_page(pfn));
        folio->clear(PG_dirty);
        folio->set_raw_mapping(0);
        if (folio->ref_count() != 1) busy = true;  // pinned: outlives the file
        mem.folio_put(folio);
    }
    std::vector<DevPagemap*> pgmaps;
    {
        std::lock_guard g(g_extra_mu);
        auto it = g_extra.find(&inode);
        if (it != g_extra.end()) {
            pgmaps = std::move(it->second);
            g_extra.erase(it);
        }
    }
    if (inode.dax_pgmap) pgmaps.insert(pgmaps.begin(), inode.dax_pgmap);
    inode.dax_pgmap = nullptr;
    // Pages still referenced would return to an unmapped pgmap: keep them.
    if (!busy)
        for (DevPagemap* pg : pgmaps) mem.memunmap_pages(pg);
}

// dax_iomap_rw(): reads and writes go straight to the blocks.
Result<uint64_t> dax_read(Inode& inode, void* buf, uint64_t len, uint64_t off) {
    PhysMem& mem = *inode.kernel.mem;
    auto* dst = static_cast<uint8_t*>(buf);
    return for_each_page_chunk(off, clamp_to_eof(inode.size.load(), off, len), [&](const PageChunk& c) {
        Folio* folio = nullptr;
        if (!dax_get_block(inode, c.index, /*alloc=*/false, &folio)) {
            (void)mem.read_frame(pfn_of(inode, folio->head()), c.offset, dst + c.done, c.len);
            mem.folio_put(folio);
        } else {
            std::fill(dst + c.done, dst + c.done + c.len, uint8_t{0});  // a hole
        }
        return true;
    });
}

Result<uint64_t> dax_write(Inode& inode, const void* buf, uint64_t len, uint64_t off) {
    if (len == 0) return uint64_t{0};
    if (off >= MAX_FILE_SIZE || len > MAX_FILE_SIZE - off) return Error(EFBIG);
    PhysMem& mem = *inode.kernel.mem;
    const auto* src = static_cast<const uint8_t*>(buf);
    sync::WriteGuard g(inode.i_rwsem);
    uint64_t done = 0;
    while (done < len) {
        uint64_t pos = off + done;
        unsigned poff = static_cast<unsigned>(pos & ~PAGE_MASK);
        unsigned n = static_cast<unsigned>(std::min<uint64_t>(PAGE_SIZE - poff, len - done));
        Folio* folio = nullptr;
        vm_fault_t r = dax_get_block(inode, pos >> PAGE_SHIFT, /*alloc=*/true, &folio);
        if (r) {
            if (done) break;
            return Error(ENOSPC);
        }
        (void)mem.write_frame(pfn_of(inode, folio->head()), poff, src + done, n);
        mem.folio_put(folio);
        done += n;
        if (off + done > inode.size.load()) inode.size.store(off + done);
    }
    return done;
}

namespace {

// ext4_dax_vm_ops / xfs_file_vm_ops with IS_DAX: faults hand out the block's
// page; write faults on shared mappings go through ->page_mkwrite.
class DaxVmOps final : public VmOperations {
public:
    const char* name() const override { return "dax_vm_ops"; }
    vm_fault_t fault(VmFault& vmf) const override {
        Inode& inode = *vmf.vma->file->inode;
        // The block allocation runs under invalidate_lock (xfs's MMAPLOCK).
        sync::ReadGuard g(inode.invalidate_lock);
        if (vmf.pgoff >= size_to_pages(inode.size.load())) return VM_FAULT_SIGBUS;
        Folio* folio = nullptr;
        vm_fault_t r = dax_get_block(inode, vmf.pgoff, /*alloc=*/true, &folio);
        if (r) return r;
        vmf.page = folio->head();
        return 0;
    }
    bool has_page_mkwrite() const override { return true; }
    vm_fault_t page_mkwrite(VmFault& vmf) const override {
        Inode& inode = *vmf.vma->file->inode;
        Folio* folio = page_folio(vmf.page);
        sync::ReadGuard g(inode.invalidate_lock);
        if (folio->mapping() != &inode.mapping || folio->index() >= size_to_pages(inode.size.load()))
            return VM_FAULT_NOPAGE;
        folio_mark_dirty(folio);  // the entry's dirty tag
        return 0;
    }
    bool has_pfn_mkwrite() const override { return true; }
    vm_fault_t pfn_mkwrite(VmFault&) const override { return 0; }
};

// ext4_file_mmap()/xfs_file_mmap() on a DAX inode.
class DaxFileOps final : public FileOperations {
public:
    Status mmap(File&, Vma& vma) const override {
        static const DaxVmOps ops;
        vma.ops = &ops;
        return ok_status();
    }
};

}  // namespace

const FileOperations& dax_file_operations() {
    static const DaxFileOps ops;
    return ops;
}

}  // namespace pl
