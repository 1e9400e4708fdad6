// pinlab — FOLL_LONGTERM: migrate what may not stay pinned, then pin again
// (upstream __gup_longterm_locked() and check_and_migrate_movable_*()).
#pragma once

#include "kernel/kernel.h"
#include "mm/folio.h"
#include "mm/mm_struct.h"
#include "mm/page.h"

namespace pl {

// check_and_migrate_movable_pages(): `pages[0..nr)` each hold one FOLL_PIN.
// 0: every folio is longterm-pinnable, the pins stay. -EAGAIN: the
// unpinnable folios were migrated out of ZONE_MOVABLE/CMA (device-coherent
// ones back to RAM) and *every* pin was dropped, so the caller pins the whole
// range again. Any other negative errno: every pin was dropped too (-ENOMEM:
// migration failed, -EBUSY: a device-coherent folio would not move).
long check_and_migrate_movable_pages(Kernel& k, Page** pages, unsigned long nr);
// The same over folios (memfd_pin_folios()); entry i holds one pin of folios[i].
long check_and_migrate_movable_folios(Kernel& k, Folio** folios, unsigned long nr);

// __gup_longterm_locked(): without FOLL_LONGTERM, __get_user_pages_locked().
// With it, under memalloc_pin_save() (faults taken meanwhile allocate outside
// MOVABLE/CMA): pin, check-and-migrate, and pin again while that says -EAGAIN.
long gup_longterm_locked(MmStruct& mm, vaddr_t start, unsigned long nr_pages, Page** pages, int* locked,
                         unsigned gup_flags);

}  // namespace pl
