// pinlab — struct inode and struct address_space (the page cache).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "base/sync/atomic.h"
#include "base/sync/rwsem.h"
#include "base/sync/spinlock.h"
#include "fs/fs_type.h"
#include "mm/physmem.h"

namespace pl {

class Kernel;
class Inode;
class Vma;
class Folio;
struct DevPagemap;

// struct address_space: the page cache of one inode, and the VMAs mapping it.
class AddressSpace {
public:
    explicit AddressSpace(Inode& host) : host(host) {}
    Inode& host;

    // i_pages: folios keyed by their first index. Guarded by i_pages_lock.
    sync::Spinlock i_pages_lock;
    std::map<pgoff_t, Folio*> i_pages PL_GUARDED_BY(i_pages_lock);
    sync::Atomic<uint64_t> nrpages{0};

    // i_mmap: every VMA mapping this file (shared or private). Guarded by i_mmap_rwsem.
    sync::Rwsem i_mmap_rwsem;
    std::vector<Vma*> i_mmap PL_GUARDED_BY(i_mmap_rwsem);

    // filemap_get_folio(): the folio covering index, with a reference; null if none.
    Folio* get_folio(pgoff_t index);
    // Lookup without taking a reference (caller holds i_pages_lock or knows it is stable).
    Folio* peek_folio_locked(pgoff_t index) PL_REQUIRES(i_pages_lock);
    // filemap_add_folio(): inserts a new folio at index (its refcount gains
    // folio_nr_pages for the cache); -EEXIST if something is there.
    Status add_folio(Folio* folio, pgoff_t index);
    // Removes a folio from the cache and drops the cache's references.
    void delete_folio(Folio* folio);

    void link_vma(Vma* v);
    void unlink_vma(Vma* v);

    bool can_writeback() const;
};

// The backing store of a disk file system: what survives in "blocks".
class BackingStore {
public:
    // Reads page `index` (zeros for a hole).
    void read_page(pgoff_t index, uint8_t* out) const;
    void write_page(pgoff_t index, const uint8_t* data);
    void punch(pgoff_t first, pgoff_t last_inclusive);
    bool has_block(pgoff_t index) const;

private:
    mutable sync::Spinlock lock_;
    std::unordered_map<pgoff_t, std::unique_ptr<uint8_t[]>> blocks_ PL_GUARDED_BY(lock_);
};

class Inode {
public:
    Inode(Kernel& k, FsKind fs, uint64_t ino);
    ~Inode();
    Inode(const Inode&) = delete;
    Inode& operator=(const Inode&) = delete;

    Kernel& kernel;
    const FsKind fs;
    const uint64_t ino;
    AddressSpace mapping{*this};
    BackingStore disk;            // used when fs_traits(fs).writeback && !dax
    sync::Rwsem i_rwsem;          // inode lock (truncate, write)
    sync::Rwsem invalidate_lock;  // mapping->invalidate_lock: faults vs truncate/punch
    sync::Atomic<uint64_t> size{0};

    // hugetlbfs / memfd-hugetlb: the page size and reservations held.
    HugeSize huge_size = HugeSize::Size2M;
    uint64_t huge_resv = 0;       // reserved huge pages for not-yet-allocated offsets
    // fsdax: the pgmap backing the file's blocks, and index → pfn.
    DevPagemap* dax_pgmap = nullptr;
    sync::Spinlock dax_lock;
    std::map<pgoff_t, pfn_t> dax_blocks PL_GUARDED_BY(dax_lock);

    const FsTraits& traits() const { return fs_traits(fs); }
    uint64_t page_size() const;  // PAGE_SIZE, or the huge page size for hugetlb inodes

    void get() { refs_.fetch_add(1); }
    void put();

private:
    sync::Atomic<int> refs_{1};
};

}  // namespace pl
