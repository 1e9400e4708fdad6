// pinlab — GUP-fast (upstream gup_fast()): the lockless walk.
#pragma once

#include "mm/mm_struct.h"

namespace pl {

struct Page;

// Takes GET or PIN references (per gup_flags) on up to nr_pages pages from
// start without any lock, stopping at the first entry it cannot handle
// locklessly; returns how many it took (pages[0..n)). 0 when the arch has no
// GUP-fast, when fork is copying page tables (FOLL_PIN and write_protect_seq
// odd or changed: everything taken is released again), or when nothing could
// be taken. The caller falls back to the slow path for the rest.
unsigned long gup_fast(MmStruct& mm, vaddr_t start, unsigned long nr_pages, unsigned gup_flags, Page** pages);

}  // namespace pl
