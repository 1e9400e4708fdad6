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
    sync::Rwsem uring_lock;      // ctx->uring_lock (a mutex: taken for write only)
    bool registered = false;     // buf_table.nr != 0
    std::vector<IoMappedUbuf*> bufs;  // null: a sparse slot
};

}  // namespace pl
