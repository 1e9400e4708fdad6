// pinlab tests — allocations on the pin path (issue 7: "pinning allocates
// nothing beyond the caller's array"). Upstream pin_user_pages_fast() and
// unpin_user_pages() never allocate: GUP-fast walks the page tables and bumps
// reference counts (gup_fast_pte_range(), try_grab_folio_fast()), and
// unpinning only drops them (gup_put_folio()). The model must match: its own
// bookkeeping (the pin tracker, the reference ledger) lives in struct page.
//
// Its own executable: it replaces the global operator new/delete and
// malloc()/calloc()/realloc()/memalign() for the whole process, which
// pinlab_unit (shared by every suite) cannot do. Allocations are counted
// only on the thread under test and only inside the measured window.
#include <gtest/gtest.h>

#include <malloc.h>

#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "pinlab/kapi.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PINLAB_ALLOC_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define PINLAB_ALLOC_SANITIZED 1
#endif
#endif

namespace {

// Initial-exec TLS of the executable itself: reading it never allocates, so
// it is safe inside malloc().
thread_local bool t_counting = false;
thread_local unsigned long t_allocs = 0;
thread_local unsigned long t_bytes = 0;

inline void note_alloc(std::size_t n) {
    if (t_counting) {
        ++t_allocs;
        t_bytes += n;
    }
}

}  // namespace

#ifndef PINLAB_ALLOC_SANITIZED
// The sanitizers interpose malloc themselves; the counting hooks exist only
// in plain builds (the test skips otherwise).
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);

void* malloc(std::size_t n) noexcept {
    note_alloc(n);
    return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t size) noexcept {
    note_alloc(n * size);
    return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t n) noexcept {
    note_alloc(n);
    return __libc_realloc(p, n);
}
void* memalign(std::size_t align, std::size_t n) noexcept {
    note_alloc(n);
    return __libc_memalign(align, n);
}
void* aligned_alloc(std::size_t align, std::size_t n) noexcept {
    note_alloc(n);
    return __libc_memalign(align, n);
}
int posix_memalign(void** out, std::size_t align, std::size_t n) noexcept {
    note_alloc(n);
    void* p = __libc_memalign(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
void free(void* p) noexcept { __libc_free(p); }
}  // extern "C"

namespace {
void* counted_new(std::size_t n) {
    // malloc() above counts it.
    void* p = std::malloc(n ? n : 1);
    if (!p) throw std::bad_alloc();
    return p;
}
void* counted_new_aligned(std::size_t n, std::align_val_t a) {
    void* p = aligned_alloc(static_cast<std::size_t>(a), n ? n : 1);
    if (!p) throw std::bad_alloc();
    return p;
}
}  // namespace

void* operator new(std::size_t n) { return counted_new(n); }
void* operator new[](std::size_t n) { return counted_new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return std::malloc(n ? n : 1); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return std::malloc(n ? n : 1); }
void* operator new(std::size_t n, std::align_val_t a) { return counted_new_aligned(n, a); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_new_aligned(n, a); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
#endif  // PINLAB_ALLOC_SANITIZED

namespace {

constexpr unsigned long kPage = 4096;
constexpr unsigned long kLen = 64UL << 20;
constexpr int kPages = static_cast<int>(kLen / kPage);

// Counts this thread's allocations between construction and stop().
class AllocWindow {
public:
    AllocWindow() {
        t_allocs = 0;
        t_bytes = 0;
        t_counting = true;
    }
    ~AllocWindow() { t_counting = false; }
    AllocWindow(const AllocWindow&) = delete;
    AllocWindow& operator=(const AllocWindow&) = delete;
    void stop() { t_counting = false; }
    unsigned long allocs() const { return t_allocs; }
    unsigned long bytes() const { return t_bytes; }
};

// The counting hooks themselves must work, or a zero below proves nothing.
TEST(PinAlloc, CounterSeesAllocations) {
#ifdef PINLAB_ALLOC_SANITIZED
    GTEST_SKIP() << "sanitizer builds interpose malloc themselves";
#else
    AllocWindow w;
    auto* p = new std::vector<int>(100);
    void* q = std::malloc(10);
    w.stop();
    EXPECT_GE(w.allocs(), 3u);  // the vector, its buffer, the malloc
    EXPECT_GE(w.bytes(), 100 * sizeof(int) + 10);
    std::free(q);
    delete p;
    // And the library's own allocations: booting a kernel allocates.
    AllocWindow boot;
    pl_kernel* k = pl_kernel_new("ram=64M hugetlb_2m=0 hugetlb_1g=0");
    boot.stop();
    ASSERT_NE(k, nullptr) << pl_last_error();
    EXPECT_GT(boot.allocs(), 0u);
    pl_kernel_free(k);
#endif
}

// pin_user_pages_fast(FOLL_WRITE) of 64 MiB of pre-faulted 4 KiB anonymous
// pages (as gup_test's pre-fault: one zero byte stored per page) and
// unpin_user_pages() of the array: no allocation at all. A one-page pin and
// unpin first lets one-time set-up (per-thread state) happen outside the
// window; then two full rounds are counted, so that caches filled by the
// first round cannot hide allocations of the second.
TEST(PinAlloc, PinUserPagesFastAndUnpinAllocateNothing) {
#ifdef PINLAB_ALLOC_SANITIZED
    GTEST_SKIP() << "sanitizer builds interpose malloc themselves";
#else
    pl_kernel* k = pl_kernel_new("ram=1G hugetlb_2m=0 hugetlb_1g=0");
    ASSERT_NE(k, nullptr) << pl_last_error();
    task_struct* t = pl_task_new(k);
    ASSERT_NE(t, nullptr);
    const long a = pl_mmap(t, 0, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0);
    ASSERT_GT(a, 0) << pl_last_error();
    const auto addr = static_cast<unsigned long>(a);
    ASSERT_EQ(pl_madvise(t, addr, kLen, MADV_NOHUGEPAGE), 0) << pl_last_error();
    const char zero = 0;
    for (unsigned long off = 0; off < kLen; off += kPage) ASSERT_EQ(pl_write(t, addr + off, &zero, 1), 1);
    pl_set_current(t);
    std::vector<page*> pages(kPages);

    ASSERT_EQ(pin_user_pages_fast(addr, 1, FOLL_WRITE, pages.data()), 1) << pl_last_error();
    unpin_user_pages(pages.data(), 1);

    for (int round = 1; round <= 2; ++round) {
        AllocWindow w;
        const int got = pin_user_pages_fast(addr, kPages, FOLL_WRITE, pages.data());
        if (got > 0) unpin_user_pages(pages.data(), static_cast<unsigned long>(got));
        w.stop();
        ASSERT_EQ(got, kPages) << pl_last_error();
        // They were pins, counted as such (the one-page warm-up, then each round).
        EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), 1ul + static_cast<unsigned long>(round) * kPages);
        EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_released"), 1ul + static_cast<unsigned long>(round) * kPages);
        RecordProperty("round" + std::to_string(round) + "_allocations", std::to_string(w.allocs()));
        RecordProperty("round" + std::to_string(round) + "_bytes", std::to_string(w.bytes()));
        EXPECT_EQ(w.allocs(), 0u) << "round " << round << ": " << w.allocs() << " allocations (" << w.bytes()
                                  << " bytes) pinning and unpinning " << kPages << " pages";
    }
    EXPECT_EQ(pl_pin_balance(k, nullptr), 0);

    pl_set_current(nullptr);
    EXPECT_EQ(pl_munmap(t, addr, kLen), 0);
    pl_exit(t);
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
    EXPECT_EQ(pl_warning_count(k, nullptr), 0) << pl_dmesg(k);
    pl_kernel_free(k);
#endif
}

}  // namespace
