// pinlab scenarios — the command table: every operation a scenario line may
// call, its arguments and what it returns.
//
// The parser reads arguments from this table; the interpreter executes a
// command by its Cmd id (interpreter.cpp, one case each). Adding a C API call
// (a driver, say) is one Cmd, one row here and one case there.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "scenario/value.h"

namespace pl::scenario {

enum class Cmd : uint8_t {
    // address space (pl_mmap and friends) and the CPU's view
    mmap, munmap, mprotect, madvise, mremap, write, read, memset, migrate, compact, clear_refs,
    // /proc/PID/mem (pl_access_process_vm: GUP with FOLL_FORCE)
    mem_write, mem_read,
    // files (pl_file_new, pl_pwrite, ...)
    open, pwrite, pread, fsync, ftruncate, fallocate, read_disk,
    // GUP (include/pinlab/kapi.h "GUP" block)
    get_user_pages, get_user_pages_fast, get_user_pages_fast_only, get_user_pages_unlocked, get_user_pages_remote,
    pin_user_pages, pin_user_pages_fast, pin_user_pages_unlocked, pin_user_pages_remote,
    unpin_user_page, unpin_user_pages, unpin_user_pages_dirty_lock, unpin_user_page_range_dirty_lock, unpin_folio,
    unpin_user_folio, folio_add_pin, folio_add_pins, put_page, get_page, set_page_dirty_lock,
    get_dump_page, fixup_user_fault,
    // era v5.3/v5.5 (seed 004): put_user_page*()
    put_user_page, put_user_pages, put_user_pages_dirty_lock,
    // the device's view of a pinned page (pl_page_read/pl_page_write)
    device_read, device_write,
    // drivers (src/scenario/driver_commands.cpp; include/pinlab/kapi.h driver blocks)
    io_uring_setup, io_uring_register_buffers, io_uring_unregister_buffers, io_uring_read_fixed,
    io_uring_write_fixed, io_uring_buffer_segments, io_uring_exit,
    vfio_open, vfio_map_dma, vfio_unmap_dma, vfio_dma_read, vfio_dma_write, vfio_close,
    pipe, vmsplice, pipe_read, pipe_nr_bufs, pipe_close,
    process_vm_readv, process_vm_writev, ptrace_allowed, set_rlimit_memlock, cap_ipc_lock, locked_vm, pinned_vm,
    dma_heap_alloc, dma_buf_size, dma_buf_device_read, dma_buf_device_write,
    ttm_bo_create, ttm_bo_move, ttm_bo_placement, ttm_bo_pfn, ttm_bo_read, ttm_bo_write, ttm_bo_put,
    vb2_queue_new, vb2_reqbufs, vb2_qbuf, vb2_dqbuf, vb2_device_dma, vb2_queue_close,
    direct_read, direct_write, dio_complete,
    ib_umem_get, ib_umem_release, ib_umem_dma_read, ib_umem_dma_write, ib_umem_nents,
    get_futex_key, same_key,
    frame_vector_create, get_vaddr_frames, put_vaddr_frames, frame_vector_destroy, frame_vector_is_pfns,
    frame_vector_got_ref, frame_vector_nr_frames,
    pin_owner_begin, pin_owner_end, dev_open,
    v6_4_get_user_pages, v6_4_pin_user_pages, vmas_start, vmas_flags,
};

// How the parser reads one argument.
enum class Arg : uint8_t {
    Int,      // an integer expression: 4K, buf+4K, FOLL_WRITE|FOLL_LONGTERM, -1
    Str,      // a string expression
    Page,     // P[0], a page variable
    Pages,    // P (a page list) or one page
    File,     // a file variable (from `open`)
    Bool,     // true/false, dirty/clean, or an integer expression
    Prot,     // r | rw | rwx | w | x | wx | rx | none, or PROT_* expression
    Share,    // private | shared
    Backing,  // anon | shmem | memfd | hugetlb | file FS[:SIZE] | file VAR
    Data,     // "bytes" | fill BYTE LEN
};

// `keyword` or `keyword VALUE` after the positional arguments.
struct Option {
    std::string_view name;
    bool takes_value;
};

struct CommandSpec {
    std::string_view name;
    Cmd cmd;
    std::span<const Arg> args;
    int required;              // the first `required` args must be present
    Type result;               // what the call yields (Any: an Int or a Str)
    bool pages_out;            // accepts `-> P` (the pages[] array)
    bool uses_task;            // runs as a task (the `T:` prefix or the default task)
    std::span<const Option> options;
    std::string_view usage;    // for messages and docs/SCENARIOS.md
};

// The GUP entry points themselves (get_user_pages* and pin_user_pages*,
// include/pinlab/kapi.h "GUP" block; not the v6.4 vmas[] forms).
constexpr bool is_gup_call(Cmd c) {
    switch (c) {
        case Cmd::get_user_pages:
        case Cmd::get_user_pages_fast:
        case Cmd::get_user_pages_fast_only:
        case Cmd::get_user_pages_unlocked:
        case Cmd::get_user_pages_remote:
        case Cmd::pin_user_pages:
        case Cmd::pin_user_pages_fast:
        case Cmd::pin_user_pages_unlocked:
        case Cmd::pin_user_pages_remote: return true;
        default: return false;
    }
}

// The row for `name`, or nullptr.
const CommandSpec* find_command(std::string_view name);
std::span<const CommandSpec> all_commands();

}  // namespace pl::scenario
