// pinlab — the GUP slow path (spec §1–§3); decisions follow upstream mm/gup.c.
#include "gup/gup_slow.h"

#include <cerrno>
#include <string>

#include "debug/pin_tracker.h"
#include "debug/trace.h"
#include "gup/foll_flags.h"
#include "gup/gup_vmas_tracker.h"
#include "gup/pin_accounting.h"
#include "kernel/task.h"
#include "mm/internal.h"

namespace pl {

void gup_warn_current(const char* where, const std::string& what) {
    if (Task* t = current()) t->kernel.warn(where, what);
}

bool is_valid_gup_args(Page** pages, const int* locked, unsigned* gup_flags_p, unsigned to_set) {
    unsigned gup_flags = *gup_flags_p;
    // Each refusal is a WARN_ON_ONCE upstream: a caller bug, not user input.
    auto refuse = [](const char* why) {
        gup_warn_current("is_valid_gup_args", why);
        return false;
    };
    if (gup_flags & INTERNAL_GUP_FLAGS) return refuse("internal FOLL_* flag passed by the caller");
    gup_flags |= to_set;
    if (locked) {
        if (*locked != 1) return refuse("*locked != 1");
        gup_flags |= FOLL_UNLOCKABLE;
    }
    if ((gup_flags & (FOLL_GET | FOLL_PIN)) == (FOLL_GET | FOLL_PIN)) return refuse("FOLL_GET together with FOLL_PIN");
    if ((gup_flags & (FOLL_LONGTERM | FOLL_PIN)) == FOLL_LONGTERM) return refuse("FOLL_LONGTERM without FOLL_PIN");
    if (!pages && (gup_flags & (FOLL_GET | FOLL_PIN))) return refuse("FOLL_GET/FOLL_PIN without a pages array");
    if ((gup_flags & FOLL_LONGTERM) && (gup_flags & FOLL_PCI_P2PDMA))
        return refuse("FOLL_LONGTERM together with FOLL_PCI_P2PDMA");
    *gup_flags_p = gup_flags;
    return true;
}

int check_vma_flags(const Vma& vma, unsigned gup_flags) {
    const vm_flags_t vm_flags = vma.flags;
    const bool write = gup_flags & FOLL_WRITE;
    const bool vma_anon = vma.is_anonymous();

    // Each rule goes through trace::check() so that `pinlab explain` lists them in order.
    if (trace::check(vm_flags & (VM_IO | VM_PFNMAP), "VM_IO|VM_PFNMAP")) return -EFAULT;
    if (trace::check((gup_flags & FOLL_ANON) && !vma_anon, "FOLL_ANON on a non-anonymous VMA")) return -EFAULT;
    if (trace::check((gup_flags & FOLL_LONGTERM) && vma.is_dax(), "FOLL_LONGTERM on fsdax (vma_is_fsdax)")) return -EOPNOTSUPP;
    if (trace::check((gup_flags & FOLL_SPLIT_PMD) && vma.is_hugetlb(), "FOLL_SPLIT_PMD on hugetlb")) return -EOPNOTSUPP;
    if (trace::check(vma.is_secretmem(), "secretmem")) return -EFAULT;
    if (write) {
        // writable_file_mapping_allowed(): no long-term writable pins of
        // file pages that need dirty tracking.
        // Lorenzo Stoakes' series, v6.5: before it such pins were allowed.
        if (trace::check(!vma_anon && (gup_flags & (FOLL_PIN | FOLL_LONGTERM)) == (FOLL_PIN | FOLL_LONGTERM) &&
                             vma.mm->kernel.cfg.era_at_least(Era::v6_5) && vma.needs_dirty_tracking(),
                         "writable_file_mapping_allowed: longterm write pin of a dirty-tracked file"))
            return -EFAULT;
        if (!(vm_flags & VM_WRITE)) {
            if (trace::check(!(gup_flags & FOLL_FORCE), "write to a VMA without VM_WRITE (no FOLL_FORCE)")) return -EFAULT;
            // FOLL_FORCE writes only ever break COW in private mappings.
            if (trace::check(!vma.is_cow_mapping(), "FOLL_FORCE write to a shared mapping")) return -EFAULT;
        }
    } else if (!(vm_flags & VM_READ)) {
        if (trace::check(!(gup_flags & FOLL_FORCE), "read of a VMA without VM_READ (no FOLL_FORCE)")) return -EFAULT;
        if (trace::check(!(vm_flags & VM_MAYREAD), "FOLL_FORCE read without VM_MAYREAD")) return -EFAULT;
    }
    // arch_vma_access_permitted(): no protection keys in the model.
    return 0;
}

namespace {

// The page that carries PageAnonExclusive for `page`: the head for hugetlb
// and for PMD/PUD-mapped folios.
const Page* anon_exclusive_page(const Page* page, bool huge_leaf) {
    const Folio* folio = page_folio(page);
    return (huge_leaf || folio->is_hugetlb()) ? folio->head() : page;
}

// can_follow_write_pte()/_pmd(): may a FOLL_WRITE follow a R/O entry?
bool can_follow_write(const Vma& vma, pte::entry_t e, Page* page, unsigned flags, bool huge_leaf) {
    if (pte::write(e)) return true;
    // v4.8 (follow_page_pte() before 19be0eaffa3a): a write follows writable
    // PTEs only; faultin_page() drops FOLL_WRITE instead (Dirty COW).
    // FOLL_COW (v4.9-v5.17) and PageAnonExclusive (v5.19) are both the check
    // below: the page the fault COW-ed is known to be this mapping's own.
    // Huge leaves keep it in every era: the model's huge write faults do not
    // report VM_FAULT_WRITE, so a R/O huge leaf would be refaulted forever.
    if (!huge_leaf && !vma.mm->kernel.cfg.era_at_least(Era::v5_3)) return false;
    // Only a FOLL_FORCE write into a private, R/O-but-MAYWRITE mapping whose
    // exclusive anon page the fault already COW-ed may proceed.
    if (!(flags & FOLL_FORCE)) return false;
    if (vma.flags & VM_WRITE) return false;
    if (!vma.is_cow_mapping()) return false;
    if (!page) return false;
    if (!page_folio(page)->is_anon()) return false;
    if (!PageAnonExclusive(anon_exclusive_page(page, huge_leaf))) return false;
    // Soft-dirty tracking (VM_SOFTDIRTY cleared) and uffd-wp need a write fault.
    if (!(vma.flags & VM_SOFTDIRTY) && !pte::soft_dirty(e)) return false;
    return !pte::uffd_wp(e);
}

}  // namespace

bool gup_must_unshare(const Vma* vma, unsigned flags, Page* page, bool huge_leaf) {
    // Only R/O pins must unshare.
    if ((flags & (FOLL_PIN | FOLL_WRITE)) != FOLL_PIN) return false;
    // Before v5.8 a R/O GUP never broke COW (no PageAnonExclusive, no
    // FAULT_FLAG_UNSHARE; 17839856fd58 forced a COW break from v5.8).
    if (vma && !vma->mm->kernel.cfg.era_at_least(Era::v5_8)) return false;
    Folio* folio = page_folio(page);
    if (!folio->is_anon()) {
        // File (and zero) pages: only long-term R/O pins in COW mappings, so
        // that the pin sees later writes (an anon copy replaces the page).
        if (!(flags & FOLL_LONGTERM)) return false;
        if (!vma) return true;  // GUP-fast: let the slow path decide
        return vma->is_cow_mapping();
    }
    return !PageAnonExclusive(anon_exclusive_page(page, huge_leaf));
}

FollowResult follow_page_mask(Vma& vma, vaddr_t addr, unsigned flags, unsigned long* page_mask) {
    MmStruct& mm = *vma.mm;
    Kernel& k = mm.kernel;
    *page_mask = 0;
    // FOLL_SPLIT_PMD: a THP (or huge zero) PMD leaf is split first and the
    // PTE level followed (split_huge_pmd() is a no-op on anything else).
    if ((flags & FOLL_SPLIT_PMD) && !vma.is_hugetlb()) split_huge_pmd(vma, addr);
    sync::SpinGuard g(mm.page_table_lock);
    PageTable::Leaf leaf = mm.pgtable.find_leaf(addr);
    const pte::entry_t e = leaf.entry;
    // no_page_table(): a coredump does not allocate for holes in anonymous
    // memory (the model cannot tell a VMA without ->fault, so only anon).
    if ((!leaf.slot || pte::none(e)) && (flags & FOLL_DUMP) && vma.is_anonymous()) return {nullptr, -EFAULT};
    // Not present (none, swap, migration, hwpoison entries): fault.
    if (!leaf.slot || !pte::present(e) || (e & pte::TABLE)) return {};
    // NUMA-hinting PTEs are followed unless asked to honour them.
    if (pte::protnone(e) && (flags & FOLL_HONOR_NUMA_FAULT)) return {};

    const bool huge_leaf = leaf.level != PtLevel::Pte;
    bool pfn_leaf = false;  // a leaf that holds no reference on the page it maps
    unsigned long nr = 1;
    Page* page = nullptr;
    if (!huge_leaf) {
        page = vm_normal_page(vma, addr, e);
    } else {
        nr = 1UL << (level_shift(leaf.level) - PAGE_SHIFT);
        Page* head = vm_normal_page_huge(vma, addr, e, leaf.level);
        // follow_huge_pmd()/_pud() (follow_trans_huge_pmd() in v5.x) take
        // pmd_page() without asking vm_normal_page_pmd(): a huge PFN leaf of
        // a VM_MIXEDMAP VMA with a struct page behind it is grabbed, special
        // or not (VM_PFNMAP never gets here: check_vma_flags(); devmap goes
        // to follow_devmap_pmd(), -EFAULT without a pgmap). Seed 003.
        if (!head && (vma.flags & VM_MIXEDMAP) && !pte::devmap(e)) {
            Page* raw = entry_page(vma, addr, e, leaf.level);
            if (raw && !k.mem->is_any_zero_folio(page_folio(raw))) {
                head = raw;
                pfn_leaf = test_bit(raw, PG_pfn_inserted);
            }
        }
        if (head) page = head + ((addr >> PAGE_SHIFT) & (nr - 1));
    }

    if ((flags & FOLL_WRITE) && !can_follow_write(vma, e, page, flags, huge_leaf)) return {};

    if (!page) {
        if (flags & FOLL_DUMP) return {nullptr, -EFAULT};
        Page* raw = entry_page(vma, addr, e, leaf.level);
        if (raw && k.mem->is_any_zero_folio(page_folio(raw))) {
            page = huge_leaf ? raw + ((addr >> PAGE_SHIFT) & (nr - 1)) : raw;
        } else {
            // follow_pfn_pte(): no struct page to take a reference on.
            if (flags & (FOLL_GET | FOLL_PIN)) return {nullptr, -EFAULT};
            return {nullptr, -EEXIST};
        }
    }

    if (!pte::write(e) && gup_must_unshare(&vma, flags, page, huge_leaf)) return {nullptr, -EMLINK};

    Status s = try_grab_folio(k, page_folio(page), 1, flags);
    if (!s) return {nullptr, s.error().negative()};
    if (pfn_leaf && (flags & (FOLL_GET | FOLL_PIN)))
        pin_track_pfnmap_gup(k, page_folio(page), page, "follow_huge_pmd",
                             "a huge PFN leaf of a VM_MIXEDMAP VMA (pmd_page() taken without vm_normal_page_pmd())");
    // The 4 KiB zero page is left untouched; a huge zero PMD is touched like
    // any trans-huge PMD (follow_huge_pmd() -> touch_pmd()).
    if ((flags & FOLL_TOUCH) && !k.mem->is_zero_folio(page_folio(page))) {
        if (huge_leaf) {
            // touch_pmd()/touch_pud(): young, and dirty for a write.
            pte::entry_t touched = pte::mkyoung(e);
            if (flags & FOLL_WRITE) touched = pte::mkdirty(touched);
            if (touched != e) sync::store(*leaf.slot, touched);
        } else {
            // follow_page_pte(): the folio, not the PTE, records the access
            // (pte_mkyoung would race with the hardware setting dirty).
            Folio* folio = page_folio(page);
            if ((flags & FOLL_WRITE) && !pte::dirty(e) && !folio->is_dirty()) folio_mark_dirty(folio);
            folio->set(PG_referenced);  // folio_mark_accessed()
        }
    }
    *page_mask = nr - 1;
    return {page, 0};
}

int vm_fault_to_errno(vm_fault_t ret, unsigned foll_flags) {
    if (ret & VM_FAULT_OOM) return -ENOMEM;
    if (ret & (VM_FAULT_HWPOISON | VM_FAULT_HWPOISON_LARGE)) return (foll_flags & FOLL_HWPOISON) ? -EHWPOISON : -EFAULT;
    if (ret & (VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV)) return -EFAULT;
    return 0;
}

bool fatal_signal_pending_current() {
    Task* t = current();
    return t && t->fatal_signal_pending();
}

namespace {

bool gup_signal_pending(unsigned flags) {
    Task* t = current();
    if (!t) return false;
    if (t->fatal_signal_pending()) return true;
    if (!(flags & FOLL_INTERRUPTIBLE)) return false;
    return t->signal_pending();
}

}  // namespace

int faultin_page(Vma& vma, vaddr_t addr, unsigned* flags_p, bool unshare, int* locked) {
    const unsigned flags = *flags_p;
    unsigned fault_flags = 0;
    if (flags & FOLL_NOFAULT) return -EFAULT;
    if (flags & FOLL_WRITE) fault_flags |= FAULT_FLAG_WRITE;
    if (flags & FOLL_REMOTE) fault_flags |= FAULT_FLAG_REMOTE;
    if (flags & FOLL_UNLOCKABLE) {
        fault_flags |= FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE;
        if (flags & FOLL_INTERRUPTIBLE) fault_flags |= FAULT_FLAG_INTERRUPTIBLE;
    }
    if (flags & FOLL_NOWAIT) fault_flags |= FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_RETRY_NOWAIT;
    if (flags & FOLL_TRIED) fault_flags |= FAULT_FLAG_TRIED;
    if (unshare) fault_flags |= FAULT_FLAG_UNSHARE;  // never together with WRITE

    int dummy = 1;
    if (!locked) locked = &dummy;
    vm_fault_t ret = handle_mm_fault(vma, addr, fault_flags);
    if (ret & VM_FAULT_COMPLETED) {
        // The fault completed with the lock released.
        *locked = 0;
        return -EAGAIN;
    }
    if (ret & VM_FAULT_ERROR) {
        int err = vm_fault_to_errno(ret, flags);
        if (err) return err;
    }
    if (ret & VM_FAULT_RETRY) {
        if (!(fault_flags & FAULT_FLAG_RETRY_NOWAIT)) *locked = 0;
        return -EBUSY;
    }
    // v4.8 (before 19be0eaffa3a, "mm: remove gup_flags FOLL_WRITE games
    // from __get_user_pages()"): the write fault broke COW, so the retry
    // looks the page up as a read -- which, if MADV_DONTNEED zapped the COW
    // copy meanwhile, faults in and returns the page-cache page (Dirty COW).
    // Only VM_FAULT_WRITE's one era sets it (do_wp_page(), src/mm/memory.cpp).
    if ((ret & VM_FAULT_WRITE) && !(vma.flags & VM_WRITE)) {
        *flags_p &= ~FOLL_WRITE;
        trace::note(trace::Kind::Decision, "faultin_page", addr,
                    "v4.8: VM_FAULT_WRITE on a VMA without VM_WRITE: FOLL_WRITE dropped for the retry (Dirty COW)");
    }
    return 0;
}

long __get_user_pages(MmStruct& mm, vaddr_t start, unsigned long nr_pages, unsigned gup_flags, Page** pages,
                      int* locked, Vma** vmas) {
    if (!nr_pages) return 0;
    long i = 0;
    long ret = 0;
    Vma* vma = nullptr;
    File* file = nullptr;  // FOLL_SAME_FILE: the vm_file every VMA must share
    unsigned long page_mask = 0;
    start &= ~(PAGE_SIZE - 1);  // untagged_addr + page alignment

    do {
        if (!vma || start >= vma->end) {
            vma = mm.vma_lookup(start);  // gup_vma_lookup(): never expands stacks
            if (gup_flags & FOLL_MADV_POPULATE) {
                if (!vma) {
                    ret = -ENOMEM;
                    break;
                }
                if (check_vma_flags(*vma, gup_flags)) {
                    ret = -EINVAL;
                    break;
                }
            } else {
                if (!vma) {
                    ret = -EFAULT;
                    break;
                }
                ret = check_vma_flags(*vma, gup_flags);
                trace::check_result(*vma, start, static_cast<int>(ret));
                // FOLL_SAME_FILE (never merged): the v1-v3 patch tested it in
                // check_vma_flags() against the first VMA's file of this call.
                if (!ret && (gup_flags & FOLL_SAME_FILE) && vma->file != (i == 0 ? vma->file : file)) ret = -EFAULT;
                if (ret) break;
            }
            file = vma->file;
        }

        FollowResult r;
        // This page's flags: v4.8's faultin_page() may drop FOLL_WRITE.
        unsigned foll_flags = gup_flags;
        for (;;) {
            if (fatal_signal_pending_current()) {
                ret = -EINTR;
                goto out;
            }
            // __get_user_pages()'s cond_resched() before each lookup: another
            // thread (a MADV_DONTNEED, say) may run between a fault and the
            // lookup that follows it.
            sync::point(sync::Point::Resched);
            r = follow_page_mask(*vma, start, foll_flags, &page_mask);
            trace::follow(start, r.page, r.err);
            if (r.page || (r.err != 0 && r.err != -EMLINK)) break;
            ret = faultin_page(*vma, start, &foll_flags, r.err == -EMLINK, locked);
            if (ret == 0) continue;  // fault handled: follow again
            if (ret == -EBUSY || ret == -EAGAIN) ret = 0;  // the lock is gone
            goto out;
        }

        if (r.err == -EEXIST) {
            // A valid entry without a struct page: an error only when the
            // caller wants pages; populate just skips it.
            if (pages) {
                ret = -EEXIST;
                goto out;
            }
            page_mask = 0;
        } else if (r.err) {
            ret = r.err;
            goto out;
        }

        {
            unsigned long page_increm = 1 + (~(start >> PAGE_SHIFT) & page_mask);
            if (page_increm > nr_pages) page_increm = nr_pages;
            if (pages && r.page) {
                Folio* folio = page_folio(r.page);
                // One grab for the rest of the leaf's subpages.
                if (page_increm > 1) {
                    Status s = try_grab_folio(mm.kernel, folio, static_cast<int>(page_increm - 1), gup_flags);
                    if (!s) {
                        gup_put_folio(mm.kernel, folio, 1, gup_flags);
                        ret = s.error().negative();
                        goto out;
                    }
                }
                for (unsigned long j = 0; j < page_increm; j++) pages[i + static_cast<long>(j)] = r.page + j;
            }
            // vmas[] (before v6.5): one entry per page, skipped ones included.
            if (vmas)
                for (unsigned long j = 0; j < page_increm; j++) vmas[i + static_cast<long>(j)] = vma;
            i += static_cast<long>(page_increm);
            start += page_increm * PAGE_SIZE;
            nr_pages -= page_increm;
        }
    } while (nr_pages);
out:
    return i ? i : ret;
}

long __get_user_pages_locked(MmStruct& mm, vaddr_t start, unsigned long nr_pages, Page** pages, int* locked,
                             unsigned flags, Vma** vmas) PL_NO_TSA {
    if (!nr_pages) return 0;
    if ((flags & FOLL_SAME_FILE) && !mm.kernel.cfg.gup_foll_same_file) {
        mm.kernel.warn("__get_user_pages_locked",
                       "FOLL_SAME_FILE was proposed (Apr 2023, v1-v3 of the vmas removal) but never merged; "
                       "configure gup.foll_same_file=on to model it");
        return -EINVAL;
    }
    bool must_unlock = false;
    if (!*locked) {
        // mmap_read_lock_killable()
        if (!mm.mmap_lock.down_read_until([] { return fatal_signal_pending_current(); })) return -EAGAIN;
        must_unlock = true;
        *locked = 1;
        trace::note(trace::Kind::Lock, "__get_user_pages_locked", start, "mmap_read_lock taken (the caller did not hold it)");
    }
    if (flags & FOLL_PIN) mm_set_has_pinned_flag(mm);
    if (pages && !(flags & FOLL_PIN)) flags |= FOLL_GET;

    long pages_done = 0;
    for (;;) {
        long ret = __get_user_pages(mm, start, nr_pages, flags, pages, locked, vmas);
        // VMAs this thread got from vmas[] earlier are dangling once the lock is gone.
        if (!*locked) vmas_lock_released(mm);
        if (!*locked) trace::note(trace::Kind::Lock, "__get_user_pages_locked", start, "mmap_lock dropped by the fault (VM_FAULT_RETRY/COMPLETED)");
        if (!(flags & FOLL_UNLOCKABLE)) {
            // VM_FAULT_RETRY could not be returned.
            pages_done = ret;
            break;
        }
        if (ret > 0) {
            nr_pages -= static_cast<unsigned long>(ret);
            pages_done += ret;
            if (!nr_pages) break;
        }
        if (*locked) {
            // No retry happened (or NOWAIT): done.
            if (!pages_done) pages_done = ret;
            break;
        }
        // The fault dropped the lock: skip what was done, retry one page
        // with FOLL_TRIED until it sticks, then go on.
        if (ret > 0) {
            if (pages) pages += ret;
            start += static_cast<unsigned long>(ret) << PAGE_SHIFT;
        }
        must_unlock = true;
        for (;;) {
            if (gup_signal_pending(flags)) {
                if (!pages_done) pages_done = -EINTR;
                goto done;
            }
            if (!mm.mmap_lock.down_read_until([] { return fatal_signal_pending_current(); })) {
                if (!pages_done) pages_done = -EINTR;
                goto done;
            }
            *locked = 1;
            trace::note(trace::Kind::Lock, "__get_user_pages_locked", start, "mmap_lock retaken: retry one page with FOLL_TRIED");
            ret = __get_user_pages(mm, start, 1, flags | FOLL_TRIED, pages, locked);
            if (*locked) break;
            vmas_lock_released(mm);
        }
        if (ret != 1) {
            if (!pages_done) pages_done = ret;
            break;
        }
        nr_pages--;
        pages_done++;
        if (!nr_pages) break;
        if (pages) pages++;
        start += PAGE_SIZE;
    }
done:
    if (must_unlock && *locked) {
        vmas_lock_released(mm);
        mmap_read_unlock(mm);
        trace::note(trace::Kind::Lock, "__get_user_pages_locked", start, "mmap_read_unlock");
        *locked = 0;
    }
    // 0 pages without NOWAIT would be a bug (WARN_ON_ONCE upstream).
    if (pages_done == 0 && !(flags & FOLL_NOWAIT)) pages_done = -EFAULT;
    return pages_done;
}

}  // namespace pl
