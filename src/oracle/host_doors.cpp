// pinlab — the host kernel's pinning doors, used inside a scenario task's
// process (see host_doors.h for what each door pins and how).
//
// Host code, not model code: plain syscalls, no model locks. The object
// table is not locked: a task's process serves one request at a time.
#include "oracle/host_doors.h"

#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <variant>

#ifdef PINLAB_HAVE_LIBURING
#include <liburing.h>
#endif

namespace pl::oracle::doors {

namespace {

constexpr uint64_t kPage = 4096;

int64_t neg_errno() { return -static_cast<int64_t>(errno); }

#ifdef PINLAB_HAVE_LIBURING
struct Ring {
    ::io_uring ring{};
};
#else
struct Ring {};
#endif

struct Pipe {
    int rfd = -1;
    int wfd = -1;
};

using Object = std::variant<std::unique_ptr<Ring>, Pipe>;

// Static, so a fork()ed child starts with a copy, as it starts with copies
// of the fds and the ring mappings behind the entries.
struct Table {
    std::map<int64_t, Object> objects;
    int64_t next = 1;
};

Table& table() {
    static Table t;
    return t;
}

int64_t add(Object o) {
    Table& t = table();
    const int64_t h = t.next++;
    t.objects.emplace(h, std::move(o));
    return h;
}

template <typename T>
T* lookup(int64_t h) {
    auto it = table().objects.find(h);
    if (it == table().objects.end()) return nullptr;
    return std::get_if<T>(&it->second);
}

#ifdef PINLAB_HAVE_LIBURING
::io_uring* ring_of(int64_t h) {
    auto* r = lookup<std::unique_ptr<Ring>>(h);
    return r ? &(*r)->ring : nullptr;
}
#endif

bool has_flag(const std::string& vmflags, const char* flag) {
    std::istringstream in(vmflags);
    std::string f;
    while (in >> f)
        if (f == flag) return true;
    return false;
}

// ---- devices -------------------------------------------------------------

struct DeviceMap {
    int64_t ret = -ENODEV;   // address or -errno
    std::string what;        // which host object backs it
    std::string why;         // -ENODEV: why the host offers none
};

// A device mapping is a mapping of the device's file: MAP_ANONYMOUS would
// make mmap() ignore the fd and map plain memory instead.
int device_flags(int flags) { return flags & ~MAP_ANONYMOUS; }

// A perf_event ring buffer: perf_mmap() → map_range() maps the buffer with
// remap_pfn_range(), so the VMA is VM_PFNMAP|VM_IO (kernel/events/core.c,
// since 2025's "perf: map pages in advance"; older kernels faulted struct
// pages in, which device_probe() then reports as not VM_PFNMAP). A dummy
// software event on this task, user space only, needs no privilege at
// perf_event_paranoid <= 2.
DeviceMap map_perf_ring(uint64_t addr, uint64_t len, int prot, int flags, uint64_t off) {
    DeviceMap m;
    m.what = "perf_event ring buffer";
    perf_event_attr attr{};
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_DUMMY;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    const long fd = ::syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0) {
        m.why = std::string("perf_event_open(PERF_COUNT_SW_DUMMY): ") + std::strerror(errno);
        return m;
    }
    // The size rule ((1 + 2^n) pages), MAP_SHARED and offset 0 are perf_mmap()'s
    // to enforce: its errno is the answer.
    void* p = ::mmap(reinterpret_cast<void*>(addr), len, prot, device_flags(flags), static_cast<int>(fd),
                     static_cast<off_t>(off));
    m.ret = p == MAP_FAILED ? neg_errno() : static_cast<int64_t>(reinterpret_cast<uintptr_t>(p));
    ::close(static_cast<int>(fd));
    return m;
}

// An AF_PACKET receive ring (net/packet/af_packet.c packet_mmap()): each
// block's pages are inserted with vm_insert_page(), which makes the VMA
// VM_MIXEDMAP with normal, refcounted pages. The socket has protocol 0 and
// is never bound, so no packet ever lands in the ring: its bytes are the
// user's. packet_mmap() wants the mapping to be exactly the ring, so the
// ring is sized to len (rounded up to pages, as mmap rounds it).
DeviceMap map_packet_ring(uint64_t addr, uint64_t len, int prot, int flags, uint64_t off, int* sock_errno) {
    DeviceMap m;
    m.what = "AF_PACKET ring";
    const int s = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (s < 0) {
        *sock_errno = errno;
        m.why = std::string("socket(AF_PACKET): ") + std::strerror(errno);
        return m;
    }
    const uint64_t blocks = (len + kPage - 1) / kPage;
    if (blocks > UINT_MAX / 2) {
        ::close(s);
        m.ret = -EINVAL;
        return m;
    }
    tpacket_req req{};
    req.tp_block_size = kPage;
    req.tp_block_nr = static_cast<unsigned>(blocks);
    req.tp_frame_size = 2048;
    req.tp_frame_nr = static_cast<unsigned>(blocks * 2);
    if (blocks > 0 && ::setsockopt(s, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) != 0) {
        m.ret = neg_errno();
        ::close(s);
        return m;
    }
    void* p = ::mmap(reinterpret_cast<void*>(addr), len, prot, device_flags(flags), s, static_cast<off_t>(off));
    m.ret = p == MAP_FAILED ? neg_errno() : static_cast<int64_t>(reinterpret_cast<uintptr_t>(p));
    ::close(s);
    return m;
}

// Without CAP_NET_RAW: io_uring's SQE array (io_uring/memmap.c
// io_uring_mmap() → vm_insert_pages(), VM_MIXEDMAP too). The ring gets
// len/64 entries, rounded up to a power of two by io_uring_setup() (a
// shorter mapping than the array is allowed), at most IORING_MAX_ENTRIES.
DeviceMap map_io_uring_sqes(uint64_t addr, uint64_t len, int prot, int flags, uint64_t off) {
    DeviceMap m;
    m.what = "io_uring SQE array";
    const uint64_t bytes = (len + kPage - 1) / kPage * kPage;
    const uint64_t entries = bytes / sizeof(io_uring_sqe);
    if (entries == 0 || entries > UINT_MAX) {
        m.ret = -EINVAL;
        return m;
    }
    io_uring_params params{};
    const long fd = ::syscall(__NR_io_uring_setup, static_cast<unsigned>(entries), &params);
    if (fd < 0) {
        if (errno == ENOSYS || errno == EPERM) {
            m.why = std::string("io_uring_setup: ") + std::strerror(errno);
            return m;
        }
        m.ret = neg_errno();
        return m;
    }
    void* p = ::mmap(reinterpret_cast<void*>(addr), len, prot, device_flags(flags), static_cast<int>(fd),
                     static_cast<off_t>(IORING_OFF_SQES + off));
    m.ret = p == MAP_FAILED ? neg_errno() : static_cast<int64_t>(reinterpret_cast<uintptr_t>(p));
    ::close(static_cast<int>(fd));
    return m;
}

DeviceMap map_device(const std::string& kind, uint64_t addr, uint64_t len, int prot, int flags, uint64_t off) {
    if (kind == "pfnmap") return map_perf_ring(addr, len, prot, flags, off);
    if (kind == "mixedmap") {
        int sock_errno = 0;
        DeviceMap m = map_packet_ring(addr, len, prot, flags, off, &sock_errno);
        // No CAP_NET_RAW (EPERM) or no AF_PACKET (EAFNOSUPPORT): io_uring's ring.
        if (sock_errno == 0) return m;
        DeviceMap u = map_io_uring_sqes(addr, len, prot, flags, off);
        if (u.ret == -ENODEV) u.why = m.why + "; " + u.why;
        return u;
    }
    DeviceMap m;
    m.why = "no host device \"" + kind + "\" (known: pfnmap, mixedmap)";
    return m;
}

}  // namespace

// ---- io_uring ----------------------------------------------------------

int64_t io_uring_setup(unsigned entries) {
#ifdef PINLAB_HAVE_LIBURING
    auto r = std::make_unique<Ring>();
    if (int e = ::io_uring_queue_init(entries, &r->ring, 0); e < 0) return e;
    return add(std::move(r));
#else
    (void)entries;
    return -EOPNOTSUPP;
#endif
}

int64_t io_uring_register_buffers(int64_t ring, const std::vector<std::pair<uint64_t, uint64_t>>& iovecs) {
#ifdef PINLAB_HAVE_LIBURING
    ::io_uring* r = ring_of(ring);
    if (!r) return -EBADF;
    std::vector<iovec> iov;
    iov.reserve(iovecs.size());
    for (const auto& [addr, len] : iovecs) iov.push_back({reinterpret_cast<void*>(addr), len});
    return ::io_uring_register_buffers(r, iov.data(), static_cast<unsigned>(iov.size()));
#else
    (void)ring;
    (void)iovecs;
    return -EOPNOTSUPP;
#endif
}

int64_t io_uring_unregister_buffers(int64_t ring) {
#ifdef PINLAB_HAVE_LIBURING
    ::io_uring* r = ring_of(ring);
    if (!r) return -EBADF;
    return ::io_uring_unregister_buffers(r);
#else
    (void)ring;
    return -EOPNOTSUPP;
#endif
}

int64_t io_uring_rw_fixed(int64_t ring, bool write, int fd, int buf_index, uint64_t addr, uint64_t len,
                          uint64_t off) {
#ifdef PINLAB_HAVE_LIBURING
    ::io_uring* r = ring_of(ring);
    if (!r) return -EBADF;
    if (len > UINT_MAX) return -EINVAL;  // sqe->len is 32 bits
    ::io_uring_sqe* sqe = ::io_uring_get_sqe(r);
    if (!sqe) return -EBUSY;
    void* buf = reinterpret_cast<void*>(addr);
    if (write)
        ::io_uring_prep_write_fixed(sqe, fd, buf, static_cast<unsigned>(len), off, buf_index);
    else
        ::io_uring_prep_read_fixed(sqe, fd, buf, static_cast<unsigned>(len), off, buf_index);
    if (int s = ::io_uring_submit(r); s < 0) return s;
    ::io_uring_cqe* cqe = nullptr;
    int w;
    do w = ::io_uring_wait_cqe(r, &cqe);
    while (w == -EINTR);
    if (w < 0) return w;
    const int64_t res = cqe->res;
    ::io_uring_cqe_seen(r, cqe);
    return res;
#else
    (void)ring, (void)write, (void)fd, (void)buf_index, (void)addr, (void)len, (void)off;
    return -EOPNOTSUPP;
#endif
}

int64_t io_uring_exit(int64_t ring) {
#ifdef PINLAB_HAVE_LIBURING
    ::io_uring* r = ring_of(ring);
    if (!r) return -EBADF;
    ::io_uring_queue_exit(r);
    table().objects.erase(ring);
    return 0;
#else
    (void)ring;
    return -EOPNOTSUPP;
#endif
}

// ---- pipes -------------------------------------------------------------

int64_t pipe_new() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return neg_errno();
    // The reader never blocks: an empty pipe is -EAGAIN, as in the model.
    if (::fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0) {
        const int64_t e = neg_errno();
        ::close(fds[0]);
        ::close(fds[1]);
        return e;
    }
    return add(Pipe{fds[0], fds[1]});
}

int64_t vmsplice_fd(int fd, uint64_t addr, uint64_t len) {
    iovec iov{reinterpret_cast<void*>(addr), len};
    // SPLICE_F_NONBLOCK: a full pipe is -EAGAIN instead of a hung worker
    // (fs/splice.c wait_for_space()), as the model's vmsplice always does.
    const ssize_t n = ::vmsplice(fd, &iov, 1, SPLICE_F_NONBLOCK);
    return n < 0 ? neg_errno() : n;
}

int64_t vmsplice(int64_t pipe, uint64_t addr, uint64_t len) {
    Pipe* p = lookup<Pipe>(pipe);
    if (!p) return -EBADF;
    return vmsplice_fd(p->wfd, addr, len);
}

int pipe_write_fd(int64_t pipe) {
    Pipe* p = lookup<Pipe>(pipe);
    return p ? p->wfd : -1;
}

int64_t pipe_read(int64_t pipe, uint64_t len, std::string* out) {
    Pipe* p = lookup<Pipe>(pipe);
    if (!p) return -EBADF;
    // A read returns at most what the pipe holds: never allocate more.
    const int cap = ::fcntl(p->rfd, F_GETPIPE_SZ);
    const uint64_t want = cap > 0 ? std::min<uint64_t>(len, static_cast<uint64_t>(cap)) : std::min<uint64_t>(len, 1 << 20);
    std::string buf(want, '\0');
    const ssize_t n = ::read(p->rfd, buf.data(), want);
    if (n < 0) return neg_errno();
    buf.resize(static_cast<size_t>(n));
    if (out) *out = std::move(buf);
    return n;
}

int64_t pipe_close(int64_t pipe) {
    Pipe* p = lookup<Pipe>(pipe);
    if (!p) return -EBADF;
    char sink[65536];
    while (::read(p->rfd, sink, sizeof sink) > 0) {
    }
    ::close(p->rfd);
    ::close(p->wfd);
    table().objects.erase(pipe);
    return 0;
}

// ---- process_vm_readv/writev -----------------------------------------------

int64_t process_vm_rw(bool write, pid_t target, uint64_t local, uint64_t remote, uint64_t len) {
    iovec l{reinterpret_cast<void*>(local), len};
    iovec r{reinterpret_cast<void*>(remote), len};
    const ssize_t n = write ? ::process_vm_writev(target, &l, 1, &r, 1, 0) : ::process_vm_readv(target, &l, 1, &r, 1, 0);
    return n < 0 ? neg_errno() : n;
}

// ---- O_DIRECT --------------------------------------------------------------

int reopen_direct(int fd, DirectAccess access) {
    if (fd < 0) return -EBADF;
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    const int mode = access == DirectAccess::read ? O_RDONLY : O_WRONLY;
    const int d = ::open(path.c_str(), mode | O_DIRECT | O_CLOEXEC);
    return d < 0 ? -errno : d;
}

int64_t direct_rw(bool write, int fd, uint64_t addr, uint64_t len, uint64_t off) {
    const int d = reopen_direct(fd, write ? DirectAccess::write : DirectAccess::read);
    if (d < 0) return d;
    void* buf = reinterpret_cast<void*>(addr);
    const ssize_t n = write ? ::pwrite(d, buf, len, static_cast<off_t>(off)) : ::pread(d, buf, len, static_cast<off_t>(off));
    const int64_t ret = n < 0 ? neg_errno() : n;
    ::close(d);
    return ret;
}

// ---- devices -------------------------------------------------------------

int64_t device_mmap(const std::string& kind, uint64_t addr, uint64_t len, int prot, int flags, uint64_t off) {
    return map_device(kind, addr, len, prot, flags, off).ret;
}

std::string device_probe(const std::string& kind, std::string* why) {
    auto fail = [&](std::string w) {
        if (why) *why = std::move(w);
        return std::string();
    };
    DeviceMap m = map_device(kind, 0, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
    if (m.ret == -ENODEV) return fail(m.why);
    if (m.ret < 0) return fail(m.what + ": mmap: " + std::strerror(static_cast<int>(-m.ret)));
    const uint64_t addr = static_cast<uint64_t>(m.ret);
    const std::string flags = vm_flags_of(addr);
    ::munmap(reinterpret_cast<void*>(addr), kPage);
    // The point of the device is its VMA flag: check the kernel really set it.
    const char* needed = kind == "pfnmap" ? "pf" : "mm";
    if (!has_flag(flags, needed))
        return fail(m.what + " is not " + (kind == "pfnmap" ? "VM_PFNMAP" : "VM_MIXEDMAP") +
                    " on this kernel (VmFlags: " + flags + ")");
    return m.what + " (VmFlags: " + flags + ")";
}

std::string vm_flags_of(uint64_t addr) {
    std::ifstream in("/proc/self/smaps");
    std::string line;
    bool inside = false;
    while (std::getline(in, line)) {
        unsigned long long start = 0, end = 0;
        char dash = 0;
        // A VMA's header line starts "start-end perms ..."; the field lines
        // that follow ("Size:", ..., "VmFlags:") never start with hex-dash.
        std::istringstream hdr(line);
        if (hdr >> std::hex >> start >> dash >> end && dash == '-' && line.find(' ') != std::string::npos &&
            line.compare(0, 8, "VmFlags:") != 0) {
            inside = addr >= start && addr < end;
            continue;
        }
        if (inside && line.compare(0, 8, "VmFlags:") == 0) {
            std::string flags = line.substr(8);
            const auto b = flags.find_first_not_of(' ');
            const auto e = flags.find_last_not_of(' ');
            return b == std::string::npos ? std::string() : flags.substr(b, e - b + 1);
        }
    }
    return {};
}

}  // namespace pl::oracle::doors
