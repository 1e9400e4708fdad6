#include "mm/mm_struct.h"

#include "kernel/kernel.h"

namespace pl {

void exit_mmap(MmStruct& mm);  // kernel/exit.cpp

MmStruct::MmStruct(Kernel& k) : kernel(k), id(k.next_id()) {
    if (!k.cfg.mm_pt_free_rcu) pgtable.set_table_free(TableFree::Quarantine);
    k.mm_register(this);
}

MmStruct::~MmStruct() { kernel.mm_unregister(this); }

Vma* MmStruct::find_vma(vaddr_t addr) const {
    // The VMA with the largest start <= addr may contain addr; else the next one.
    auto it = vmas_.upper_bound(addr);
    if (it != vmas_.begin()) {
        auto prev = std::prev(it);
        if (prev->second->end > addr) return prev->second.get();
    }
    return it == vmas_.end() ? nullptr : it->second.get();
}

Vma* MmStruct::vma_lookup(vaddr_t addr) const {
    Vma* v = find_vma(addr);
    return (v && v->start <= addr) ? v : nullptr;
}

Vma* MmStruct::prev_vma(const Vma* v) const {
    auto it = vmas_.find(v->start);
    if (it == vmas_.begin() || it == vmas_.end()) return nullptr;
    return std::prev(it)->second.get();
}

Vma* MmStruct::next_vma(const Vma* v) const {
    auto it = vmas_.find(v->start);
    if (it == vmas_.end()) return nullptr;
    ++it;
    return it == vmas_.end() ? nullptr : it->second.get();
}

Vma* MmStruct::insert_vma(std::unique_ptr<Vma> v) {
    Vma* raw = v.get();
    raw->mm = this;
    vmas_.emplace(raw->start, std::move(v));
    return raw;
}

std::unique_ptr<Vma> MmStruct::remove_vma(Vma* v) {
    auto it = vmas_.find(v->start);
    if (it == vmas_.end() || it->second.get() != v) return nullptr;
    auto owned = std::move(it->second);
    vmas_.erase(it);
    return owned;
}

void MmStruct::rekey_vma(Vma* v, vaddr_t old_start) {
    auto it = vmas_.find(old_start);
    if (it == vmas_.end() || it->second.get() != v) return;
    auto owned = std::move(it->second);
    vmas_.erase(it);
    vmas_.emplace(v->start, std::move(owned));
}

bool MmStruct::range_is_free(vaddr_t start, vaddr_t end) const {
    Vma* v = find_vma(start);
    return !v || v->start >= end;
}

vaddr_t MmStruct::get_unmapped_area(uint64_t len, uint64_t align) const {
    constexpr vaddr_t kLowest = 16 * PAGE_SIZE;  // mmap_min_addr
    if (len == 0 || len > mmap_base - kLowest) return 0;
    if (align < PAGE_SIZE) align = PAGE_SIZE;
    // Top-down, as the default mmap layout: the highest gap below mmap_base.
    vaddr_t high = mmap_base;
    auto it = vmas_.lower_bound(high);  // VMAs at or above `high` do not matter
    while (true) {
        const Vma* below = it == vmas_.begin() ? nullptr : std::prev(it)->second.get();
        vaddr_t low = below ? std::max(kLowest, below->end) : kLowest;
        if (below && below->end > high) {  // straddles `high`
            high = below->start;
            --it;
            continue;
        }
        if (high >= low + len) {
            vaddr_t cand = (high - len) & ~(align - 1);
            if (cand >= low) return cand;
        }
        if (!below) return 0;
        high = below->start;
        --it;
    }
}

bool MmStruct::get_not_zero() {
    int v = users.load();
    do {
        if (v == 0) return false;
    } while (!users.compare_exchange(v, v + 1));
    return true;
}

void MmStruct::put() {
    if (users.fetch_sub(1) == 1) {
        exit_mmap(*this);
        delete this;
    }
}

}  // namespace pl
