#include "gup/longterm_pinnable.h"

namespace pl {

bool folio_is_longterm_pinnable(const PhysMem& mem, const Folio* folio) {
    MigrateType mt = mem.pageblock_migratetype(mem.page_to_pfn(folio->head()));
    if (mt == MigrateType::Cma || mt == MigrateType::Isolate) return false;
    // The 4 KiB zero page always may; the huge zero folio takes the zone
    // checks (allocated without __GFP_MOVABLE, so it passes them).
    if (mem.is_zero_folio(folio)) return true;
    if (folio->is_zone_device()) {
        const DevPagemap* pg = mem.page_pgmap(folio->head());
        if (pg && (pg->type == PgmapType::DeviceCoherent || pg->type == PgmapType::Fsdax)) return false;
        return true;
    }
    return folio->zone() != ZoneId::Movable;
}

}  // namespace pl
