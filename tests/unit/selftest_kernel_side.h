// The kernel side of what the mm selftests (gup_longterm.c, cow.c) call, for
// the model tests that replay them: mm/gup_test.c's PIN_LONGTERM_TEST_*
// ioctls, io_uring's fixed-buffer pinning (io_pin_pages()) and vmsplice()'s
// GET references held by a pipe. Until the model has these drivers, they are
// modelled here on top of the C API, with upstream's flags and error rules.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "gup/foll_flags.h"
#include "test_kernel.h"

namespace pl::test::selftest {

// "R/W longterm GUP pin ... with memfd hugetlb (2048 kB)" →
// "R_W_longterm_GUP_pin_..._with_memfd_hugetlb_2048_kB": the selftest's
// message as a gtest name.
inline std::string identifier(const std::string& text) {
    std::string out;
    bool sep = false;
    for (char ch : text) {
        bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum) {
            sep = !out.empty();
            continue;
        }
        if (sep) out += '_';
        sep = false;
        out += ch;
    }
    return out;
}

// A 64-bit digest per 4 KiB page (FNV-style over 64-bit words): lets a
// 1 GiB comparison keep 2 MiB instead of a second copy of the data, and stays
// cheap in unoptimised builds.
inline uint64_t page_digest(const unsigned char* p) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < kPage; i += 8) {
        uint64_t w;
        std::memcpy(&w, p + i, 8);
        h = (h ^ w) * 1099511628211ULL;
    }
    return h;
}

// What the process reads at [addr, addr + size) (memcpy(old, mem, size)).
inline std::vector<uint64_t> digest_mem(task_struct* task, unsigned long addr, unsigned long size) {
    std::vector<uint64_t> d;
    d.reserve(size / kPage);
    const unsigned long chunk = 64 * kPage;
    std::vector<unsigned char> buf(chunk);
    for (unsigned long off = 0; off < size; off += chunk) {
        const unsigned long n = std::min(chunk, size - off);
        long r = pl_read(task, addr + off, buf.data(), n);
        if (r != static_cast<long>(n)) {
            ADD_FAILURE() << "read of 0x" << std::hex << addr + off << " failed: " << std::dec << r;
            d.resize(d.size() + n / kPage, 0);
            continue;
        }
        for (unsigned long i = 0; i < n; i += kPage) d.push_back(page_digest(buf.data() + i));
    }
    return d;
}

// What a device reads through references it holds (PIN_LONGTERM_TEST_READ's
// kmap_local_page() + copy, a pipe's read(), io_uring's write_fixed).
inline std::vector<uint64_t> digest_pages(const std::vector<page*>& pages) {
    std::vector<uint64_t> d;
    std::vector<unsigned char> buf(kPage);
    for (page* p : pages) {
        int r = p ? pl_page_read(p, 0, buf.data(), kPage) : -EFAULT;
        if (r) {
            ADD_FAILURE() << "pl_page_read failed: " << r;
            d.push_back(0);
            continue;
        }
        d.push_back(page_digest(buf.data()));
    }
    return d;
}

// Index of the first page whose digests differ, or -1.
inline long first_difference(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b) {
    size_t n = std::min(a.size(), b.size());
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return static_cast<long>(i);
    return a.size() == b.size() ? -1 : static_cast<long>(n);
}

// mm/gup_test.c pin_longterm_test_start(): FOLL_LONGTERM [|FOLL_WRITE], with
// pin_user_pages_fast() or pin_user_pages() under mmap_read_lock, repeated
// until all pages are pinned; on an error everything is unpinned and the
// error returned. The current task must be `task`.
inline int pin_longterm_test_start(task_struct* task, unsigned long addr, unsigned long size, bool write, bool fast,
                                   std::vector<page*>& pages) {
    const unsigned long nr_pages = size / kPage;
    const unsigned flags = FOLL_LONGTERM | (write ? FOLL_WRITE : 0);
    pages.assign(nr_pages, nullptr);
    unsigned long done = 0;
    int ret = 0;
    if (!fast) mmap_read_lock(pl_task_mm(task));
    while (nr_pages - done) {
        const unsigned long remaining = nr_pages - done;
        const unsigned long at = addr + done * kPage;
        long cur = fast ? ::pin_user_pages_fast(at, static_cast<int>(remaining), flags, pages.data() + done)
                        : ::pin_user_pages(at, remaining, flags, pages.data() + done);
        if (cur == 0) {
            // The ioctl would spin forever; no upstream path returns 0 here
            // (only FOLL_NOWAIT may).
            ADD_FAILURE() << "pin returned 0 pages";
            cur = -EAGAIN;
        }
        if (cur < 0) {
            if (done) unpin_user_pages(pages.data(), done);
            pages.clear();
            ret = static_cast<int>(cur);
            break;
        }
        done += static_cast<unsigned long>(cur);
    }
    if (!fast) mmap_read_unlock(pl_task_mm(task));
    return ret;
}

// PIN_LONGTERM_TEST_STOP (and io_uring_unregister_buffers()).
inline void pin_longterm_test_stop(std::vector<page*>& pages) {
    if (!pages.empty()) unpin_user_pages(pages.data(), pages.size());
    pages.clear();
}

// Pages pinned between START and STOP (or a registered io_uring buffer):
// released on destruction, as closing the gup_test file (or the ring) does,
// so that a failed assertion does not leak pins into the next checks.
struct Pins {
    std::vector<page*> pages;
    Pins() = default;
    Pins(const Pins&) = delete;
    Pins& operator=(const Pins&) = delete;
    ~Pins() { pin_longterm_test_stop(pages); }
};

// io_uring/memmap.c io_pin_pages(), as io_sqe_buffer_register() calls it for
// IORING_REGISTER_BUFFERS: always FOLL_WRITE|FOLL_LONGTERM through
// pin_user_pages_fast(), all or nothing (a partial pin is dropped and becomes
// -EFAULT). Returns 0 with `pages` filled, or a negative errno.
inline int io_pin_pages(unsigned long uaddr, unsigned long len, std::vector<page*>& pages) {
    unsigned long end = uaddr + len;
    if (end < uaddr || end + (kPage - 1) < end) return -EOVERFLOW;
    unsigned long nr = ((end + kPage - 1) / kPage) - uaddr / kPage;
    if (nr == 0) return -EINVAL;
    if (nr > 0x7fffffffUL) return -EOVERFLOW;
    pages.assign(nr, nullptr);
    int ret = ::pin_user_pages_fast(uaddr, static_cast<int>(nr), FOLL_WRITE | FOLL_LONGTERM, pages.data());
    if (ret == static_cast<int>(nr)) return 0;
    if (ret >= 0) {
        if (ret) unpin_user_pages(pages.data(), static_cast<unsigned long>(ret));
        ret = -EFAULT;
    }
    pages.clear();
    return ret;
}

// A pipe filled by vmsplice(): fs/splice.c iter_to_pipe() takes page
// references with iov_iter_get_pages2(), i.e. get_user_pages_fast() without
// FOLL_WRITE (the iterator is a source; FOLL_GET is implied), at most as many
// pages as the pipe has free slots (PIPE_DEF_BUFFERS = 16).
struct Pipe {
    static constexpr unsigned long kSlots = 16;
    std::vector<page*> bufs;
    unsigned long transferred = 0;  // bytes

    // vmsplice(fd, {addr, size}, 1, 0) by the current task: bytes or -errno.
    long vmsplice(unsigned long addr, unsigned long size) {
        unsigned long want = std::min(size / kPage, kSlots - bufs.size());
        if (want == 0) return -EAGAIN;
        std::vector<page*> got(want, nullptr);
        int n = ::get_user_pages_fast(addr, static_cast<int>(want), 0, got.data());
        if (n <= 0) return n ? n : -EFAULT;
        bufs.insert(bufs.end(), got.begin(), got.begin() + n);
        transferred += static_cast<unsigned long>(n) * kPage;
        return static_cast<long>(static_cast<unsigned long>(n) * kPage);
    }
    // read() of everything: what the pipe's pages hold now.
    std::vector<uint64_t> read() const { return digest_pages(bufs); }
    // close(): the pipe buffers' references go.
    void close() {
        for (page* p : bufs) put_page(p);
        bufs.clear();
    }
    ~Pipe() { close(); }
};

}  // namespace pl::test::selftest
