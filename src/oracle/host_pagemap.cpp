// pinlab — /proc/PID/pagemap and /proc/kpageflags (see host_pagemap.h).
// The kernel side: fs/proc/task_mmu.c pagemap_read() (one 64-bit entry per
// virtual page) and fs/proc/page.c kpageflags_read() (one per PFN).
#include "oracle/host_pagemap.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

namespace pl::oracle {

namespace {

constexpr uint64_t kPageSize = 4096;
constexpr uint64_t kChunk = 512;  // entries read at once while walking a folio

bool bit(uint64_t v, int b) { return (v >> b) & 1; }

// An fd closed on scope exit.
class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }

private:
    int fd_;
};

// n 64-bit entries from index first; fewer at the end of the file or on error.
std::vector<uint64_t> read_entries(int fd, uint64_t first, uint64_t n) {
    std::vector<uint64_t> out(n);
    size_t want = n * sizeof(uint64_t), done = 0;
    auto* p = reinterpret_cast<char*>(out.data());
    while (done < want) {
        ssize_t r = ::pread(fd, p + done, want - done, static_cast<off_t>(first * sizeof(uint64_t) + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        done += static_cast<size_t>(r);
    }
    out.resize(done / sizeof(uint64_t));
    return out;
}

}  // namespace

HostPageInfo decode_pagemap_entry(uint64_t e) {
    HostPageInfo info;
    info.present = bit(e, kPmPresent);
    info.swapped = bit(e, kPmSwap);
    info.file = bit(e, kPmFile);
    info.exclusive = bit(e, kPmMmapExclusive);
    info.soft_dirty = bit(e, kPmSoftDirty);
    // Bits 0-54 are the PFN only for a present page (a swap entry otherwise),
    // and read as zero without CAP_SYS_ADMIN (pagemap_open: show_pfn).
    if (info.present && !info.swapped) info.pfn = e & kPmPfnMask;
    return info;
}

std::optional<uint64_t> read_kpageflags(uint64_t pfn) {
    Fd fd(::open("/proc/kpageflags", O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return std::nullopt;
    auto v = read_entries(fd.get(), pfn, 1);
    if (v.empty()) return std::nullopt;
    return v[0];
}

uint64_t folio_nr_pages_of(uint64_t pfn) {
    Fd fd(::open("/proc/kpageflags", O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return 0;
    auto self = read_entries(fd.get(), pfn, 1);
    if (self.empty()) return 0;
    const bool head = bit(self[0], kKpfCompoundHead), tail = bit(self[0], kKpfCompoundTail);
    if (!head && !tail) return 1;
    // A tail: walk back to the head, a chunk at a time.
    uint64_t head_pfn = pfn;
    if (tail) {
        bool found = false;
        uint64_t next = pfn;  // entries below `next` are still to look at
        while (!found && next > 0 && pfn - next < kMaxFolioPages) {
            uint64_t first = next > kChunk ? next - kChunk : 0;
            auto v = read_entries(fd.get(), first, next - first);
            if (v.size() != next - first) return 0;
            for (uint64_t i = v.size(); i-- > 0;) {
                if (bit(v[i], kKpfCompoundHead)) {
                    head_pfn = first + i;
                    found = true;
                    break;
                }
                if (!bit(v[i], kKpfCompoundTail)) return 0;  // split under us
            }
            next = first;
        }
        if (!found) return 0;
    }
    // Forward from the head over its tails.
    uint64_t nr = 1;
    for (uint64_t at = head_pfn + 1; nr < kMaxFolioPages;) {
        auto v = read_entries(fd.get(), at, kChunk);
        if (v.empty()) break;
        size_t i = 0;
        while (i < v.size() && bit(v[i], kKpfCompoundTail) && nr < kMaxFolioPages) ++i, ++nr;
        if (i < v.size()) break;
        at += v.size();
    }
    return nr;
}

HostPageInfo read_page_info(pid_t pid, uint64_t addr) {
    Fd fd(::open(("/proc/" + std::to_string(pid) + "/pagemap").c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return {};
    auto v = read_entries(fd.get(), addr / kPageSize, 1);
    if (v.empty()) return {};
    HostPageInfo info = decode_pagemap_entry(v[0]);
    if (info.pfn != 0) {
        info.kpageflags = read_kpageflags(info.pfn);
        if (info.kpageflags) info.folio_nr_pages = folio_nr_pages_of(info.pfn);
    }
    return info;
}

}  // namespace pl::oracle
