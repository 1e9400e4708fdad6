// pinlab — a host process serving its channel (see host_worker.h).
#include "oracle/host_worker.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "oracle/host_channel.h"
#include "oracle/host_doors.h"

namespace pl::oracle {

namespace {

constexpr uint64_t kPage = 4096;

// ---- the CPU's view: loads and stores that may fault --------------------
//
// A fault inside a guarded access jumps back to guarded_access(), which
// reports -EFAULT; sigsetjmp(env, 1) saves the signal mask so that the jump
// also unblocks the signal being handled. The access goes a page at a time,
// in address order, so a fault leaves exactly the pages before the faulting
// one done — what the model's access_user() does (src/mm/uaccess.cpp).
sigjmp_buf g_fault_jmp;
volatile sig_atomic_t g_guarded = 0;

void on_fault(int sig, siginfo_t*, void*) {
    if (g_guarded) {
        g_guarded = 0;
        siglongjmp(g_fault_jmp, 1);
    }
    // Not ours: die of it, as the process would have.
    ::signal(sig, SIG_DFL);
}

void install_fault_handlers() {
    struct sigaction sa {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGSEGV, &sa, nullptr);
    ::sigaction(SIGBUS, &sa, nullptr);
}

enum class Access { load, store, fill };

// The pages of [uaddr, uaddr + len) done so far; volatile because it must be
// exact when a fault jumps out of the loop.
volatile uint64_t g_done = 0;

__attribute__((noinline)) int guarded_access(Access how, uint64_t uaddr, char* buf, int byte, uint64_t len) {
    if (uaddr + len < uaddr) return -EFAULT;
    g_done = 0;
    if (sigsetjmp(g_fault_jmp, 1)) return -EFAULT;
    g_guarded = 1;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    while (g_done < len) {
        const uint64_t done = g_done;
        const uint64_t a = uaddr + done;
        const uint64_t chunk = std::min(kPage - (a % kPage), len - done);
        char* user = reinterpret_cast<char*>(a);
        switch (how) {
            case Access::load: std::memcpy(buf + done, user, chunk); break;
            case Access::store: std::memcpy(user, buf + done, chunk); break;
            case Access::fill: std::memset(user, byte, chunk); break;
        }
        std::atomic_signal_fence(std::memory_order_seq_cst);
        g_done = done + chunk;
    }
    std::atomic_signal_fence(std::memory_order_seq_cst);
    g_guarded = 0;
    return 0;
}

// ---- per-process state (inherited over fork, like the fds it names) ------

struct WorkerState {
    int chan = -1;
    // Session file id -> this process's fd for it, received on first use.
    std::map<int64_t, int> files;
    bool skip_reply = false;  // set in a fork child: its parent replies
};

WorkerState g_state;

int64_t sys_ret(long r) { return r == -1 ? -static_cast<int64_t>(errno) : static_cast<int64_t>(r); }

// The fd of session file `id` (0: none, -1), or -EBADF if never received.
int64_t file_fd(int64_t id) {
    if (id == 0) return -1;
    auto it = g_state.files.find(id);
    return it == g_state.files.end() ? -EBADF : it->second;
}

// VmLck/VmPin of /proc/self/status, in pages.
int64_t status_pages(std::string field) {
    if (!field.empty() && field.back() == ':') field.pop_back();
    if (field.empty()) return -EINVAL;
    int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    std::string text;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        text.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    const std::string key = "\n" + field + ":";
    auto at = ("\n" + text).find(key);
    if (at == std::string::npos) return -ENOENT;
    const char* p = text.c_str() + at + key.size() - 1;
    char* end = nullptr;
    unsigned long long kb = std::strtoull(p, &end, 10);
    if (end == p) return -EPROTO;
    return static_cast<int64_t>(kb * 1024 / static_cast<unsigned long long>(::sysconf(_SC_PAGESIZE)));
}

int64_t clear_refs(int64_t value) {
    int fd = ::open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    const std::string s = std::to_string(value) + "\n";
    ssize_t n;
    do n = ::write(fd, s.data(), s.size());
    while (n < 0 && errno == EINTR);
    int64_t r = n < 0 ? -static_cast<int64_t>(errno) : 0;
    ::close(fd);
    return r;
}

std::vector<std::pair<uint64_t, uint64_t>> unpack_iovecs(const std::string& bytes) {
    std::vector<std::pair<uint64_t, uint64_t>> v(bytes.size() / 16);
    for (size_t i = 0; i < v.size(); ++i) {
        std::memcpy(&v[i].first, bytes.data() + 16 * i, 8);
        std::memcpy(&v[i].second, bytes.data() + 16 * i + 8, 8);
    }
    return v;
}

// fork(): the child drops its parent's channel and serves the one that came
// with the request; the parent replies with the child's pid.
int64_t do_fork(ChannelRequest& req) {
    if (req.fd < 0) return -EBADF;
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(g_state.chan);
        g_state.chan = req.fd;
        req.fd = -1;
        g_state.skip_reply = true;
        return 0;
    }
    const int e = errno;
    ::close(req.fd);
    req.fd = -1;
    return pid < 0 ? -e : pid;
}

// CAP_IPC_LOCK in the effective set, on or off (capset(2); it stays in the
// permitted set, so it can come back). Scenario tasks start without it, as
// the model's tasks do (pl_task_set_cap_ipc_lock): a root conformance run
// would otherwise lift RLIMIT_MEMLOCK for every io_uring registration
// (io_account_mem(): capable(CAP_IPC_LOCK) skips the charge's limit).
int64_t set_cap_ipc_lock(bool on) {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (::syscall(SYS_capget, &hdr, data) != 0) return -errno;
    const unsigned bit = 1u << (CAP_IPC_LOCK % 32);
    __user_cap_data_struct& d = data[CAP_IPC_LOCK / 32];
    if (on && !(d.permitted & bit)) return -EPERM;
    d.effective = on ? (d.effective | bit) : (d.effective & ~bit);
    if (::syscall(SYS_capset, &hdr, data) != 0) return -errno;
    return 0;
}

ChannelReply dispatch(ChannelRequest& req) {
    ChannelReply rep;
    const int64_t* a = req.args;
    auto u = [&](int i) { return static_cast<uint64_t>(a[i]); };
    auto file_arg = [&](int i, int64_t* fd) {
        *fd = file_fd(a[i]);
        return *fd >= 0 || a[i] == 0;
    };
    int64_t fd = -1;
    switch (req.op) {
        case HostOp::mmap:
            if (!req.bytes.empty()) {
                rep.ret = doors::device_mmap(req.bytes, u(0), u(1), static_cast<int>(a[2]), static_cast<int>(a[3]), u(5));
                break;
            }
            if (!file_arg(4, &fd)) {
                rep.ret = fd;
                break;
            }
            rep.ret = sys_ret(::syscall(SYS_mmap, u(0), u(1), a[2], a[3], fd, u(5)));
            break;
        case HostOp::munmap: rep.ret = sys_ret(::syscall(SYS_munmap, u(0), u(1))); break;
        case HostOp::mprotect: rep.ret = sys_ret(::syscall(SYS_mprotect, u(0), u(1), a[2])); break;
        case HostOp::madvise: rep.ret = sys_ret(::syscall(SYS_madvise, u(0), u(1), a[2])); break;
        case HostOp::mremap: rep.ret = sys_ret(::syscall(SYS_mremap, u(0), u(1), u(2), a[3], u(4))); break;
        case HostOp::read:
            if (u(1) > kMaxChannelBytes) {
                rep.ret = -E2BIG;
                break;
            }
            rep.bytes.assign(u(1), '\0');
            rep.ret = guarded_access(Access::load, u(0), rep.bytes.data(), 0, u(1));
            if (rep.ret < 0)
                rep.bytes.clear();
            else
                rep.ret = a[1];
            break;
        case HostOp::write:
            rep.ret = guarded_access(Access::store, u(0), req.bytes.data(), 0, req.bytes.size());
            if (rep.ret == 0) rep.ret = static_cast<int64_t>(req.bytes.size());
            break;
        case HostOp::memset:
            rep.ret = guarded_access(Access::fill, u(0), nullptr, static_cast<int>(a[1]), u(2));
            if (rep.ret == 0) rep.ret = a[2];
            break;
        case HostOp::clear_refs: rep.ret = clear_refs(a[0]); break;
        case HostOp::set_rlimit_memlock: {
            // The model's task has one limit; a process has a soft and a
            // hard one. Set the soft limit, raising the hard one only when
            // the value is above it (that needs CAP_SYS_RESOURCE, which a
            // container's root may lack: -EPERM then, as the kernel says).
            rlimit rl{};
            ::getrlimit(RLIMIT_MEMLOCK, &rl);
            rl.rlim_cur = static_cast<rlim_t>(u(0));
            if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max) rl.rlim_max = rl.rlim_cur;
            rep.ret = ::setrlimit(RLIMIT_MEMLOCK, &rl) == 0 ? 0 : -errno;
            break;
        }
        case HostOp::status_pages: rep.ret = status_pages(req.bytes); break;
        case HostOp::fork: rep.ret = do_fork(req); break;
        case HostOp::exit: rep.ret = 0; break;  // the loop exits after replying
        case HostOp::io_uring_setup: rep.ret = doors::io_uring_setup(static_cast<unsigned>(a[0])); break;
        case HostOp::io_uring_register_buffers:
            rep.ret = doors::io_uring_register_buffers(a[0], unpack_iovecs(req.bytes));
            break;
        case HostOp::io_uring_unregister_buffers: rep.ret = doors::io_uring_unregister_buffers(a[0]); break;
        case HostOp::io_uring_rw_fixed:
            if (a[2] == 0 || !file_arg(2, &fd)) {
                rep.ret = a[2] == 0 ? -EBADF : fd;
                break;
            }
            rep.ret = doors::io_uring_rw_fixed(a[0], a[1] != 0, static_cast<int>(fd), static_cast<int>(a[3]), u(4), u(5),
                                               u(6));
            break;
        case HostOp::io_uring_exit: rep.ret = doors::io_uring_exit(a[0]); break;
        case HostOp::process_vm_rw:
            rep.ret = doors::process_vm_rw(a[0] != 0, static_cast<pid_t>(a[1]), u(2), u(3), u(4));
            break;
        case HostOp::direct_rw:
            if (a[1] == 0 || !file_arg(1, &fd)) {
                rep.ret = a[1] == 0 ? -EBADF : fd;
                break;
            }
            rep.ret = doors::direct_rw(a[0] != 0, static_cast<int>(fd), u(2), u(3), u(4));
            break;
        case HostOp::vmsplice_file: {
            if (a[0] == 0 || !file_arg(0, &fd)) {
                rep.ret = a[0] == 0 ? -EBADF : fd;
                break;
            }
            rep.ret = doors::vmsplice_fd(static_cast<int>(fd), u(1), u(2));
            break;
        }
        case HostOp::set_cap_ipc_lock: rep.ret = set_cap_ipc_lock(a[0] != 0); break;
        default: rep.ret = -ENOSYS; break;
    }
    return rep;
}

}  // namespace

void host_worker_main(int chan) {
    g_state = WorkerState{};
    g_state.chan = chan;
    // Our children (scenario forks) are reaped by the kernel, not by us.
    ::signal(SIGCHLD, SIG_IGN);
    ::signal(SIGPIPE, SIG_IGN);
    install_fault_handlers();
    (void)set_cap_ipc_lock(false);  // as the model's tasks start (a no-op when not root)
    try {
        for (;;) {
            ChannelRequest req;
            if (channel_recv_request(g_state.chan, &req, -1) < 0) ::_exit(0);  // EOF: the controller is gone
            // A descriptor that names a session file joins this process's
            // table (and its children's, by inheritance).
            if (req.fd >= 0 && req.fd_file > 0) {
                auto [it, fresh] = g_state.files.emplace(req.fd_file, req.fd);
                if (!fresh) {
                    ::close(it->second);
                    it->second = req.fd;
                }
                req.fd = -1;
            }
            ChannelReply rep = dispatch(req);
            if (req.fd >= 0) ::close(req.fd);  // an fd the operation did not take
            if (g_state.skip_reply) {
                g_state.skip_reply = false;  // a fork child: its parent answered
                continue;
            }
            if (channel_send_reply(g_state.chan, rep, -1) < 0) ::_exit(0);
            if (req.op == HostOp::exit) ::_exit(0);
        }
    } catch (...) {
        // Out of memory for a request, or the like: the controller sees EOF (-EPIPE).
        ::_exit(1);
    }
}

}  // namespace pl::oracle
