// pinlab — the host kernel's pinning doors, for `pinlab bench --compare-kernel`.
//
// The model is compared with the kernel it runs on by pinning and unpinning
// a buffer of the same size and backing through the two ways an unprivileged
// process can make Linux pin its memory:
//  * long-term pins: io_uring_register_buffers() pins the whole buffer with
//    FOLL_LONGTERM (io_uring/rsrc.c io_sqe_buffer_register → pin_user_pages);
//    io_uring_unregister_buffers() unpins it;
//  * short-term pins: an O_DIRECT read() into the buffer pins the pages for
//    the I/O (iov_iter_extract_pages → pin_user_pages_fast) and unpins them
//    at completion (bio_release_pages).
// This is host code, not model code: it lives in its own static library
// (pinlab_oracle), linked by the CLI only, so libpinlab never needs liburing.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "base/result.h"

namespace pl::oracle {

enum class HostThp { unchanged, hugepage, nohugepage };  // MADV_(NO)HUGEPAGE
enum class HostSharing { private_map, shared_map };
enum class HostHugetlb { no, yes };

struct HostBufferSpec {
    std::size_t bytes = 0;
    HostSharing sharing = HostSharing::private_map;
    HostHugetlb hugetlb = HostHugetlb::no;
    HostThp thp = HostThp::unchanged;
};

// An anonymous mapping on the host, faulted in page by page (as gup_test
// does before it times anything). Unmapped on destruction.
class HostBuffer {
public:
    static Result<HostBuffer> create(const HostBufferSpec& spec);
    HostBuffer(HostBuffer&& o) noexcept;
    HostBuffer& operator=(HostBuffer&&) = delete;
    HostBuffer(const HostBuffer&) = delete;
    ~HostBuffer();

    void* data() const { return addr_; }
    std::size_t size() const { return bytes_; }

private:
    HostBuffer(void* addr, std::size_t bytes) : addr_(addr), bytes_(bytes) {}
    void* addr_;
    std::size_t bytes_;
};

// One pin+unpin cycle on the host, in microseconds (as gup_test reports).
struct HostTiming {
    double get_us = 0;  // pin (io_uring register) or the whole O_DIRECT read
    double put_us = 0;  // unpin (io_uring unregister); 0 for O_DIRECT
};

// The errno of a failed door, and why in words (for "skipped: ..." lines).
struct HostRefusal {
    int errnum = 0;
    std::string why;
};

// Long-term: `repeats` cycles of io_uring register + unregister of the whole
// buffer as fixed buffers (1 GiB iovecs: io_uring refuses larger ones). On
// error the Result carries the errno and *refusal says which step refused.
Result<std::vector<HostTiming>> host_pin_longterm(const HostBuffer& buf, int repeats, HostRefusal* refusal);

// Short-term: `repeats` O_DIRECT reads of the whole buffer from a file of the
// same size in dir (created and written once outside the timing — with real
// data: a hole or unwritten extent is zero-filled without pinning — and
// removed afterwards). EINVAL from open/read: the fs refuses O_DIRECT.
Result<std::vector<HostTiming>> host_pin_direct_io(const HostBuffer& buf, const std::string& dir, int repeats,
                                                   HostRefusal* refusal);

// Whether this binary was built with liburing (otherwise the long-term door
// always refuses with EOPNOTSUPP).
bool host_have_io_uring();

}  // namespace pl::oracle
