// pinlab — mprotect() and change_protection() (upstream mm/mprotect.c).
#include <sys/mman.h>

#include "mm/internal.h"
#include "mm/mmap.h"
#include "mm/vma_merge.h"

namespace pl {

using namespace pte;

namespace {

// can_change_pte_writable(): may a PTE be made writable without a fault?
bool can_change_writable(Vma& vma, vaddr_t addr, entry_t e, PtLevel level) {
    if (e & PROTNONE) return false;
    if (uffd_wp(e)) return false;
    // Soft-dirty tracking armed and the entry not yet soft-dirty: keep it R/O
    // so that the next write is seen.
    if (!(vma.flags & VM_SOFTDIRTY) && !soft_dirty(e)) return false;
    if (!(vma.flags & VM_SHARED)) {
        Page* p = level == PtLevel::Pte ? vm_normal_page(vma, addr, e) : vm_normal_page_huge(vma, addr, e, level);
        if (!p) return false;
        Folio* f = page_folio(p);
        return f->is_anon() && PageAnonExclusive(level == PtLevel::Pte ? p : f->head());
    }
    if (vma.wants_writenotify()) return false;
    return dirty(e);
}

void change_protection(Vma& vma, vaddr_t start, vaddr_t end) {
    MmStruct& mm = *vma.mm;
    bool accessible = vma.flags & VM_ACCESS_FLAGS;
    bool writable = vma.flags & VM_WRITE;
    sync::SpinGuard g(mm.page_table_lock);
    vaddr_t a = start;
    while (a < end) {
        vaddr_t at = a;
        PageTable::Leaf leaf = mm.pgtable.next_leaf(&at, end);
        if (!leaf.slot) break;
        uint64_t span = 1ULL << level_shift(leaf.level);
        if (leaf.level == PtLevel::Pmd && (at < start || at + span > end) && !vma.is_hugetlb()) {
            split_huge_pmd_locked(vma, at, leaf.slot);
            a = std::max(at, start);
            continue;
        }
        entry_t e = sync::load(*leaf.slot);
        if (!present(e)) {
            // A writable migration entry becomes a readable one; an anonymous
            // page stays exclusive (make_readable_exclusive_migration_entry()),
            // or a migration racing this mprotect() would map it back shared.
            if (!writable && swp_type(e) == SwpType::MigrationWrite) {
                Page* mp = mem_of(vma).pfn_to_page(pte::pfn(e));
                SwpType t = mp && page_folio(mp)->is_anon() ? SwpType::MigrationReadExclusive : SwpType::MigrationRead;
                sync::store(*leaf.slot, (e & ~(0xfULL << 1)) | (static_cast<entry_t>(t) << 1));
            }
            a = at + span;
            continue;
        }
        entry_t ne = accessible ? (e & ~PROTNONE) : (e | PROTNONE);
        if (!writable) ne = wrprotect(ne);
        else if (!write(ne) && can_change_writable(vma, at, ne, leaf.level)) ne = mkwrite(ne);
        if (ne != e) sync::store(*leaf.slot, ne);
        a = at + span;
    }
}

}  // namespace

Status do_mprotect(MmStruct& mm, vaddr_t start, uint64_t len, int prot) {
    constexpr int kKnown = PROT_READ | PROT_WRITE | PROT_EXEC | 0x8 /* PROT_SEM */ | PROT_GROWSDOWN | PROT_GROWSUP;
    if (!page_aligned(start)) return Error(EINVAL);
    if (prot & ~kKnown) return Error(EINVAL);
    if (len == 0) return ok_status();
    uint64_t alen = page_align_up(len);
    if (alen < len) return Error(ENOMEM);
    vaddr_t end = start + alen;
    if (end <= start || end > TASK_SIZE + PAGE_SIZE) return Error(ENOMEM);
    vm_flags_t want = vm_flags_from_prot(prot);

    sync::WriteGuard lock(mm.mmap_lock);
    Vma* vma = mm.find_vma(start);
    if (!vma || vma->start > start) return Error(ENOMEM);
    vaddr_t next = start;
    while (next < end) {
        vma = mm.vma_lookup(next);
        if (!vma) return Error(ENOMEM);  // a hole: what was changed stays changed, as upstream
        vm_flags_t newflags = (vma->flags & ~VM_ACCESS_FLAGS) | want;
        if ((newflags & VM_WRITE) && !(vma->flags & VM_MAYWRITE)) return Error(EACCES);
        if ((newflags & VM_READ) && !(vma->flags & VM_MAYREAD)) return Error(EACCES);
        if ((newflags & VM_EXEC) && !(vma->flags & VM_MAYEXEC)) return Error(EACCES);
        vaddr_t a = next, b = std::min(end, vma->end);
        if (newflags != vma->flags) {
            if (vma->is_hugetlb() && ((a | b) & (vma->huge_page_size() - 1))) return Error(EINVAL);
            PL_TRY(split_vma_range(mm, a, b));
            vma = mm.vma_lookup(a);
            vma_set_flags(*vma, newflags);
            change_protection(*vma, a, b);
            // mprotect_fixup(): vma_modify_flags() merges the range back into
            // neighbours it now matches (an mprotect() undone leaves one VMA).
            vma_merge_neighbours(mm, vma);
        }
        next = b;
    }
    return ok_status();
}

}  // namespace pl
