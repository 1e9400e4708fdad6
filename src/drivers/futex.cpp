// pinlab — get_futex_key() (kernel/futex/core.c): private futexes are keyed by
// mm and address without touching memory; shared ones look the page up with
// get_user_pages_fast() (FOLL_WRITE, then read-only for FUTEX_WAIT) and key
// an anonymous page by mm and address, a page-cache page by its inode's
// sequence number and page index, then drop the GET reference.
#include "drivers/futex.h"

#include <cerrno>
#include <string>

#include "debug/pin_tracker.h"
#include "fs/inode.h"
#include "gup/foll_flags.h"
#include "kapi/kapi_internal.h"
#include "kernel/task.h"
#include "mm/folio.h"
#include "pinlab/kapi.h"

using namespace pl;

namespace {

int get_futex_key(Task& t, unsigned long address, bool shared, bool read_only_ok, FutexKey* key) {
    // The futex word is a naturally aligned u32.
    if (address % sizeof(uint32_t)) return -EINVAL;
    unsigned long end = 0;
    if (__builtin_add_overflow(address, sizeof(uint32_t), &end)) return -EFAULT;  // access_ok()
    key->offset = static_cast<unsigned>(address % PAGE_SIZE);
    address -= key->offset;
    const uintptr_t mm = reinterpret_cast<uintptr_t>(t.mm);
    if (!shared) {
        // PROCESS_PRIVATE: the key is the address space and the address; the
        // memory itself is only read later (futex_get_value_locked()).
        key->ptr = mm;
        key->word = address;
        return 0;
    }
    AsTask as(&t);
    PinOwnerScope owner("futex", "get_futex_key");
    page* pg = nullptr;
    bool ro = false;
    int err = ::get_user_pages_fast(address, 1, FOLL_WRITE, &pg);
    if (err == -EFAULT && read_only_ok) {
        // FUTEX_WAIT only reads the word: a read-only mapping will do.
        err = ::get_user_pages_fast(address, 1, 0, &pg);
        ro = true;
    }
    if (err < 0) return err;
    if (err == 0) return -EFAULT;
    Page* p = reinterpret_cast<Page*>(pg);
    Folio* folio = page_folio(p);
    err = 0;
    if (folio->is_anon()) {
        // A read-only anonymous page can never be written through this mm,
        // so waiting on it makes no sense (and it may be COW-shared).
        if (ro) {
            err = -EFAULT;
        } else {
            key->offset |= FUT_OFF_MMSHARED;
            key->ptr = mm;
            key->word = address;
        }
    } else if (AddressSpace* mapping = folio->mapping()) {
        // get_inode_sequence_number(): a number never reused for another
        // inode; the model's inode ids are unique for the kernel's lifetime.
        key->offset |= FUT_OFF_INODE;
        key->ptr = static_cast<uintptr_t>(mapping->host.ino);
        key->word = folio->index() + folio->page_index(p);  // page_to_pgoff()
    } else {
        // No mapping and not anonymous: the zero page, a driver's page, or a
        // page truncated meanwhile (upstream retries the last case; the model
        // holds no lock that would make it observable).
        err = -EFAULT;
    }
    ::put_page(pg);
    return err;
}

}  // namespace

extern "C" {

int pl_get_futex_key(task_struct* ct, unsigned long uaddr, int flags, pl_futex_key* out) {
    Task* t = reinterpret_cast<Task*>(ct);
    if (!t || !t->mm) {
        kapi_set_error("pl_get_futex_key: invalid argument 't'");
        return -EINVAL;
    }
    if (!out) {
        kapi_set_error("pl_get_futex_key: invalid argument 'out'");
        return -EINVAL;
    }
    if (flags & ~(PL_FUTEX_SHARED | PL_FUTEX_READ)) {
        kapi_set_error("pl_get_futex_key: unknown flags");
        return -EINVAL;
    }
    FutexKey key;
    int r = get_futex_key(*t, uaddr, flags & PL_FUTEX_SHARED, flags & PL_FUTEX_READ, &key);
    if (r) return r;
    out->ptr = key.ptr;
    out->word = key.word;
    out->offset = key.offset;
    return 0;
}

int pl_futex_key_equal(const pl_futex_key* a, const pl_futex_key* b) {
    if (!a || !b) return 0;
    return a->ptr == b->ptr && a->word == b->word && a->offset == b->offset;
}

}  // extern "C"
