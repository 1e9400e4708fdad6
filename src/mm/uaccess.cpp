// pinlab — CPU loads and stores: what the MMU does with a present entry, and
// the page-fault path (arch do_user_addr_fault()) when it is not usable.
#include "mm/uaccess.h"

#include <cstring>
#include <vector>

#include "mm/internal.h"

namespace pl {

using namespace pte;

namespace {

// Performs the access on one page if the entry allows it. Returns false when
// a fault is needed. Called with the page_table_lock held, so the frame
// cannot be unmapped or migrated under the copy.
bool try_access_locked(MmStruct& mm, vaddr_t a, uint8_t* buf, unsigned len, Access how, bool* poisoned) {
    PageTable::Leaf leaf = mm.pgtable.find_leaf(a);
    if (!leaf.slot || !access_permitted(leaf.entry, how == Access::Write)) return false;
    PhysMem& mem = *mm.kernel.mem;
    uint64_t span = 1ULL << level_shift(leaf.level);
    pfn_t pfn = pte::pfn(leaf.entry) + ((a & (span - 1)) >> PAGE_SHIFT);
    if (Page* p = mem.pfn_to_page(pfn); p && PageHWPoison(p)) {
        *poisoned = true;  // a machine check: the process gets SIGBUS
        return true;
    }
    unsigned off = a & ~PAGE_MASK;
    Status s = how == Access::Write ? mem.write_frame(pfn, off, buf, len) : mem.read_frame(pfn, off, buf, len);
    if (!s) {
        *poisoned = true;
        return true;
    }
    // The MMU sets the accessed and dirty bits.
    entry_t e = leaf.entry | YOUNG | (how == Access::Write ? DIRTY : 0);
    if (e != leaf.entry) sync::store(*leaf.slot, e);
    return true;
}

bool vma_allows(const Vma& v, Access how) {
    if (how == Access::Write) return v.flags & VM_WRITE;
    return v.flags & (VM_READ | VM_WRITE | VM_EXEC);  // x86: any access right implies read
}

}  // namespace

Status access_user(MmStruct& mm, vaddr_t addr, void* buf, uint64_t len, Access how) {
    if (len == 0) return ok_status();
    if (addr + len < addr || addr + len > TASK_SIZE + PAGE_SIZE) return Error(EFAULT);
    auto* p = static_cast<uint8_t*>(buf);
    mmap_read_lock(mm);
    uint64_t done = 0;
    while (done < len) {
        vaddr_t a = addr + done;
        unsigned chunk = static_cast<unsigned>(std::min<uint64_t>(PAGE_SIZE - (a & ~PAGE_MASK), len - done));
        unsigned fault_flags = FAULT_FLAG_USER | FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE |
                               (how == Access::Write ? FAULT_FLAG_WRITE : 0);
        bool ok = false;
        for (int attempt = 0; attempt < 64 && !ok; ++attempt) {
            Vma* vma = mm.vma_lookup(a);
            if (!vma || !vma_allows(*vma, how)) {
                mmap_read_unlock(mm);
                return Error(EFAULT);
            }
            bool poisoned = false;
            {
                sync::SpinGuard g(mm.page_table_lock);
                ok = try_access_locked(mm, a, p + done, chunk, how, &poisoned);
            }
            if (poisoned) {
                mmap_read_unlock(mm);
                return Error(EFAULT);
            }
            if (ok) break;
            vm_fault_t r = handle_mm_fault(*vma, a, fault_flags);
            if (r & (VM_FAULT_RETRY | VM_FAULT_COMPLETED)) {
                // The fault dropped the mmap_lock (I/O): take it again and retry.
                mmap_read_lock(mm);
                fault_flags |= FAULT_FLAG_TRIED;
                continue;
            }
            if (r & VM_FAULT_OOM) {
                mmap_read_unlock(mm);
                return Error(ENOMEM);
            }
            if (r & VM_FAULT_ERROR) {
                mmap_read_unlock(mm);
                return Error(EFAULT);
            }
        }
        if (!ok) {
            mmap_read_unlock(mm);
            return Error(EFAULT);
        }
        done += chunk;
    }
    mmap_read_unlock(mm);
    return ok_status();
}

Status memset_user(MmStruct& mm, vaddr_t addr, int c, uint64_t len) {
    std::vector<uint8_t> buf(std::min<uint64_t>(len, 1 << 20), static_cast<uint8_t>(c));
    for (uint64_t done = 0; done < len;) {
        uint64_t n = std::min<uint64_t>(buf.size(), len - done);
        PL_TRY(access_user(mm, addr + done, buf.data(), n, Access::Write));
        done += n;
    }
    return ok_status();
}

}  // namespace pl
