#include "scenario/commands.h"

namespace pl::scenario {
namespace {

using A = Arg;
constexpr Arg kMmap[] = {A::Int, A::Prot, A::Share, A::Backing};
constexpr Arg kAddrLen[] = {A::Int, A::Int};
constexpr Arg kAddrLenProt[] = {A::Int, A::Int, A::Prot};
constexpr Arg kAddrLenInt[] = {A::Int, A::Int, A::Int};
constexpr Arg kMremap[] = {A::Int, A::Int, A::Int, A::Int};
constexpr Arg kWrite[] = {A::Int, A::Data};
constexpr Arg kAddr[] = {A::Int};
constexpr Arg kOpen[] = {A::Str, A::Int};
constexpr Arg kFileOffStr[] = {A::File, A::Int, A::Str};
constexpr Arg kFileOffLen[] = {A::File, A::Int, A::Int};
constexpr Arg kFile[] = {A::File};
constexpr Arg kFileInt[] = {A::File, A::Int};
constexpr Arg kGup[] = {A::Int, A::Int, A::Int};
constexpr Arg kPage[] = {A::Page};
constexpr Arg kPagesN[] = {A::Pages, A::Int};
constexpr Arg kPagesDirtyN[] = {A::Pages, A::Bool, A::Int};
constexpr Arg kPageNDirty[] = {A::Page, A::Int, A::Bool};
constexpr Arg kPages[] = {A::Pages};
constexpr Arg kPageN[] = {A::Page, A::Int};
constexpr Arg kAddrInt[] = {A::Int, A::Int};
constexpr Arg kDevRead[] = {A::Page, A::Int, A::Int};
constexpr Arg kDevWrite[] = {A::Page, A::Int, A::Str};

// `locked`: the caller passes int locked = 1 and GUP may drop mmap_lock.
constexpr Option kRemoteOpts[] = {{"locked", false}};
constexpr Option kMmapOpts[] = {{"at", true}, {"off", true}, {"populate", false}, {"fixed", false},
                                {"noreserve", false}, {"flags", true}};
constexpr Option kMremapOpts[] = {{"to", true}};
// drivers
constexpr Arg kD1[] = {A::Int};
constexpr Arg kD2[] = {A::Int, A::Int};
constexpr Arg kD3[] = {A::Int, A::Int, A::Int};
constexpr Arg kD4[] = {A::Int, A::Int, A::Int, A::Int};
constexpr Arg kD1Str[] = {A::Int, A::Str};
constexpr Arg kD2Str[] = {A::Int, A::Int, A::Str};
constexpr Arg kStr1[] = {A::Str};
constexpr Arg kStr2[] = {A::Str, A::Str};
constexpr Arg kStrD1[] = {A::Str, A::Int};
constexpr Arg kStrD3[] = {A::Str, A::Int, A::Int, A::Int};
constexpr Arg kBool1[] = {A::Bool};
constexpr Arg kFileD3[] = {A::File, A::Int, A::Int, A::Int};
constexpr Arg kIovecs[] = {A::Int, A::Int, A::Int, A::Int, A::Int, A::Int, A::Int, A::Int, A::Int};
constexpr Arg kFixed[] = {A::Int, A::File, A::Int, A::Int, A::Int, A::Int};
constexpr Option kRwOpts[] = {{"read", false}, {"write", false}};
constexpr Option kWriteOpts[] = {{"write", false}};
constexpr Option kLockedOpts[] = {{"user", false}};
constexpr Option kTtmOpts[] = {{"vram", false}, {"system", false}, {"mixedmap", false}, {"no_huge", false},
                               {"pfn_map", false}};
constexpr Option kPlacementOpts[] = {{"system", false}, {"vram", false}};
constexpr Option kVb2Opts[] = {{"vmalloc", false}, {"dma_contig", false}, {"dma_sg", false},
                               {"capture", false}, {"output", false},   {"iommu", false}};
constexpr Option kInflightOpts[] = {{"inflight", false}};
constexpr Option kIbOpts[] = {{"local_write", false}, {"remote_write", false}, {"remote_read", false},
                              {"on_demand", false}};
constexpr Option kFutexOpts[] = {{"shared", false}, {"read", false}};

const CommandSpec kCommands[] = {
    {"mmap", Cmd::mmap, kMmap, 4, Type::Int, false, true, kMmapOpts,
     "mmap LEN PROT private|shared anon|shmem|memfd|hugetlb|file FS[:SIZE]|file F [at ADDR] [off N] [populate] "
     "[fixed] [noreserve] [flags MAP_...]"},
    {"munmap", Cmd::munmap, kAddrLen, 2, Type::Int, false, true, {}, "munmap ADDR LEN"},
    {"mprotect", Cmd::mprotect, kAddrLenProt, 3, Type::Int, false, true, {}, "mprotect ADDR LEN PROT"},
    {"madvise", Cmd::madvise, kAddrLenInt, 3, Type::Int, false, true, {}, "madvise ADDR LEN MADV_..."},
    {"mremap", Cmd::mremap, kMremap, 3, Type::Int, false, true, kMremapOpts,
     "mremap ADDR OLD_LEN NEW_LEN [MREMAP_...] [to ADDR]"},
    {"write", Cmd::write, kWrite, 2, Type::Int, false, true, {}, "write ADDR \"bytes\" | write ADDR fill BYTE LEN"},
    {"read", Cmd::read, kAddrLen, 2, Type::Any, false, true, {}, "read ADDR LEN"},
    {"memset", Cmd::memset, kAddrLenInt, 3, Type::Int, false, true, {}, "memset ADDR BYTE LEN"},
    {"migrate", Cmd::migrate, kAddr, 1, Type::Int, false, true, {}, "migrate ADDR"},
    {"compact", Cmd::compact, {}, 0, Type::Int, false, false, {}, "compact"},
    {"clear_refs", Cmd::clear_refs, kAddr, 1, Type::Int, false, true, {},
     "clear_refs VALUE   (echo VALUE > /proc/PID/clear_refs; 4: soft-dirty)"},
    {"mem_write", Cmd::mem_write, kWrite, 2, Type::Int, false, true, {},
     "mem_write ADDR \"bytes\" | mem_write ADDR fill BYTE LEN   (pwrite to /proc/PID/mem: FOLL_FORCE)"},
    {"mem_read", Cmd::mem_read, kAddrLen, 2, Type::Any, false, true, {},
     "mem_read ADDR LEN   (pread of /proc/PID/mem: FOLL_FORCE)"},
    {"open", Cmd::open, kOpen, 2, Type::File, false, false, {}, "open FS SIZE   (FS: ext4 xfs btrfs tmpfs memfd ...)"},
    {"pwrite", Cmd::pwrite, kFileOffStr, 3, Type::Int, false, false, {}, "pwrite F OFF \"bytes\""},
    {"pread", Cmd::pread, kFileOffLen, 3, Type::Any, false, false, {}, "pread F OFF LEN"},
    {"fsync", Cmd::fsync, kFile, 1, Type::Int, false, false, {}, "fsync F"},
    {"ftruncate", Cmd::ftruncate, kFileInt, 2, Type::Int, false, false, {}, "ftruncate F SIZE"},
    {"fallocate", Cmd::fallocate, kFileOffLen, 3, Type::Int, false, false, {}, "fallocate F OFF LEN   (mode 0)"},
    {"read_disk", Cmd::read_disk, kFileOffLen, 3, Type::Any, false, false, {}, "read_disk F OFF LEN"},
    {"get_user_pages", Cmd::get_user_pages, kGup, 3, Type::Int, true, true, {}, "get_user_pages ADDR NR FLAGS [-> P]"},
    {"get_user_pages_fast", Cmd::get_user_pages_fast, kGup, 3, Type::Int, true, true, {},
     "get_user_pages_fast ADDR NR FLAGS [-> P]"},
    {"get_user_pages_fast_only", Cmd::get_user_pages_fast_only, kGup, 3, Type::Int, true, true, {},
     "get_user_pages_fast_only ADDR NR FLAGS [-> P]"},
    {"get_user_pages_unlocked", Cmd::get_user_pages_unlocked, kGup, 3, Type::Int, true, true, {},
     "get_user_pages_unlocked ADDR NR FLAGS [-> P]"},
    {"get_user_pages_remote", Cmd::get_user_pages_remote, kGup, 3, Type::Int, true, true, kRemoteOpts,
     "T: get_user_pages_remote ADDR NR FLAGS [locked] [-> P]   (T's mm; `locked`: *locked in `locked`)"},
    {"pin_user_pages", Cmd::pin_user_pages, kGup, 3, Type::Int, true, true, {}, "pin_user_pages ADDR NR FLAGS [-> P]"},
    {"pin_user_pages_fast", Cmd::pin_user_pages_fast, kGup, 3, Type::Int, true, true, {},
     "pin_user_pages_fast ADDR NR FLAGS [-> P]"},
    {"pin_user_pages_unlocked", Cmd::pin_user_pages_unlocked, kGup, 3, Type::Int, true, true, {},
     "pin_user_pages_unlocked ADDR NR FLAGS [-> P]"},
    {"pin_user_pages_remote", Cmd::pin_user_pages_remote, kGup, 3, Type::Int, true, true, kRemoteOpts,
     "T: pin_user_pages_remote ADDR NR FLAGS [locked] [-> P]   (T's mm; `locked`: *locked in `locked`)"},
    {"unpin_user_page", Cmd::unpin_user_page, kPage, 1, Type::Int, false, false, {}, "unpin_user_page P[i]"},
    {"unpin_user_pages", Cmd::unpin_user_pages, kPagesN, 1, Type::Int, false, false, {}, "unpin_user_pages P [N]"},
    {"unpin_user_pages_dirty_lock", Cmd::unpin_user_pages_dirty_lock, kPagesDirtyN, 2, Type::Int, false, false, {},
     "unpin_user_pages_dirty_lock P dirty|clean [N]"},
    {"unpin_user_page_range_dirty_lock", Cmd::unpin_user_page_range_dirty_lock, kPageNDirty, 3, Type::Int, false,
     false, {}, "unpin_user_page_range_dirty_lock P[i] N dirty|clean"},
    {"unpin_folio", Cmd::unpin_folio, kPage, 1, Type::Int, false, false, {}, "unpin_folio P[i]   (its folio)"},
    {"unpin_user_folio", Cmd::unpin_user_folio, kPageN, 2, Type::Int, false, false, {},
     "unpin_user_folio P[i] N   (N pins of its folio)"},
    {"folio_add_pin", Cmd::folio_add_pin, kPage, 1, Type::Int, false, false, {}, "folio_add_pin P[i]"},
    {"folio_add_pins", Cmd::folio_add_pins, kPageN, 2, Type::Int, false, false, {}, "folio_add_pins P[i] N"},
    {"get_dump_page", Cmd::get_dump_page, kAddr, 1, Type::Int, true, true, {},
     "get_dump_page ADDR [-> P]   (1: a page, 0: a hole)"},
    {"fixup_user_fault", Cmd::fixup_user_fault, kAddrInt, 2, Type::Int, false, true, {},
     "fixup_user_fault ADDR FAULT_FLAG_..."},
    {"put_user_page", Cmd::put_user_page, kPage, 1, Type::Int, false, false, {}, "put_user_page P[i]   (era v5.3, v5.5)"},
    {"put_user_pages", Cmd::put_user_pages, kPagesN, 1, Type::Int, false, false, {}, "put_user_pages P [N]"},
    {"put_user_pages_dirty_lock", Cmd::put_user_pages_dirty_lock, kPagesDirtyN, 2, Type::Int, false, false, {},
     "put_user_pages_dirty_lock P dirty|clean [N]"},
    {"put_page", Cmd::put_page, kPages, 1, Type::Int, false, false, {}, "put_page P[i] | put_page P (each page)"},
    {"get_page", Cmd::get_page, kPage, 1, Type::Int, false, false, {}, "get_page P[i]"},
    {"set_page_dirty_lock", Cmd::set_page_dirty_lock, kPage, 1, Type::Int, false, false, {},
     "set_page_dirty_lock P[i]"},
    {"device_read", Cmd::device_read, kDevRead, 3, Type::Any, false, false, {}, "device_read P[i] OFF LEN"},
    {"device_write", Cmd::device_write, kDevWrite, 3, Type::Int, false, false, {}, "device_write P[i] OFF \"bytes\""},
    // ---- drivers (driver_commands.cpp); H: a handle id from the creating command
    {"io_uring_setup", Cmd::io_uring_setup, kD1, 1, Type::Int, false, true, {}, "io_uring_setup ENTRIES   (a ring R)"},
    {"io_uring_register_buffers", Cmd::io_uring_register_buffers, kIovecs, 3, Type::Int, false, false, {},
     "io_uring_register_buffers R ADDR LEN [ADDR LEN ...]   (up to 4 iovecs)"},
    {"io_uring_unregister_buffers", Cmd::io_uring_unregister_buffers, kD1, 1, Type::Int, false, false, {},
     "io_uring_unregister_buffers R"},
    {"io_uring_read_fixed", Cmd::io_uring_read_fixed, kFixed, 6, Type::Int, false, false, {},
     "io_uring_read_fixed R F BUF_INDEX ADDR LEN OFF"},
    {"io_uring_write_fixed", Cmd::io_uring_write_fixed, kFixed, 6, Type::Int, false, false, {},
     "io_uring_write_fixed R F BUF_INDEX ADDR LEN OFF"},
    {"io_uring_buffer_segments", Cmd::io_uring_buffer_segments, kD2, 2, Type::Int, false, false, {},
     "io_uring_buffer_segments R BUF_INDEX"},
    {"io_uring_exit", Cmd::io_uring_exit, kD1, 1, Type::Int, false, false, {}, "io_uring_exit R"},
    {"vfio_open", Cmd::vfio_open, {}, 0, Type::Int, false, true, {}, "vfio_open   (a container C)"},
    {"vfio_map_dma", Cmd::vfio_map_dma, kD4, 4, Type::Int, false, false, kRwOpts,
     "vfio_map_dma C IOVA VADDR SIZE [read] [write]"},
    {"vfio_unmap_dma", Cmd::vfio_unmap_dma, kD3, 3, Type::Int, false, false, {}, "vfio_unmap_dma C IOVA SIZE"},
    {"vfio_dma_read", Cmd::vfio_dma_read, kD3, 3, Type::Any, false, false, {}, "vfio_dma_read C IOVA LEN"},
    {"vfio_dma_write", Cmd::vfio_dma_write, kD2Str, 3, Type::Int, false, false, {}, "vfio_dma_write C IOVA \"bytes\""},
    {"vfio_close", Cmd::vfio_close, kD1, 1, Type::Int, false, false, {}, "vfio_close C"},
    {"pipe", Cmd::pipe, {}, 0, Type::Int, false, false, {}, "pipe   (a pipe PIPE)"},
    {"vmsplice", Cmd::vmsplice, kD3, 3, Type::Int, false, true, {}, "vmsplice PIPE ADDR LEN"},
    {"pipe_read", Cmd::pipe_read, kD2, 2, Type::Any, false, false, {}, "pipe_read PIPE LEN"},
    {"pipe_nr_bufs", Cmd::pipe_nr_bufs, kD1, 1, Type::Int, false, false, {}, "pipe_nr_bufs PIPE"},
    {"pipe_close", Cmd::pipe_close, kD1, 1, Type::Int, false, false, {}, "pipe_close PIPE"},
    {"process_vm_readv", Cmd::process_vm_readv, kStrD3, 4, Type::Int, false, true, {},
     "process_vm_readv \"TARGET\" LOCAL_ADDR REMOTE_ADDR LEN"},
    {"process_vm_writev", Cmd::process_vm_writev, kStrD3, 4, Type::Int, false, true, {},
     "process_vm_writev \"TARGET\" LOCAL_ADDR REMOTE_ADDR LEN"},
    {"ptrace_allowed", Cmd::ptrace_allowed, kBool1, 1, Type::Int, false, true, {}, "ptrace_allowed true|false"},
    {"set_rlimit_memlock", Cmd::set_rlimit_memlock, kD1, 1, Type::Int, false, true, {}, "set_rlimit_memlock BYTES"},
    {"cap_ipc_lock", Cmd::cap_ipc_lock, kBool1, 1, Type::Int, false, true, {}, "cap_ipc_lock true|false"},
    {"locked_vm", Cmd::locked_vm, {}, 0, Type::Int, false, true, kLockedOpts,
     "locked_vm [user]   (pages: the mm's counter, or the user's with `user`)"},
    {"pinned_vm", Cmd::pinned_vm, {}, 0, Type::Int, false, true, {}, "pinned_vm   (pages)"},
    {"dma_heap_alloc", Cmd::dma_heap_alloc, kStrD1, 2, Type::File, false, false, {},
     "dma_heap_alloc \"HEAP\" LEN   (a dma-buf file)"},
    {"dma_buf_size", Cmd::dma_buf_size, kFile, 1, Type::Int, false, false, {}, "dma_buf_size F"},
    {"dma_buf_device_read", Cmd::dma_buf_device_read, kFileOffLen, 3, Type::Any, false, false, {},
     "dma_buf_device_read F OFF LEN"},
    {"dma_buf_device_write", Cmd::dma_buf_device_write, kFileOffStr, 3, Type::Int, false, false, {},
     "dma_buf_device_write F OFF \"bytes\""},
    {"ttm_bo_create", Cmd::ttm_bo_create, kD1, 1, Type::File, false, false, kTtmOpts,
     "ttm_bo_create SIZE [vram] [mixedmap] [no_huge] [pfn_map]   (a bo file)"},
    {"ttm_bo_move", Cmd::ttm_bo_move, kFile, 1, Type::Int, false, false, kPlacementOpts,
     "ttm_bo_move F system|vram"},
    {"ttm_bo_placement", Cmd::ttm_bo_placement, kFile, 1, Type::Int, false, false, {},
     "ttm_bo_placement F   (0 system, 1 vram)"},
    {"ttm_bo_pfn", Cmd::ttm_bo_pfn, kFileInt, 2, Type::Int, false, false, {}, "ttm_bo_pfn F PGOFF"},
    {"ttm_bo_read", Cmd::ttm_bo_read, kFileOffLen, 3, Type::Any, false, false, {}, "ttm_bo_read F OFF LEN"},
    {"ttm_bo_write", Cmd::ttm_bo_write, kFileOffStr, 3, Type::Int, false, false, {}, "ttm_bo_write F OFF \"bytes\""},
    {"ttm_bo_put", Cmd::ttm_bo_put, kFile, 1, Type::Int, false, false, {}, "ttm_bo_put F"},
    {"vb2_queue_new", Cmd::vb2_queue_new, kD1, 1, Type::Int, false, true, kVb2Opts,
     "vb2_queue_new SIZEIMAGE [vmalloc|dma_contig|dma_sg] [capture|output] [iommu]   (a queue Q)"},
    {"vb2_reqbufs", Cmd::vb2_reqbufs, kD2, 2, Type::Int, false, false, {}, "vb2_reqbufs Q COUNT"},
    {"vb2_qbuf", Cmd::vb2_qbuf, kD4, 4, Type::Int, false, false, {}, "vb2_qbuf Q INDEX USERPTR LENGTH"},
    {"vb2_dqbuf", Cmd::vb2_dqbuf, kD1, 1, Type::Int, false, false, {}, "vb2_dqbuf Q   (index or -EAGAIN)"},
    {"vb2_device_dma", Cmd::vb2_device_dma, kD1Str, 2, Type::Int, false, false, {}, "vb2_device_dma Q \"bytes\""},
    {"vb2_queue_close", Cmd::vb2_queue_close, kD1, 1, Type::Int, false, false, {}, "vb2_queue_close Q"},
    {"direct_read", Cmd::direct_read, kFileD3, 4, Type::Int, false, true, kInflightOpts,
     "direct_read F ADDR LEN OFF [inflight]   (bytes; with inflight: a dio D)"},
    {"direct_write", Cmd::direct_write, kFileD3, 4, Type::Int, false, true, kInflightOpts,
     "direct_write F ADDR LEN OFF [inflight]"},
    {"dio_complete", Cmd::dio_complete, kD1, 1, Type::Int, false, false, {}, "dio_complete D"},
    {"ib_umem_get", Cmd::ib_umem_get, kD2, 2, Type::Int, false, true, kIbOpts,
     "ib_umem_get ADDR SIZE [local_write] [remote_write] [remote_read] [on_demand]   (a umem U or -errno)"},
    {"ib_umem_release", Cmd::ib_umem_release, kD1, 1, Type::Int, false, false, {}, "ib_umem_release U"},
    {"ib_umem_dma_read", Cmd::ib_umem_dma_read, kD3, 3, Type::Any, false, false, {}, "ib_umem_dma_read U OFF LEN"},
    {"ib_umem_dma_write", Cmd::ib_umem_dma_write, kD2Str, 3, Type::Int, false, false, {},
     "ib_umem_dma_write U OFF \"bytes\""},
    {"ib_umem_nents", Cmd::ib_umem_nents, kD1, 1, Type::Int, false, false, {}, "ib_umem_nents U"},
    {"get_futex_key", Cmd::get_futex_key, kD1, 1, Type::Int, false, true, kFutexOpts,
     "get_futex_key UADDR [shared] [read]   (a key K or -errno)"},
    {"same_key", Cmd::same_key, kD2, 2, Type::Bool, false, false, {}, "same_key K1 K2   (futex keys equal)"},
    {"frame_vector_create", Cmd::frame_vector_create, kD1, 1, Type::Int, false, false, {},
     "frame_vector_create NR_FRAMES   (a vector V)"},
    {"get_vaddr_frames", Cmd::get_vaddr_frames, kD3, 3, Type::Int, true, true, kWriteOpts,
     "get_vaddr_frames V START NR_FRAMES [write] [-> P]   (P: the pages, unless is_pfns)"},
    {"put_vaddr_frames", Cmd::put_vaddr_frames, kD1, 1, Type::Int, false, false, {}, "put_vaddr_frames V"},
    {"frame_vector_destroy", Cmd::frame_vector_destroy, kD1, 1, Type::Int, false, false, {}, "frame_vector_destroy V"},
    {"frame_vector_is_pfns", Cmd::frame_vector_is_pfns, kD1, 1, Type::Bool, false, false, {}, "frame_vector_is_pfns V"},
    {"frame_vector_got_ref", Cmd::frame_vector_got_ref, kD1, 1, Type::Bool, false, false, {}, "frame_vector_got_ref V"},
    {"frame_vector_nr_frames", Cmd::frame_vector_nr_frames, kD1, 1, Type::Int, false, false, {},
     "frame_vector_nr_frames V"},
    {"pin_owner_begin", Cmd::pin_owner_begin, kStr2, 2, Type::Int, false, false, {},
     "pin_owner_begin \"OWNER\" \"SITE\"   (pl_pin_owner_begin)"},
    {"pin_owner_end", Cmd::pin_owner_end, {}, 0, Type::Int, false, false, {}, "pin_owner_end"},
    {"dev_open", Cmd::dev_open, kStr1, 1, Type::File, false, false, {}, "dev_open \"pfnmap|mixedmap|iomem\"   (a file)"},
    {"v6_4_get_user_pages", Cmd::v6_4_get_user_pages, kGup, 3, Type::Int, true, true, {},
     "v6_4_get_user_pages ADDR NR FLAGS [-> P]   (era v6.4: fills vmas[], read with vmas_start I)"},
    {"v6_4_pin_user_pages", Cmd::v6_4_pin_user_pages, kGup, 3, Type::Int, true, true, {},
     "v6_4_pin_user_pages ADDR NR FLAGS [-> P]"},
    {"vmas_start", Cmd::vmas_start, kD1, 1, Type::Int, false, false, {},
     "vmas_start I   (pl_vma_start(vmas[I]) of the last v6_4_* call, after its mmap_read_unlock)"},
    {"vmas_flags", Cmd::vmas_flags, kD1, 1, Type::Int, false, false, {}, "vmas_flags I"},
};

}  // namespace

const CommandSpec* find_command(std::string_view name) {
    for (const CommandSpec& c : kCommands)
        if (c.name == name) return &c;
    return nullptr;
}

std::span<const CommandSpec> all_commands() { return kCommands; }

}  // namespace pl::scenario
