// pinlab — struct inode, the page cache's tree (struct address_space) and the
// backing store of the disk file systems (upstream fs/inode.c, the xarray
// parts of mm/filemap.c).
#include "fs/inode.h"

#include <algorithm>
#include <cstring>

#include "fs/fs.h"
#include "fs/fs_internal.h"
#include "kernel/kernel.h"
#include "mm/internal.h"

namespace pl {

// ---------------------------------------------------------------------------
// AddressSpace
// ---------------------------------------------------------------------------

namespace {

// The folio whose range covers index (keys are first indices), or null.
Folio* lookup_locked(AddressSpace& m, pgoff_t index, pgoff_t* first) PL_REQUIRES(m.i_pages_lock) {
    auto it = m.i_pages.upper_bound(index);
    if (it == m.i_pages.begin()) return nullptr;
    --it;
    Folio* f = it->second;
    if (index - it->first >= f->nr_pages()) return nullptr;
    if (first) *first = it->first;
    return f;
}

}  // namespace

Folio* mapping_get_folio(AddressSpace& m, pgoff_t index, pgoff_t* first) {
    sync::Backoff b(&m);
    while (true) {
        {
            sync::SpinGuard g(m.i_pages_lock);
            Folio* f = lookup_locked(m, index, first);
            if (!f) return nullptr;
            // folio_try_get(): fails while migration has the count frozen;
            // the tree then changes under the lock, so look again.
            if (f->ref_try_add(1)) return f;
        }
        b.pause();
    }
}

Folio* AddressSpace::get_folio(pgoff_t index) { return mapping_get_folio(*this, index, nullptr); }

Folio* AddressSpace::peek_folio_locked(pgoff_t index) { return lookup_locked(*this, index, nullptr); }

Status AddressSpace::add_folio(Folio* folio, pgoff_t index) {
    unsigned long nr = folio->nr_pages();
    {
        sync::SpinGuard g(i_pages_lock);
        // Nothing may overlap [index, index + nr).
        auto it = i_pages.lower_bound(index);
        if (it != i_pages.end() && it->first < index + nr) return Error(EEXIST);
        if (it != i_pages.begin()) {
            auto prev = std::prev(it);
            if (prev->first + prev->second->nr_pages() > index) return Error(EEXIST);
        }
        folio->ref_add(static_cast<int>(nr));
        folio->set_index(index);
        folio->set_raw_mapping(reinterpret_cast<uintptr_t>(this));
        i_pages.emplace(index, folio);
        nrpages.fetch_add(nr);
    }
    Kernel& k = host.kernel;
    if (!folio->is_hugetlb()) {
        k.vmstat.add(Vmstat::nr_file_pages, static_cast<int64_t>(nr));
        if (folio->test(PG_swapbacked)) k.vmstat.add(Vmstat::nr_shmem, static_cast<int64_t>(nr));
    }
    return ok_status();
}

void AddressSpace::delete_folio(Folio* folio) {
    unsigned long nr = folio->nr_pages();
    bool was_dirty = false;
    {
        sync::SpinGuard g(i_pages_lock);
        if (folio->mapping() != this) return;  // already gone
        auto it = i_pages.find(folio->index());
        if (it == i_pages.end() || it->second != folio)
            it = std::find_if(i_pages.begin(), i_pages.end(), [folio](const auto& e) { return e.second == folio; });
        if (it == i_pages.end()) return;
        i_pages.erase(it);
        nrpages.fetch_sub(nr);
        // folio_cancel_dirty() / filemap_unaccount_folio(): the data has no
        // home any more.
        was_dirty = folio->test_and_clear(PG_dirty);
        // page_cache_delete(): the folio no longer belongs to the file.
        folio->set_raw_mapping(0);
    }
    Kernel& k = host.kernel;
    if (was_dirty && can_writeback() && !host.traits().dax)
        k.vmstat.add(Vmstat::nr_dirty, -static_cast<int64_t>(nr));
    if (!folio->is_hugetlb()) {
        k.vmstat.add(Vmstat::nr_file_pages, -static_cast<int64_t>(nr));
        if (folio->test(PG_swapbacked)) k.vmstat.add(Vmstat::nr_shmem, -static_cast<int64_t>(nr));
    }
    k.mem->folio_put_refs(folio, static_cast<int>(nr));
}

void AddressSpace::link_vma(Vma* v) {
    sync::WriteGuard g(i_mmap_rwsem);
    if (std::find(i_mmap.begin(), i_mmap.end(), v) == i_mmap.end()) i_mmap.push_back(v);
}

void AddressSpace::unlink_vma(Vma* v) {
    sync::WriteGuard g(i_mmap_rwsem);
    auto it = std::find(i_mmap.begin(), i_mmap.end(), v);
    if (it != i_mmap.end()) i_mmap.erase(it);
}

// mapping_can_writeback(): the backing device does writeback accounting.
bool AddressSpace::can_writeback() const { return host.traits().writeback; }

// ---------------------------------------------------------------------------
// BackingStore
// ---------------------------------------------------------------------------

void BackingStore::read_page(pgoff_t index, uint8_t* out) const {
    sync::SpinGuard g(lock_);
    auto it = blocks_.find(index);
    if (it == blocks_.end()) std::memset(out, 0, PAGE_SIZE);
    else std::memcpy(out, it->second.get(), PAGE_SIZE);
}

void BackingStore::write_page(pgoff_t index, const uint8_t* data) {
    auto buf = std::make_unique<uint8_t[]>(PAGE_SIZE);
    std::memcpy(buf.get(), data, PAGE_SIZE);
    std::unique_ptr<uint8_t[]> old;
    sync::SpinGuard g(lock_);
    auto& slot = blocks_[index];
    old = std::move(slot);  // freed after the lock is dropped
    slot = std::move(buf);
}

void BackingStore::punch(pgoff_t first, pgoff_t last_inclusive) {
    if (last_inclusive < first) return;
    std::vector<std::unique_ptr<uint8_t[]>> dead;
    sync::SpinGuard g(lock_);
    for (auto it = blocks_.begin(); it != blocks_.end();) {
        if (it->first >= first && it->first <= last_inclusive) {
            dead.push_back(std::move(it->second));
            it = blocks_.erase(it);
        } else {
            ++it;
        }
    }
}

bool BackingStore::has_block(pgoff_t index) const {
    sync::SpinGuard g(lock_);
    return blocks_.count(index) != 0;
}

// ---------------------------------------------------------------------------
// Inode
// ---------------------------------------------------------------------------

Inode::Inode(Kernel& k, FsKind kind, uint64_t number) : kernel(k), fs(kind), ino(number) {}

Inode::~Inode() = default;

uint64_t Inode::page_size() const {
    if (!traits().hugetlb) return PAGE_SIZE;
    return huge_size == HugeSize::Size2M ? PMD_SIZE : PUD_SIZE;
}

// iput_final() → evict(): the page cache goes (truncate_inode_pages_final),
// fsdax blocks are given back, and the inode is freed. Pages that are still
// pinned stay alive through their pins, belonging to no file.
void Inode::put() {
    if (refs_.fetch_sub(1) != 1) return;
    truncate_inode_pages_final(*this);
    if (traits().dax) dax_inode_teardown(*this);
    kernel.inode_forget(this);
    delete this;
}

}  // namespace pl
