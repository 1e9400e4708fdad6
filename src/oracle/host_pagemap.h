// pinlab — what a real process can see of its pages: /proc/PID/pagemap and,
// with root, /proc/kpageflags (Documentation/admin-guide/mm/pagemap.rst).
//
// Read by the controller for a worker's pid, never by the worker itself, so
// that reading does not disturb the address space it looks at.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

#include "oracle/host_process.h"

namespace pl::oracle {

// /proc/PID/pagemap entry bits (fs/proc/task_mmu.c PM_*).
inline constexpr int kPmPresent = 63;
inline constexpr int kPmSwap = 62;
inline constexpr int kPmFile = 61;  // file page or shared anon
inline constexpr int kPmMmapExclusive = 56;
inline constexpr int kPmSoftDirty = 55;
inline constexpr uint64_t kPmPfnMask = (uint64_t{1} << 55) - 1;  // bits 0-54

// /proc/kpageflags bits (include/uapi/linux/kernel-page-flags.h KPF_*).
inline constexpr int kKpfDirty = 4;           // KPF_DIRTY
inline constexpr int kKpfAnon = 12;           // KPF_ANON
inline constexpr int kKpfCompoundHead = 15;   // KPF_COMPOUND_HEAD
inline constexpr int kKpfCompoundTail = 16;   // KPF_COMPOUND_TAIL
inline constexpr int kKpfHuge = 17;           // KPF_HUGE (hugetlb)
inline constexpr int kKpfThp = 22;            // KPF_THP
inline constexpr int kKpfZeroPage = 24;       // KPF_ZERO_PAGE

// The largest folio walked to find its size: 2^18 pages (1 GiB).
inline constexpr uint64_t kMaxFolioPages = uint64_t{1} << 18;

// The pagemap entry of addr in pid, decoded, with kpageflags and the folio
// size when the PFN is visible (root). Not present when anything fails.
HostPageInfo read_page_info(pid_t pid, uint64_t addr);

// The pieces, for tests and for conform's own reports.
HostPageInfo decode_pagemap_entry(uint64_t entry);
std::optional<uint64_t> read_kpageflags(uint64_t pfn);
// Pages in the compound page holding pfn (1 for a small page), by walking
// KPF_COMPOUND_TAIL back to KPF_COMPOUND_HEAD and forward over the tails;
// 0 when it cannot tell (no root, or the walk does not meet a head).
uint64_t folio_nr_pages_of(uint64_t pfn);

}  // namespace pl::oracle
