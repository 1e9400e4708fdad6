// pinlab — the invariant checker: does the whole kernel's state add up?
//
// check_invariants() is meant for a quiescent kernel (no operation in
// flight on another thread); it takes the locks it needs. It walks every
// mm's page tables, every inode's page cache (and fsdax blocks) and the
// reference ledger — O(mapped pages + cached pages + page-table pages),
// never O(RAM) — and verifies:
//  * page tables: every leaf lies inside a VMA of its mm; non-present
//    entries are valid hwpoison entries (no migration entry survives a
//    migration); PMD/PUD leaves carry pte::HUGE; no present entry points at
//    a freed frame (refcount 0, PG_buddy, or a free hugetlb pool page);
//  * mapcounts: per-page mapcount == PTE leaves mapping the page;
//    entire_mapcount == PMD/PUD leaves; large_mapcount == both;
//    nr_pages_mapped == pages with a PTE mapping;
//  * refcounts: == mappings + page-cache references (folio_nr_pages per
//    cached folio) + fsdax file references + ledger references;
//  * PageAnonExclusive only on anonymous pages mapped exactly once (the
//    head of a PMD/PUD-mapped folio with one entire mapping and no PTE
//    mapping); every writable mapping of an anonymous page has it;
//  * page cache: each cached folio's mapping and index match its slot;
//  * anon_vma: anonymous folios have one, and every VMA mapping one is on
//    its list;
//  * leaks: PhysMem::nr_allocated_pages() equals the RAM pages of the
//    folios found above + the hugetlb pools + the zero pages + frames
//    withheld by memory_failure();
//  * vmstat: nr_foll_pin_acquired >= nr_foll_pin_released.
#pragma once

#include <string>

#include "base/result.h"

namespace pl {

class Kernel;

// 0, or an error with *why (when non-null) describing every broken
// invariant found (up to a limit), each naming the mm/VMA/address/pfn/folio
// and the numbers that disagree.
Status check_invariants(Kernel& k, std::string* why);

}  // namespace pl
