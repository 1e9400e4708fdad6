// pinlab — the wire between the controller and its host processes
// (host_process.h): the zygote and each worker serve one socketpair end,
// one request at a time.
//
// A request is {op, up to 8 int64 arguments, a byte string} and may carry
// one file descriptor (SCM_RIGHTS): a session file the worker has not seen
// yet, or the channel of a process about to be forked. A reply is
// {int64 ret, a byte string}. Both are length-prefixed, refused above
// kMaxChannelBytes, and every wait is EINTR-safe and bounded by a timeout
// (timeout_ms < 0: wait for ever, as the workers do: their controller's
// death is an EOF). A broken or silent peer is an error, never a crash:
// -EPIPE at EOF or a dead peer, -ETIMEDOUT, -EPROTO for a malformed frame.
#pragma once

#include <cstdint>
#include <string>

namespace pl::oracle {

// What a host process is asked to do. The numbers travel on the wire
// between processes of one build only.
enum class HostOp : uint32_t {
    // zygote
    spawn = 1,  // fd: the new worker's channel; ret: its pid
    // worker: memory
    mmap = 10,  // addr len prot flags file off; bytes: device kind ("" none)
    munmap,
    mprotect,
    madvise,
    mremap,      // old_addr old_len new_len flags new_addr
    read,        // addr len -> bytes
    write,       // addr; bytes
    memset,      // addr byte len
    clear_refs,  // value
    set_rlimit_memlock,
    status_pages,  // bytes: field name ("VmLck", "VmPin")
    // worker: processes
    fork = 30,  // fd: the child's channel; ret: the child's pid
    exit,       // replies, then _exit(0)
    // worker: the doors (oracle/host_doors.h)
    io_uring_setup = 40,
    io_uring_register_buffers,  // ring; bytes: (addr, len) uint64 pairs
    io_uring_unregister_buffers,
    io_uring_rw_fixed,  // ring write file buf_index addr len off
    io_uring_exit,
    process_vm_rw,  // write target local remote len
    direct_rw,      // write file addr len off
    vmsplice_file,  // file (a session pipe's write end) addr len
    set_cap_ipc_lock,  // on (CAP_IPC_LOCK in the effective set)
};

// Bytes in one request or reply: larger ones are refused, both ways.
inline constexpr uint64_t kMaxChannelBytes = uint64_t{64} << 20;
inline constexpr int kChannelArgs = 8;

struct ChannelRequest {
    HostOp op = HostOp::spawn;
    int64_t args[kChannelArgs] = {};
    std::string bytes;
    // The session file id the attached descriptor stands for (0: the
    // descriptor, if any, belongs to the operation itself, e.g. fork).
    int64_t fd_file = 0;
    // On receipt: the attached descriptor (O_CLOEXEC), or -1. The receiver
    // owns it.
    int fd = -1;
};

struct ChannelReply {
    int64_t ret = 0;
    std::string bytes;
};

// Send `req`, attaching `pass_fd` when >= 0 (the sender keeps its copy).
// 0 or -errno.
int channel_send_request(int sock, const ChannelRequest& req, int pass_fd, int timeout_ms);
// 0 or -errno (-EPIPE at EOF before a whole request).
int channel_recv_request(int sock, ChannelRequest* req, int timeout_ms);
int channel_send_reply(int sock, const ChannelReply& rep, int timeout_ms);
int channel_recv_reply(int sock, ChannelReply* rep, int timeout_ms);

// Wait until the peer has closed its end (EOF), discarding anything still
// unread; true on EOF (or a reset), false on timeout.
bool channel_wait_eof(int sock, int timeout_ms);

}  // namespace pl::oracle
