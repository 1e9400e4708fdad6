// pinlab — io_uring fixed buffers: IORING_REGISTER_BUFFERS and the fixed
// reads and writes that use them (io_uring/rsrc.c io_sqe_buffers_register(),
// io_uring/memmap.c io_pin_pages()). The C API is in pinlab/kapi.h.
#pragma once

#include <vector>

#include "base/config.h"
#include "base/sync/rwsem.h"

struct page;

namespace pl {

class Kernel;
class Task;

// How io_pin_pages() pins and vets a buffer in the configured kernel.
enum class IoPinVariant {
    PinFast,   // today: pin_user_pages_fast(), GUP itself refuses what may not be pinned
    VmaCheck,  // v6.4 and earlier: pin_user_pages() + vmas[], rsrc.c checks each VMA
    SameFile,  // seed 002: FOLL_SAME_FILE + a check of the first VMA only
};
IoPinVariant io_pin_variant(const Config& cfg);

// How io_uring_create() charges the memory of the ring itself (SQ/CQ rings
// and the SQE array) to user->locked_vm, against RLIMIT_MEMLOCK, when the
// creator lacks CAP_IPC_LOCK.
enum class IoRingAcct {
    Whole,       // v5.1-v5.3: ring_pages(), the three arrays summed and page-rounded
    PowerOfTwo,  // v5.4-v5.11: ring_pages(), each allocation 2^get_order() pages
    Memcg,       // v5.12-v6.13: __GFP_ACCOUNT (memcg) instead: nothing charged
    Regions,     // v6.14 on: io_create_region() charges each region's pages
};
IoRingAcct io_ring_acct(const Config& cfg);
// The pages io_uring_create() charges for a ring asked for `entries` (1 to
// IORING_MAX_ENTRIES; sq_entries rounded up to a power of two, the CQ twice
// that): {rings, SQE array}; the first holds the whole charge in eras whose
// ring_pages() is one sum, both are 0 where rings are not charged.
struct IoRingPages {
    unsigned long rings = 0;
    unsigned long sqes = 0;
};
IoRingPages io_ring_pages(const Config& cfg, unsigned entries);

// One bio_vec of a registered buffer.
struct IoBvec {
    page* pg = nullptr;          // pinned page (coalesced: the folio's head page)
    unsigned long offset = 0;    // bv_offset
    unsigned long len = 0;       // bv_len
    bool written = false;        // a read_fixed stored into it: released dirty
};

// struct io_mapped_ubuf.
struct IoMappedUbuf {
    unsigned long ubuf = 0;
    unsigned long len = 0;
    unsigned folio_shift = 12;
    bool coalesced = false;      // each bvec holds one pin on a whole folio
    unsigned long acct_pages = 0;
    std::vector<IoBvec> bvec;
};

// struct io_ring_ctx, reduced to the buffer table.
struct IoRing {
    Kernel* kernel = nullptr;
    Task* task = nullptr;        // null once the task has exited (see task_alive())
    unsigned entries = 0;
    // ctx->user (limit_mem/account_mem before v5.12): the creator lacked
    // CAP_IPC_LOCK, so the ring and its buffers are charged to the user's
    // locked_vm and limited by RLIMIT_MEMLOCK; decided once, at creation.
    bool charge_user = false;
    IoRingPages ring_pages;          // charged to user->locked_vm at creation
    unsigned long ring_mm_locked = 0;  // v5.9-v5.11: also in mm->locked_vm (ACCT_LOCKED)
    sync::Rwsem uring_lock;      // ctx->uring_lock (a mutex: taken for write only)
    bool registered = false;     // buf_table.nr != 0
    std::vector<IoMappedUbuf*> bufs;  // null: a sparse slot
};

}  // namespace pl
