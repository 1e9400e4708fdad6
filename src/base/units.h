// pinlab — page-size arithmetic for the modelled architecture (x86-64-like,
// 4 KiB base pages, 4-level page tables, 2 MiB PMD and 1 GiB PUD leaves).
#pragma once

#include <cstdint>

namespace pl {

using pfn_t = uint64_t;
using vaddr_t = uint64_t;
using pgoff_t = uint64_t;

inline constexpr unsigned PAGE_SHIFT = 12;
inline constexpr uint64_t PAGE_SIZE = 1ULL << PAGE_SHIFT;
inline constexpr uint64_t PAGE_MASK = ~(PAGE_SIZE - 1);
inline constexpr unsigned PMD_SHIFT = 21;
inline constexpr uint64_t PMD_SIZE = 1ULL << PMD_SHIFT;
inline constexpr uint64_t PMD_MASK = ~(PMD_SIZE - 1);
inline constexpr unsigned PUD_SHIFT = 30;
inline constexpr uint64_t PUD_SIZE = 1ULL << PUD_SHIFT;
inline constexpr uint64_t PUD_MASK = ~(PUD_SIZE - 1);
inline constexpr unsigned PGDIR_SHIFT = 39;
inline constexpr unsigned PMD_ORDER = PMD_SHIFT - PAGE_SHIFT;  // 9
inline constexpr unsigned PUD_ORDER = PUD_SHIFT - PAGE_SHIFT;  // 18
inline constexpr unsigned PTRS_PER_TABLE = 512;
inline constexpr unsigned pageblock_order = PMD_ORDER;
inline constexpr uint64_t pageblock_nr_pages = 1ULL << pageblock_order;
// User address space: 47 bits, as x86-64 with 4-level tables.
inline constexpr vaddr_t TASK_SIZE = (1ULL << 47) - PAGE_SIZE;

inline constexpr uint64_t page_align_up(uint64_t x) { return (x + PAGE_SIZE - 1) & PAGE_MASK; }
inline constexpr bool page_aligned(uint64_t x) { return (x & ~PAGE_MASK) == 0; }
inline constexpr uint64_t KiB(uint64_t n) { return n << 10; }
inline constexpr uint64_t MiB(uint64_t n) { return n << 20; }
inline constexpr uint64_t GiB(uint64_t n) { return n << 30; }

}  // namespace pl
