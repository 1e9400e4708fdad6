// pinlab — the host kernel's pinning doors, as a scenario task's process
// uses them (src/oracle/host_process.h runs these inside that process).
//
// Every function acts on the calling process: its io_uring rings, pipes and
// memory. Results are >= 0 or -errno, exactly as the syscalls gave them.
// Objects live in a per-process table and are named by handles >= 1; a
// forked child inherits the table, as it inherits the fds behind it.
//
// The doors and the kernel paths they take (upstream, v6.x):
//  * io_uring fixed buffers: io_sqe_buffer_register() pins each iovec with
//    FOLL_WRITE | FOLL_LONGTERM; READ_FIXED/WRITE_FIXED do I/O through the
//    pinned pages (the device's view of them);
//  * vmsplice(): iov_iter_get_pages2(), FOLL_GET references held by the pipe;
//  * process_vm_readv/writev(): pin_user_pages_remote() on the target;
//  * O_DIRECT: iov_iter_extract_pages() → pin_user_pages_fast(), unpinned
//    at completion.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace pl::oracle::doors {

// io_uring (liburing). Without liburing every call returns -EOPNOTSUPP.
int64_t io_uring_setup(unsigned entries);  // ring handle
int64_t io_uring_register_buffers(int64_t ring, const std::vector<std::pair<uint64_t, uint64_t>>& iovecs);
int64_t io_uring_unregister_buffers(int64_t ring);
// READ_FIXED (file -> buffer) or WRITE_FIXED (buffer -> file) on fd, submitted and waited for: cqe->res.
int64_t io_uring_rw_fixed(int64_t ring, bool write, int fd, int buf_index, uint64_t addr, uint64_t len, uint64_t off);
int64_t io_uring_exit(int64_t ring);  // io_uring_queue_exit(); the handle is gone

// Pipes: handle for pipe2(O_NONBLOCK on the read end).
int64_t pipe_new();
int64_t vmsplice(int64_t pipe, uint64_t addr, uint64_t len);      // bytes spliced
// Read up to len bytes; the bytes in *out. -EAGAIN if empty.
int64_t pipe_read(int64_t pipe, uint64_t len, std::string* out);
// Drains what the pipe still holds (its buffers' page references go now,
// even while dups of the write end live on in other processes) and closes it.
int64_t pipe_close(int64_t pipe);
// The pipe's write end (-1 for no such pipe), to hand to another process.
int pipe_write_fd(int64_t pipe);
// vmsplice() of [addr, addr + len) into the pipe behind write end fd.
int64_t vmsplice_fd(int fd, uint64_t addr, uint64_t len);

// process_vm_readv (write=false: remote -> local) or writev, one iovec each side.
int64_t process_vm_rw(bool write, pid_t target, uint64_t local, uint64_t remote, uint64_t len);

// O_DIRECT read (file -> memory at addr) or write (memory -> file) at off,
// through a fresh O_DIRECT open of the file behind fd (/proc/self/fd/N).
// The alignment rules (logical block size) and a file system's refusal of
// O_DIRECT (-EINVAL from open) are the kernel's answer. tmpfs accepts
// O_DIRECT since v6.6 but copies without pinning anything.
int64_t direct_rw(bool write, int fd, uint64_t addr, uint64_t len, uint64_t off);

// A fresh O_DIRECT|O_CLOEXEC open of the file behind fd through
// /proc/self/fd/N: a new open file description, so fd's own flags and offset
// are untouched. The new fd, or -errno. Shared with host_pin.cpp.
enum class DirectAccess { read, write };
int reopen_direct(int fd, DirectAccess access);

// The host's counterparts of pinlab's devices, mapped at (addr hint, len):
//  "pfnmap":   a perf_event ring buffer (dummy software event of this task):
//              perf_mmap() maps it with remap_pfn_range(), VmFlags "pf io"
//              (and "dc de dd": not inherited by fork, not expandable).
//              Unlike pinlab's /dev/pfnmap: the length must be 1 + 2^n pages,
//              MAP_SHARED and offset 0 (else -EINVAL from perf_mmap()), the
//              VMA cannot be split (partial munmap/mprotect: -EINVAL), only
//              page 0 is writable (a store to a later page is SIGBUS), and
//              the kernel owns bytes 8..49 of page 0 (lock, index, times) and
//              writes a few more there at mmap time; bytes 0..7 are stable.
//  "mixedmap": a VM_MIXEDMAP mapping of normal, zeroed pages: an AF_PACKET
//              receive ring of exactly len bytes on an unbound protocol-0
//              socket (no packet ever lands in it; needs CAP_NET_RAW), else
//              io_uring's SQE array (len rounded up to a power of two pages,
//              at most 2 MiB). VmFlags "mm" ("mx" is not a VmFlags mnemonic).
//              Offset must be 0 (-EINVAL otherwise).
// GUP on them, as found on Linux 6.18: every door (O_DIRECT read or write,
// io_uring_register_buffers, vmsplice, process_vm_readv/writev) gets -EFAULT
// on "pfnmap" (check_vma_flags() refuses VM_IO|VM_PFNMAP) and succeeds on
// "mixedmap" (normal PTEs: vm_normal_page() finds the pages).
// Returns the address or -errno (-ENODEV: the host offers none). The fd is
// closed once mapped: the mapping holds the file. MAP_ANONYMOUS in flags is
// ignored (a device mapping is a file mapping).
int64_t device_mmap(const std::string& kind, uint64_t addr, uint64_t len, int prot, int flags, uint64_t off);
// What the host offers for `kind`, probed by mapping one in this process:
// e.g. "perf_event ring buffer (VmFlags: ... io pf ...)"; empty with *why
// when none.
std::string device_probe(const std::string& kind, std::string* why);

// The VmFlags line of /proc/self/smaps for the VMA holding addr ("rd wr sh mr mw me ms io pf dd").
std::string vm_flags_of(uint64_t addr);

}  // namespace pl::oracle::doors
