// pinlab — the host kernel's pinning doors (see host_pin.h).
#include "oracle/host_pin.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "oracle/host_doors.h"

#ifdef PINLAB_HAVE_LIBURING
#include <liburing.h>
#endif

namespace pl::oracle {

namespace {

using Clock = std::chrono::steady_clock;

double us_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

Error refuse(HostRefusal* r, int errnum, std::string why) {
    if (r) {
        r->errnum = errnum;
        r->why = std::move(why) + ": " + std::strerror(errnum);
    }
    return Error(errnum);
}

constexpr std::size_t kPage = 4096;
// io_uring_register_buffers() refuses an iovec longer than 1 GiB
// (io_uring/rsrc.c io_buffer_validate).
constexpr std::size_t kMaxFixedBuffer = std::size_t{1} << 30;

}  // namespace

Result<HostBuffer> HostBuffer::create(const HostBufferSpec& spec) {
    if (spec.bytes == 0 || spec.bytes % kPage) return Error(EINVAL);
    int flags = MAP_ANONYMOUS | (spec.sharing == HostSharing::shared_map ? MAP_SHARED : MAP_PRIVATE);
    if (spec.hugetlb == HostHugetlb::yes) flags |= MAP_HUGETLB;
    void* p = ::mmap(nullptr, spec.bytes, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) return Error(errno);
    if (spec.thp == HostThp::hugepage) ::madvise(p, spec.bytes, MADV_HUGEPAGE);
    if (spec.thp == HostThp::nohugepage) ::madvise(p, spec.bytes, MADV_NOHUGEPAGE);
    // Fault every page in from user space first, as gup_test does, so that
    // only pinning is timed. A hugetlb fault that finds the pool empty is
    // SIGBUS: populate with MADV_POPULATE_WRITE instead, which reports it.
    if (spec.hugetlb == HostHugetlb::yes) {
#ifdef MADV_POPULATE_WRITE
        if (::madvise(p, spec.bytes, MADV_POPULATE_WRITE) != 0) {
            const int e = errno;
            ::munmap(p, spec.bytes);
            return Error(e);
        }
#endif
    }
    for (std::size_t off = 0; off < spec.bytes; off += kPage) static_cast<volatile char*>(p)[off] = 1;
    return HostBuffer(p, spec.bytes);
}

HostBuffer::HostBuffer(HostBuffer&& o) noexcept : addr_(std::exchange(o.addr_, nullptr)), bytes_(o.bytes_) {}

HostBuffer::~HostBuffer() {
    if (addr_) ::munmap(addr_, bytes_);
}

bool host_have_io_uring() {
#ifdef PINLAB_HAVE_LIBURING
    return true;
#else
    return false;
#endif
}

Result<std::vector<HostTiming>> host_pin_longterm(const HostBuffer& buf, int repeats, HostRefusal* refusal) {
#ifdef PINLAB_HAVE_LIBURING
    io_uring ring;
    if (int r = io_uring_queue_init(4, &ring, 0); r < 0) return refuse(refusal, -r, "io_uring_setup");
    std::vector<iovec> iov;
    for (std::size_t off = 0; off < buf.size(); off += kMaxFixedBuffer)
        iov.push_back({static_cast<char*>(buf.data()) + off, std::min(kMaxFixedBuffer, buf.size() - off)});
    std::vector<HostTiming> out;
    for (int i = 0; i < repeats; ++i) {
        HostTiming t;
        auto t0 = Clock::now();
        int r = io_uring_register_buffers(&ring, iov.data(), static_cast<unsigned>(iov.size()));
        t.get_us = us_since(t0);
        if (r < 0) {
            io_uring_queue_exit(&ring);
            return refuse(refusal, -r, "io_uring_register_buffers");
        }
        t0 = Clock::now();
        r = io_uring_unregister_buffers(&ring);
        t.put_us = us_since(t0);
        if (r < 0) {
            io_uring_queue_exit(&ring);
            return refuse(refusal, -r, "io_uring_unregister_buffers");
        }
        out.push_back(t);
    }
    io_uring_queue_exit(&ring);
    return out;
#else
    (void)buf;
    (void)repeats;
    return refuse(refusal, EOPNOTSUPP, "pinlab was built without liburing");
#endif
}

Result<std::vector<HostTiming>> host_pin_direct_io(const HostBuffer& buf, const std::string& dir, int repeats,
                                                   HostRefusal* refusal) {
    std::string path = (dir.empty() ? std::string("/tmp") : dir) + "/pinlab-bench-XXXXXX";
    int fd = ::mkstemp(path.data());
    if (fd < 0) return refuse(refusal, errno, "mkstemp in " + dir);
    ::unlink(path.c_str());  // removed when closed
    // shmem accepts O_DIRECT (since 6.6) but serves it by copying, without
    // pinning anything: timing it would compare against no pins at all.
    constexpr long kTmpfsMagic = 0x01021994;  // TMPFS_MAGIC, linux/magic.h
    struct statfs sfs{};
    if (::fstatfs(fd, &sfs) == 0 && static_cast<long>(sfs.f_type) == kTmpfsMagic) {
        ::close(fd);
        return refuse(refusal, EOPNOTSUPP,
                      dir + " is tmpfs, whose O_DIRECT copies without pinning (set TMPDIR to a disk file system)");
    }
    // Real data, written back, so the O_DIRECT reads go to the device and pin.
    for (std::size_t off = 0; off < buf.size();) {
        ssize_t w = ::pwrite(fd, static_cast<char*>(buf.data()) + off, buf.size() - off, static_cast<off_t>(off));
        if (w <= 0) {
            const int e = w < 0 ? errno : EIO;
            ::close(fd);
            return refuse(refusal, e, "writing the O_DIRECT test file");
        }
        off += static_cast<std::size_t>(w);
    }
    ::fsync(fd);
    const int dfd = doors::reopen_direct(fd, doors::DirectAccess::read);
    ::close(fd);
    if (dfd < 0) return refuse(refusal, -dfd, "open(O_DIRECT) in " + dir + " (the file system refuses O_DIRECT?)");
    std::vector<HostTiming> out;
    for (int i = 0; i < repeats; ++i) {
        HostTiming t;
        auto t0 = Clock::now();
        for (std::size_t off = 0; off < buf.size();) {
            ssize_t r = ::pread(dfd, static_cast<char*>(buf.data()) + off, buf.size() - off, static_cast<off_t>(off));
            if (r <= 0) {
                const int e = r < 0 ? errno : EIO;
                ::close(dfd);
                return refuse(refusal, e, "read(O_DIRECT) in " + dir);
            }
            off += static_cast<std::size_t>(r);
        }
        t.get_us = us_since(t0);
        out.push_back(t);
    }
    ::close(dfd);
    return out;
}

}  // namespace pl::oracle
