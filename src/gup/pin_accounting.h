// pinlab — GUP reference accounting (spec §5): try_grab_folio()/gup_put_folio().
//
// GET: +refs on _refcount. PIN on a small folio: +refs*GUP_PIN_COUNTING_BIAS;
// on a large folio: +refs on _refcount and +refs on _pincount. PIN of the
// 4 KiB zero page takes nothing. The pin tracker records every GET and PIN
// (its share is part of the kernel's reference ledger); PINs also count
// nr_foll_pin_acquired/_released.
#pragma once

#include "base/result.h"
#include "kernel/kernel.h"
#include "mm/folio.h"

namespace pl {

class MmStruct;

// try_grab_folio(): the caller holds a stable reference (or the PT lock).
// -ENOMEM if the folio's refcount is not positive; 0 otherwise.
Status try_grab_folio(Kernel& k, Folio* folio, int refs, unsigned flags);
// gup_put_folio(): the exact inverse.
void gup_put_folio(Kernel& k, Folio* folio, int refs, unsigned flags);
// The kernel whose memory holds `folio` (unpin_user_page(page) releases
// into it); null for a page of no live kernel.
Kernel* gup_pinned_kernel(const Folio* folio);
// mm_set_has_pinned_flag(): test before set.
void mm_set_has_pinned_flag(MmStruct& mm);

}  // namespace pl
