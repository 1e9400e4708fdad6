// pinlab — a conformance run's hold on the host (see host_process.h): the
// zygote, the session files, the host lock, the knobs, /proc/vmstat.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "oracle/host_doors.h"
#include "oracle/host_knobs.h"
#include "oracle/host_process.h"
#include "oracle/host_loopfs.h"
#include "oracle/host_session_impl.h"
#include "oracle/host_zygote.h"

namespace pl::oracle {

namespace {

// pread through the session is for checking a few pages, not bulk copies.
constexpr uint64_t kMaxPread = uint64_t{1} << 20;
constexpr long kSysMemfdSecret = 447;  // memfd_secret(2), x86-64 and arm64

HostResult errno_result() { return {-static_cast<int64_t>(errno), {}}; }

// An unlinked file in dir: O_TMPFILE where the file system has it, else a
// named file unlinked at once. Nothing is left on disk either way.
int tmpfile_in(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) return fd;
    std::string path = dir + "/pinlab-conform-XXXXXX";
    fd = ::mkostemp(path.data(), O_CLOEXEC);
    if (fd >= 0) ::unlink(path.c_str());
    return fd;
}

}  // namespace

void HostSession::Impl::forget(HostProcess::Impl* p) { live.erase(std::remove(live.begin(), live.end(), p), live.end()); }

HostSession::HostSession() : impl_(std::make_unique<Impl>()) {}

Result<std::unique_ptr<HostSession>> HostSession::create(const std::map<std::string, std::string>& fs_dirs) {
    std::unique_ptr<HostSession> s(new HostSession());
    // The zygote first, before discover_caps() maps anything in this process.
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return Error(errno);
    const pid_t controller = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
        const int e = errno;
        ::close(sv[0]);
        ::close(sv[1]);
        return Error(e);
    }
    if (pid == 0) host_zygote_main(sv[1], controller);
    ::close(sv[1]);
    s->impl_->zygote_chan = sv[0];
    s->impl_->zygote_pid = pid;
    s->caps_ = discover_caps(fs_dirs);
    return s;
}

HostSession::~HostSession() {
    Impl& m = *impl_;
    // Children before parents (creation order reversed): none is orphaned.
    while (!m.live.empty()) {
        HostProcess::Impl* p = m.live.back();
        p->terminate();
        p->session = nullptr;
        m.live.pop_back();
    }
    // The zygote is our own child: EOF on its channel ends it; SIGKILL in
    // case it is stuck; then reap it.
    if (m.zygote_chan >= 0) ::close(m.zygote_chan);
    if (m.zygote_pid > 0) {
        ::kill(m.zygote_pid, SIGKILL);
        while (::waitpid(m.zygote_pid, nullptr, 0) < 0 && errno == EINTR) {
        }
    }
    for (auto& [id, f] : m.files) ::close(f.fd);
    m.files.clear();
    for (auto& [id, h] : m.pipes) (void)doors::pipe_close(h);
    m.pipes.clear();
    m.knobs.restore();
    release_host();
}

Status HostSession::acquire_host() {
    if (impl_->lock_fd >= 0) return ok_status();
    // The lock is a name in the abstract Unix socket namespace: held while
    // the socket is bound, gone with the process however it ends, and
    // nothing on any file system (not even a lock file in /tmp).
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Error(errno);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    static constexpr char kName[] = "\0pinlab-host-lock";  // leading NUL: abstract
    std::memcpy(addr.sun_path, kName, sizeof kName - 1);
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + sizeof kName - 1);
    while (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) < 0) {
        if (errno == EADDRINUSE) {  // another run holds it: wait for it
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            continue;
        }
        const int e = errno;
        ::close(fd);
        return Error(e);
    }
    impl_->lock_fd = fd;
    return ok_status();
}

void HostSession::release_host() {
    if (impl_->lock_fd < 0) return;
    ::close(impl_->lock_fd);  // unbinds the name
    impl_->lock_fd = -1;
}

Result<bool> HostSession::apply_knobs(const HostKnobs& k, std::string* why) { return impl_->knobs.apply(k, why); }

void HostSession::restore_knobs() { impl_->knobs.restore(); }

Result<std::unique_ptr<HostProcess>> HostSession::spawn() {
    Impl& m = *impl_;
    if (m.zygote_chan < 0) return Error(EPIPE);
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return Error(errno);
    ChannelRequest req;
    req.op = HostOp::spawn;
    int r = channel_send_request(m.zygote_chan, req, sv[1], kReplyTimeoutMs);
    ::close(sv[1]);
    ChannelReply rep;
    if (r == 0) r = channel_recv_reply(m.zygote_chan, &rep, kReplyTimeoutMs);
    if (r < 0) {
        // A zygote out of step is of no further use.
        ::close(sv[0]);
        ::close(m.zygote_chan);
        m.zygote_chan = -1;
        return Error(r == -ETIMEDOUT ? ETIMEDOUT : EPIPE);
    }
    if (rep.ret <= 0) {
        ::close(sv[0]);
        return Error(rep.ret < 0 ? static_cast<int>(-rep.ret) : EPROTO);
    }
    auto impl = std::make_unique<HostProcess::Impl>(&m, sv[0], static_cast<pid_t>(rep.ret));
    return std::unique_ptr<HostProcess>(new HostProcess(std::move(impl)));
}

int64_t HostSession::file_new(const std::string& fs, uint64_t size, std::string* why) {
    auto say = [&](std::string w) {
        if (why) *why = std::move(w);
    };
    int fd = -1;
    std::string what;  // the call that made it, for *why
    if (fs == "memfd") {
        fd = ::memfd_create("pinlab-conform", MFD_CLOEXEC);
        what = "memfd_create()";
    } else if (fs == "memfd-hugetlb") {
        fd = ::memfd_create("pinlab-conform", MFD_CLOEXEC | MFD_HUGETLB);
        what = "memfd_create(MFD_HUGETLB)";
    } else if (fs == "secretmem") {
        fd = static_cast<int>(::syscall(kSysMemfdSecret, O_CLOEXEC));
        if (fd < 0 && errno == ENOSYS) {
            say("memfd_secret() is not available on this kernel (CONFIG_SECRETMEM, secretmem.enable)");
            return -EOPNOTSUPP;
        }
        what = "memfd_secret()";
    } else {
        auto it = caps_.fs_dirs.find(fs);
        if (it == caps_.fs_dirs.end() && (fs == "xfs" || fs == "btrfs" || fs == "ext4" || fs == "hugetlbfs")) {
            // None mounted: make one on a loop device, seen by this process only.
            std::string loop_why;
            const std::string dir = loopfs_dir(fs, &loop_why);
            if (!dir.empty()) it = caps_.fs_dirs.emplace(fs, dir).first;
            else caps_.notes.push_back("no " + fs + " mounted, and none could be made: " + loop_why);
            if (dir.empty()) {
                say("no " + fs + " file system mounted here and none could be made (" + loop_why + "); pass --fs " + fs +
                    "=DIR");
                return -EOPNOTSUPP;
            }
        }
        if (it == caps_.fs_dirs.end()) {
            say("no " + fs + " file system mounted here; pass --fs " + fs + "=DIR");
            return -EOPNOTSUPP;
        }
        fd = tmpfile_in(it->second);
        what = "creating a file in " + it->second;
    }
    if (fd < 0) {
        const int e = errno;
        say(what + ": " + std::strerror(e));
        return -e;
    }
    if (size && ::ftruncate(fd, static_cast<off_t>(size)) < 0) {
        const int e = errno;
        say("ftruncate(" + std::to_string(size) + ") on " + fs + ": " + std::strerror(e));
        ::close(fd);
        return -e;
    }
    const int64_t id = impl_->next_file++;
    impl_->files[id] = {fd, fs};
    return id;
}

HostResult HostSession::file_pwrite(int64_t file, uint64_t off, const std::string& bytes) {
    int fd = file_fd(file);
    if (fd < 0) return {-EBADF, {}};
    ssize_t n;
    do n = ::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(off));
    while (n < 0 && errno == EINTR);
    return n < 0 ? errno_result() : HostResult{n, {}};
}

HostResult HostSession::file_pread(int64_t file, uint64_t off, uint64_t len) {
    int fd = file_fd(file);
    if (fd < 0) return {-EBADF, {}};
    if (len > kMaxPread) return {-EINVAL, {}};
    std::string buf(len, '\0');
    ssize_t n;
    do n = ::pread(fd, buf.data(), len, static_cast<off_t>(off));
    while (n < 0 && errno == EINTR);
    if (n < 0) return errno_result();
    buf.resize(static_cast<size_t>(n));
    return {n, std::move(buf)};
}

HostResult HostSession::file_fsync(int64_t file) {
    int fd = file_fd(file);
    if (fd < 0) return {-EBADF, {}};
    return ::fsync(fd) == 0 ? HostResult{} : errno_result();
}

HostResult HostSession::file_ftruncate(int64_t file, uint64_t size) {
    int fd = file_fd(file);
    if (fd < 0) return {-EBADF, {}};
    return ::ftruncate(fd, static_cast<off_t>(size)) == 0 ? HostResult{} : errno_result();
}

HostResult HostSession::file_fallocate(int64_t file, uint64_t off, uint64_t len) {
    int fd = file_fd(file);
    if (fd < 0) return {-EBADF, {}};
    return ::fallocate(fd, 0, static_cast<off_t>(off), static_cast<off_t>(len)) == 0 ? HostResult{} : errno_result();
}

int HostSession::file_fd(int64_t file) const { return impl_->file_fd(file); }

int64_t HostSession::pipe_new() {
    // The pipe lives in this process (doors' table); its write end is also
    // a session file (a dup), sent to each task that vmsplices into it.
    const int64_t h = doors::pipe_new();
    if (h < 0) return h;
    const int wfd = ::fcntl(doors::pipe_write_fd(h), F_DUPFD_CLOEXEC, 0);
    if (wfd < 0) {
        const int64_t e = -errno;
        (void)doors::pipe_close(h);
        return e;
    }
    const int64_t id = impl_->next_file++;
    impl_->files[id] = {wfd, "pipe"};
    impl_->pipes[id] = h;
    return id;
}

HostResult HostSession::pipe_read(int64_t pipe, uint64_t len) {
    auto it = impl_->pipes.find(pipe);
    if (it == impl_->pipes.end()) return {-EBADF, {}};
    if (len > (uint64_t{1} << 20)) return {-EINVAL, {}};
    HostResult r;
    r.ret = doors::pipe_read(it->second, len, &r.bytes);
    return r;
}

HostResult HostSession::pipe_close(int64_t pipe) {
    auto it = impl_->pipes.find(pipe);
    if (it == impl_->pipes.end()) return {-EBADF, {}};
    HostResult r;
    r.ret = doors::pipe_close(it->second);
    impl_->pipes.erase(it);
    if (auto f = impl_->files.find(pipe); f != impl_->files.end()) {
        ::close(f->second.fd);
        impl_->files.erase(f);
    }
    return r;
}

std::optional<uint64_t> HostSession::vmstat(const std::string& name) const {
    // Fold the per-cpu deltas first (refresh_vm_stats(), root only): without
    // it a pin or two may not show in /proc/vmstat for up to a second.
    if (int fd = ::open("/proc/sys/vm/stat_refresh", O_WRONLY | O_CLOEXEC); fd >= 0) {
        (void)!::write(fd, "1\n", 2);
        ::close(fd);
    }
    std::ifstream in("/proc/vmstat");
    std::string key;
    uint64_t value = 0;
    while (in >> key >> value)
        if (key == name) return value;
    return std::nullopt;
}

void HostSession::settle_pins() {
    using Clock = std::chrono::steady_clock;
    auto sample = [&] { return std::make_pair(vmstat("nr_foll_pin_acquired"), vmstat("nr_foll_pin_released")); };
    const auto start = Clock::now();
    auto last = sample();
    auto stable_since = start;
    while (Clock::now() - start < std::chrono::seconds(1)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        auto now_sample = sample();
        const auto now = Clock::now();
        if (now_sample != last) {
            last = now_sample;
            stable_since = now;
        } else if (now - stable_since >= std::chrono::milliseconds(20)) {
            return;
        }
    }
}

}  // namespace pl::oracle
