// pinlab — one real process standing for a scenario task (see host_process.h),
// the controller's side: each call is one request on the process's channel.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <utility>

#include "oracle/host_pagemap.h"
#include "oracle/host_process.h"
#include "oracle/host_session_impl.h"

namespace pl::oracle {

namespace {

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// Signal through the pidfd when there is one, so that a pid reused after the
// process was reaped is never hit.
void send_signal(int pidfd, pid_t pid, int sig) {
    if (pidfd >= 0)
        ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0);
    else if (pid > 0)
        ::kill(pid, sig);
}

}  // namespace

HostProcess::Impl::Impl(HostSession::Impl* s, int channel, pid_t p)
    : session(s), chan(channel), pid(p), pidfd(pidfd_open(p)) {
    if (session) session->live.push_back(this);
}

HostProcess::Impl::~Impl() {
    terminate();
    if (pidfd >= 0) ::close(pidfd);
    if (session) session->forget(this);
}

void HostProcess::Impl::wait_gone(int timeout_ms) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    if (pidfd >= 0) {
        // Readable once the process has exited (exit_notify); the pid leaves
        // the table a moment later, when it is reaped (release_task).
        pollfd p{pidfd, POLLIN, 0};
        while (::poll(&p, 1, timeout_ms) < 0 && errno == EINTR) {
        }
        while (::syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) == 0 && std::chrono::steady_clock::now() < end)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return;
    }
    while (pid > 0 && ::kill(pid, 0) == 0 && std::chrono::steady_clock::now() < end)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void HostProcess::Impl::terminate() {
    if (chan < 0) return;
    send_signal(pidfd, pid, SIGKILL);
    // EOF comes at exit_files(), after exit_mm(): the mm is torn down.
    channel_wait_eof(chan, kTeardownTimeoutMs);
    ::close(chan);
    chan = -1;
    wait_gone(kTeardownTimeoutMs);
}

HostResult HostProcess::Impl::call(HostOp op, std::initializer_list<int64_t> args, std::string bytes,
                                   int64_t attach_file, int pass_fd) {
    if (chan < 0) return {-EPIPE, {}};
    ChannelRequest req;
    req.op = op;
    if (args.size() > static_cast<size_t>(kChannelArgs)) return {-EINVAL, {}};
    int i = 0;
    for (int64_t a : args) req.args[i++] = a;
    req.bytes = std::move(bytes);
    bool sending_file = false;
    if (attach_file > 0 && !files_sent.count(attach_file)) {
        if (pass_fd >= 0) return {-EINVAL, {}};  // one descriptor per request
        pass_fd = session ? session->file_fd(attach_file) : -1;
        if (pass_fd < 0) return {-EBADF, {}};
        req.fd_file = attach_file;
        sending_file = true;
    }
    int r = channel_send_request(chan, req, pass_fd, kReplyTimeoutMs);
    if (r == -E2BIG) return {-E2BIG, {}};  // refused before anything was sent
    ChannelReply rep;
    if (r == 0) {
        if (sending_file) files_sent.insert(attach_file);
        r = channel_recv_reply(chan, &rep, kReplyTimeoutMs);
    }
    if (r < 0) {
        // The stream is out of step or the process is gone: it is of no
        // further use. Make sure it is dead, and say why.
        terminate();
        return {r == -ETIMEDOUT ? -ETIMEDOUT : -EPIPE, {}};
    }
    return {rep.ret, std::move(rep.bytes)};
}

HostProcess::HostProcess(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HostProcess::~HostProcess() = default;  // Impl's destructor kills and waits

pid_t HostProcess::pid() const { return impl_->pid; }

Result<std::unique_ptr<HostProcess>> HostProcess::fork() {
    if (impl_->chan < 0) return Error(EPIPE);
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return Error(errno);
    HostResult r = impl_->call(HostOp::fork, {}, {}, 0, sv[1]);
    ::close(sv[1]);
    if (r.ret <= 0) {
        ::close(sv[0]);
        return Error(r.ret < 0 ? static_cast<int>(-r.ret) : EPROTO);
    }
    auto impl = std::make_unique<Impl>(impl_->session, sv[0], static_cast<pid_t>(r.ret));
    impl->files_sent = impl_->files_sent;  // the child inherited the parent's fd table
    return std::unique_ptr<HostProcess>(new HostProcess(std::move(impl)));
}

void HostProcess::exit() {
    if (impl_->chan < 0) return;
    HostResult r = impl_->call(HostOp::exit, {});
    if (r.ret == 0 && channel_wait_eof(impl_->chan, kTeardownTimeoutMs)) {
        ::close(impl_->chan);
        impl_->chan = -1;
        impl_->wait_gone(kTeardownTimeoutMs);
        return;
    }
    impl_->terminate();
}

HostResult HostProcess::mmap(uint64_t addr, uint64_t len, int prot, int flags, int64_t file, uint64_t off,
                             const std::string& device) {
    return impl_->call(HostOp::mmap,
                       {static_cast<int64_t>(addr), static_cast<int64_t>(len), prot, flags, file,
                        static_cast<int64_t>(off)},
                       device, device.empty() ? file : 0);
}

HostResult HostProcess::munmap(uint64_t addr, uint64_t len) {
    return impl_->call(HostOp::munmap, {static_cast<int64_t>(addr), static_cast<int64_t>(len)});
}

HostResult HostProcess::mprotect(uint64_t addr, uint64_t len, int prot) {
    return impl_->call(HostOp::mprotect, {static_cast<int64_t>(addr), static_cast<int64_t>(len), prot});
}

HostResult HostProcess::madvise(uint64_t addr, uint64_t len, int advice) {
    return impl_->call(HostOp::madvise, {static_cast<int64_t>(addr), static_cast<int64_t>(len), advice});
}

HostResult HostProcess::mremap(uint64_t old_addr, uint64_t old_len, uint64_t new_len, int flags, uint64_t new_addr) {
    return impl_->call(HostOp::mremap, {static_cast<int64_t>(old_addr), static_cast<int64_t>(old_len),
                                        static_cast<int64_t>(new_len), flags, static_cast<int64_t>(new_addr)});
}

HostResult HostProcess::read(uint64_t addr, uint64_t len) {
    if (len > kMaxChannelBytes) return {-E2BIG, {}};
    return impl_->call(HostOp::read, {static_cast<int64_t>(addr), static_cast<int64_t>(len)});
}

HostResult HostProcess::write(uint64_t addr, const std::string& bytes) {
    if (bytes.size() > kMaxChannelBytes) return {-E2BIG, {}};
    return impl_->call(HostOp::write, {static_cast<int64_t>(addr)}, bytes);
}

HostResult HostProcess::memset(uint64_t addr, int byte, uint64_t len) {
    return impl_->call(HostOp::memset, {static_cast<int64_t>(addr), byte & 0xff, static_cast<int64_t>(len)});
}

HostResult HostProcess::clear_refs(int value) { return impl_->call(HostOp::clear_refs, {value}); }

HostResult HostProcess::set_rlimit_memlock(uint64_t bytes) {
    return impl_->call(HostOp::set_rlimit_memlock, {static_cast<int64_t>(bytes)});
}

HostResult HostProcess::status_pages(const std::string& field) {
    return impl_->call(HostOp::status_pages, {}, field);
}

HostPageInfo HostProcess::page_info(uint64_t addr) {
    // Only while the channel is open: until then the pid cannot have been
    // reaped and reused (EOF comes at exit_files(), before release_task()).
    if (impl_->chan < 0) return {};
    return read_page_info(impl_->pid, addr);
}

HostResult HostProcess::io_uring_setup(unsigned entries) {
    return impl_->call(HostOp::io_uring_setup, {static_cast<int64_t>(entries)});
}

HostResult HostProcess::io_uring_register_buffers(int64_t ring, const std::vector<std::pair<uint64_t, uint64_t>>& iovecs) {
    std::string packed(16 * iovecs.size(), '\0');
    for (size_t i = 0; i < iovecs.size(); ++i) {
        std::memcpy(packed.data() + 16 * i, &iovecs[i].first, 8);
        std::memcpy(packed.data() + 16 * i + 8, &iovecs[i].second, 8);
    }
    return impl_->call(HostOp::io_uring_register_buffers, {ring}, std::move(packed));
}

HostResult HostProcess::io_uring_unregister_buffers(int64_t ring) {
    return impl_->call(HostOp::io_uring_unregister_buffers, {ring});
}

HostResult HostProcess::io_uring_rw_fixed(int64_t ring, bool write, int64_t file, int buf_index, uint64_t addr,
                                          uint64_t len, uint64_t off) {
    return impl_->call(HostOp::io_uring_rw_fixed,
                       {ring, write ? 1 : 0, file, buf_index, static_cast<int64_t>(addr), static_cast<int64_t>(len),
                        static_cast<int64_t>(off)},
                       {}, file);
}

HostResult HostProcess::io_uring_exit(int64_t ring) { return impl_->call(HostOp::io_uring_exit, {ring}); }

HostResult HostProcess::set_cap_ipc_lock(bool on) { return impl_->call(HostOp::set_cap_ipc_lock, {on ? 1 : 0}); }

HostResult HostProcess::vmsplice_file(int64_t pipe_file, uint64_t addr, uint64_t len) {
    return impl_->call(HostOp::vmsplice_file, {pipe_file, static_cast<int64_t>(addr), static_cast<int64_t>(len)}, {},
                       pipe_file);
}

HostResult HostProcess::process_vm_rw(bool write, pid_t target, uint64_t local, uint64_t remote, uint64_t len) {
    return impl_->call(HostOp::process_vm_rw, {write ? 1 : 0, target, static_cast<int64_t>(local),
                                               static_cast<int64_t>(remote), static_cast<int64_t>(len)});
}

HostResult HostProcess::direct_rw(bool write, int64_t file, uint64_t addr, uint64_t len, uint64_t off) {
    return impl_->call(HostOp::direct_rw, {write ? 1 : 0, file, static_cast<int64_t>(addr), static_cast<int64_t>(len),
                                           static_cast<int64_t>(off)},
                       {}, file);
}

}  // namespace pl::oracle
