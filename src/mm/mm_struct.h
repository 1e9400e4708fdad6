// pinlab — struct mm_struct: an address space.
#pragma once

#include <cstdint>
#include <map>
#include <memory>

#include "base/sync/atomic.h"
#include "base/sync/rwsem.h"
#include "base/sync/seqcount.h"
#include "base/sync/spinlock.h"
#include "mm/page_table.h"
#include "mm/vma.h"

namespace pl {

class Kernel;
class Task;

// mm->flags bits.
inline constexpr unsigned MMF_HAS_PINNED = 27;  // a FOLL_PIN was ever taken on this mm

class MmStruct {
public:
    explicit MmStruct(Kernel& k);
    ~MmStruct();
    MmStruct(const MmStruct&) = delete;
    MmStruct& operator=(const MmStruct&) = delete;

    Kernel& kernel;
    const uint64_t id;
    sync::Rwsem mmap_lock;
    sync::Spinlock page_table_lock;  // one lock for all page-table updates (upstream splits it)
    // A PTE-level fault keeps its PTE slot across page_table_lock drops and
    // holds this for read meanwhile; CONFIG_PT_RECLAIM frees an empty PTE
    // table only under a trylock for write. Stands in for upstream's
    // pmd_same() recheck after pte_offset_map_lock() (src/mm/pt_reclaim.cpp).
    sync::Rwsem pte_table_sem;
    PageTable pgtable;
    // write_protect_seq: odd while fork() write-protects anonymous pages.
    sync::SeqCount write_protect_seq;
    sync::Atomic<uint64_t> flags{0};
    sync::Atomic<int> users{1};      // mm_users
    sync::Atomic<int64_t> locked_vm{0};
    sync::Atomic<int64_t> pinned_vm{0};
    sync::Atomic<int64_t> rss_anon{0};
    sync::Atomic<int64_t> rss_file{0};
    sync::Atomic<int64_t> rss_shmem{0};
    // mmap_base() with ASLR is page-aligned but almost never PMD-aligned, so
    // the first PMD-aligned mapping (thp_get_unmapped_area()) leaves a gap
    // above it that later small mappings fill, apart from it; 1 MiB here.
    vaddr_t mmap_base = 0x7f0000000000ULL - 0x100000ULL;
    vm_flags_t def_flags = 0;
    Task* owner = nullptr;

    bool test_flag(unsigned bit) const { return flags.load() & (1ULL << bit); }
    void set_flag(unsigned bit) { flags.fetch_or(1ULL << bit); }

    // --- the VMA tree (caller holds mmap_lock) ---------------------------------------
    // find_vma(): the first VMA ending above addr.
    Vma* find_vma(vaddr_t addr) const;
    // vma_lookup(): the VMA containing addr, or null.
    Vma* vma_lookup(vaddr_t addr) const;
    Vma* prev_vma(const Vma* v) const;
    Vma* next_vma(const Vma* v) const;
    // All VMAs, in address order.
    template <typename Fn>
    void for_each_vma(Fn&& fn) const {
        for (auto& [s, v] : vmas_) fn(*v);
    }
    size_t map_count() const { return vmas_.size(); }
    // Links a new VMA (takes ownership); caller holds mmap_lock for write.
    Vma* insert_vma(std::unique_ptr<Vma> v);
    // Unlinks and returns ownership.
    std::unique_ptr<Vma> remove_vma(Vma* v);
    // Re-keys a VMA whose start changed (split/mremap).
    void rekey_vma(Vma* v, vaddr_t old_start);
    // get_unmapped_area(): top-down search for a gap of len aligned to align.
    vaddr_t get_unmapped_area(uint64_t len, uint64_t align) const;
    bool range_is_free(vaddr_t start, vaddr_t end) const;

    // mmget/mmput: mm_users. The last mmput tears the address space down.
    void get() { users.fetch_add(1); }
    bool get_not_zero();
    void put();

private:
    std::map<vaddr_t, std::unique_ptr<Vma>> vmas_;  // keyed by vm_start
};

// Lock helpers with upstream names (RAII forms in sync::ReadGuard/WriteGuard).
inline void mmap_read_lock(MmStruct& mm) PL_NO_TSA { mm.mmap_lock.down_read(); }
inline void mmap_read_unlock(MmStruct& mm) PL_NO_TSA { mm.mmap_lock.up_read(); }
inline void mmap_write_lock(MmStruct& mm) PL_NO_TSA { mm.mmap_lock.down_write(); }
inline void mmap_write_unlock(MmStruct& mm) PL_NO_TSA { mm.mmap_lock.up_write(); }

}  // namespace pl
