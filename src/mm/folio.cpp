// pinlab — out-of-line parts of struct page / struct folio.
#include "mm/folio.h"

#include "base/sync/sched_point.h"

namespace pl {

// folio_lock(): PG_locked is a bit spinlock in the model (upstream sleeps on
// the folio's wait queue). Backoff hands control to the explorer's scheduler
// when one is installed, so a blocked locker never spins inside a controlled
// run.
void Folio::lock() {
    sync::Backoff backoff(head());
    while (true) {
        if (!test(PG_locked) && !test_and_set(PG_locked)) return;
        backoff.pause();
    }
}

int page_mapcount(const Page* p) {
    int n = sync::load(p->mapcount);
    const Folio* folio = page_folio(p);
    if (folio->is_large()) n += folio->entire_mapcount();
    return n;
}

}  // namespace pl
