// dma-buf heaps (src/drivers/dma_buf.cpp, dma_heap*.cpp): allocation through
// DMA_HEAP_IOCTL_ALLOC, dma_buf_mmap_internal()'s checks, each heap's mmap
// and what GUP makes of it, and seed 003's two never-merged lockdowns
// (dmabuf.require_pfnmap, dmabuf.refuse_private).
#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>
#include <vector>

#include "debug/pin_tracker.h"
#include "drivers/dma_heap.h"
#include "fs/file.h"
#include "gup/foll_flags.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

constexpr const char* kBase = "ram=512M hugetlb_2m=8 hugetlb_1g=0";
constexpr const char* kWithCma = "ram=512M hugetlb_2m=8 hugetlb_1g=0 cma=64M";
constexpr const char* kWithCmaV65 = "ram=512M hugetlb_2m=8 hugetlb_1g=0 cma=64M era=v6.5";
constexpr const char* kV510 = "ram=512M hugetlb_2m=8 hugetlb_1g=0 era=v5.10";

// One heap as userspace sees it after mmap(MAP_SHARED).
struct HeapRow {
    const char* heap;
    const char* config;
    unsigned long flags_set;    // VMA flags the heap's mmap must set
    unsigned long flags_clear;  // ... and must not
    bool gup_ok;                // GUP can take the pages
    const char* rule;           // the upstream function this row checks
};

const HeapRow kHeaps[] = {
    {"system", kBase, VM_IO | VM_PFNMAP, VM_MIXEDMAP, false,
     "system_heap_mmap(): remap_pfn_range → special PTEs; check_vma_flags() refuses VM_IO|VM_PFNMAP"},
    {"system-insert-page", kBase, VM_MIXEDMAP, VM_IO | VM_PFNMAP, true,
     "seed 003's motivating patch: vm_insert_page() → VM_MIXEDMAP, normal PTEs, GUP works"},
    {"cma", kWithCma, VM_IO | VM_PFNMAP, VM_MIXEDMAP, false,
     "cma_heap_mmap()/cma_heap_vm_fault() since v6.9: VM_PFNMAP + vmf_insert_pfn()"},
    {"cma", kWithCmaV65, 0, VM_IO | VM_PFNMAP | VM_MIXEDMAP, true,
     "cma_heap_vm_fault() before v6.9: vmf->page + get_page(), an ordinary file PTE"},
    {"system", kV510, 0, VM_IO | VM_PFNMAP | VM_MIXEDMAP, true,
     "heap-helpers.c dma_heap_vm_fault() (v5.6-v5.10): vmf->page + get_page()"},
};

class DmaBufHeap : public KernelTest {
protected:
    pl_file* heap_alloc(const char* heap, unsigned long len) {
        pl_file* f = pl_dma_heap_alloc(k, heap, len, 0, 0);
        EXPECT_NE(f, nullptr) << heap << ": " << pl_last_error();
        return f;
    }
    // The fixture drops `files` at teardown.
    pl_file* heap_alloc_kept(const char* heap, unsigned long len) {
        pl_file* f = heap_alloc(heap, len);
        if (f) files.push_back(f);
        return f;
    }
    long map_buf(pl_file* f, unsigned long len, int flags = MAP_SHARED, unsigned long off = 0) {
        return pl_mmap(t, 0, len, PROT_READ | PROT_WRITE, flags, f, off);
    }
    unsigned long vma_flags(unsigned long addr) {
        mmap_read_lock(pl_task_mm(t));
        vm_area_struct* v = vma_lookup(pl_task_mm(t), addr);
        unsigned long fl = v ? pl_vma_flags(v) : 0;
        mmap_read_unlock(pl_task_mm(t));
        return fl;
    }
    std::string device_str(pl_file* f, unsigned long off, size_t n = 32) {
        std::vector<char> b(n + 1, 0);
        EXPECT_EQ(pl_dma_buf_device_read(f, off, b.data(), n), static_cast<long>(n)) << pl_last_error();
        return std::string(b.data());
    }
    void device_put(pl_file* f, unsigned long off, const std::string& s) {
        ASSERT_EQ(pl_dma_buf_device_write(f, off, s.c_str(), s.size() + 1), static_cast<long>(s.size() + 1))
            << pl_last_error();
    }
};

// ---- allocation: dma_heap_ioctl_allocate(), dma_heap_buffer_alloc() ------------

TEST_F(DmaBufHeap, AllocOnEachHeapGivesAZeroedPageAlignedBuffer) {
    for (const HeapRow& row : kHeaps) {
        SCOPED_TRACE(std::string(row.heap) + " [" + row.config + "]: " + row.rule);
        reboot(row.config);
        // dma_heap_buffer_alloc(): PAGE_ALIGN(len).
        pl_file* f = heap_alloc_kept(row.heap, 3 * kPage + 5);
        ASSERT_NE(f, nullptr);
        EXPECT_EQ(pl_dma_buf_size(f), 4 * kPage);
        // The heaps hand out zeroed memory (__GFP_ZERO; cma_heap clears its pages).
        std::vector<unsigned char> b(4 * kPage, 0xAA);
        ASSERT_EQ(pl_dma_buf_device_read(f, 0, b.data(), b.size()), static_cast<long>(b.size()));
        EXPECT_TRUE(std::all_of(b.begin(), b.end(), [](unsigned char c) { return c == 0; }));
        // The heap's memory is allocated: 4 pages beyond the kernel's baseline.
        EXPECT_EQ(pl_nr_allocated_pages(k), baseline + 4);
    }
}

TEST_F(DmaBufHeap, AllocErrors) {
    struct Row {
        const char* heap;
        unsigned long len;
        unsigned fd_flags;
        unsigned long long heap_flags;
        int err;
        const char* rule;
    } rows[] = {
        {"system", 0, 0, 0, EINVAL, "dma_heap_buffer_alloc(): PAGE_ALIGN(len) == 0"},
        {"system", ~0UL - 10, 0, 0, EINVAL, "dma_heap_buffer_alloc(): PAGE_ALIGN wraps to 0"},
        {"system", kPage, 0x40 /* O_CREAT */, 0, EINVAL, "dma_heap_ioctl_allocate(): fd_flags & ~VALID_FD_FLAGS"},
        {"system", kPage, 0, 1, EINVAL, "dma_heap_ioctl_allocate(): heap_flags & ~VALID_HEAP_FLAGS"},
        {"nosuchheap", kPage, 0, 0, ENOENT, "no /dev/dma_heap/<name> node"},
        {"cma", kPage, 0, 0, ENOENT, "add_default_cma_heap(): no CMA area, no heap"},
        {"system", 1UL << 40, 0, 0, ENOMEM, "system_heap_allocate(): alloc_largest_available() fails"},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(std::string(r.heap) + ": " + r.rule);
        Result<File*> f = dma_heap_alloc(kern(), r.heap, r.len, r.fd_flags, r.heap_flags);
        ASSERT_FALSE(f.ok());
        EXPECT_EQ(f.error().errnum, r.err);
    }
    // Through the C API: NULL, and pl_last_error() names the errno.
    EXPECT_EQ(pl_dma_heap_alloc(k, "cma", kPage, 0, 0), nullptr);
    EXPECT_NE(std::string(pl_last_error()).find("ENOENT"), std::string::npos) << pl_last_error();
    EXPECT_EQ(pl_dma_heap_alloc(nullptr, "system", kPage, 0, 0), nullptr);
    EXPECT_EQ(pl_dma_heap_alloc(k, nullptr, kPage, 0, 0), nullptr);
    // O_CLOEXEC|O_RDWR are valid fd flags.
    pl_file* ok = pl_dma_heap_alloc(k, "system", kPage, 02000000 | 2, 0);
    ASSERT_NE(ok, nullptr) << pl_last_error();
    pl_file_put(ok);
    // Nothing leaked by the failed allocations (the fixture checks frames too).
    EXPECT_EQ(pl_nr_allocated_pages(k), baseline);
    // system_heap_allocate(): "Avoid trying to allocate memory if the
    // process has been killed by SIGKILL" → -EINTR, nothing kept.
    ASSERT_EQ(pl_task_signal(t, SIGKILL), 0);
    pl_set_current(t);
    Result<File*> killed = dma_heap_alloc(kern(), "system", 4 * kPage, 0, 0);
    pl_set_current(nullptr);
    pl_task_clear_signals(t);
    ASSERT_FALSE(killed.ok());
    EXPECT_EQ(killed.error().errnum, EINTR);
    EXPECT_EQ(pl_nr_allocated_pages(k), baseline);
    // dma-buf heaps (drivers/dma-buf/dma-heap.c) were added in v5.6.
    reboot("ram=512M hugetlb_2m=8 hugetlb_1g=0 cma=64M era=v5.5");
    for (const char* heap : {"system", "system-insert-page", "cma"}) {
        Result<File*> f = dma_heap_alloc(kern(), heap, kPage, 0, 0);
        ASSERT_FALSE(f.ok()) << heap;
        EXPECT_EQ(f.error().errnum, ENOENT) << heap;
    }
}

TEST_F(DmaBufHeap, SystemHeapChunksFollowAllocLargestAvailable) {
    // system_heap_allocate(): orders 8, 4, 0 from the largest that fits;
    // observed through the vm_insert_page variant, which maps the chunks'
    // own pages.
    const unsigned long len = (256 + 16 + 1) * kPage;
    pl_file* f = heap_alloc_kept("system-insert-page", len);
    ASSERT_NE(f, nullptr);
    long a = map_buf(f, len);
    ASSERT_GT(a, 0) << pl_last_error();
    const unsigned long base = static_cast<unsigned long>(a);
    struct {
        unsigned long page_index;
        unsigned long folio_pages;
    } rows[] = {{0, 256}, {255, 256}, {256, 16}, {271, 16}, {272, 1}};
    for (auto r : rows) {
        page* p = pg(t, base + r.page_index * kPage);
        ASSERT_NE(p, nullptr) << r.page_index;
        EXPECT_EQ(folio_nr_pages(page_folio(p)), r.folio_pages) << "page " << r.page_index;
    }
}

// ---- mmap: dma_buf_mmap_internal() and the heaps' mmap ------------------------

TEST_F(DmaBufHeap, SharedMmapSetsEachHeapsFlagsAndCpuSeesTheBuffer) {
    for (const HeapRow& row : kHeaps) {
        SCOPED_TRACE(std::string(row.heap) + " [" + row.config + "]: " + row.rule);
        reboot(row.config);
        const unsigned long len = 4 * kPage;
        pl_file* f = heap_alloc_kept(row.heap, len);
        ASSERT_NE(f, nullptr);
        device_put(f, 2 * kPage + 7, "from the device");
        long a = map_buf(f, len);
        ASSERT_GT(a, 0) << pl_last_error();
        const unsigned long addr = static_cast<unsigned long>(a);
        const unsigned long fl = vma_flags(addr);
        EXPECT_EQ(fl & row.flags_set, row.flags_set) << std::hex << fl;
        EXPECT_EQ(fl & row.flags_clear, 0UL) << std::hex << fl;
        // The CPU's loads see what the device wrote; its stores reach the buffer.
        EXPECT_EQ(get_str(t, addr + 2 * kPage + 7), "from the device");
        put_str(t, addr + 3 * kPage + 1, "from the cpu");
        EXPECT_EQ(device_str(f, 3 * kPage + 1), "from the cpu");
        // A mapping at an offset into the buffer (vm_pgoff) sees the same bytes.
        long b = map_buf(f, kPage, MAP_SHARED, 3 * kPage);
        ASSERT_GT(b, 0) << pl_last_error();
        EXPECT_EQ(get_str(t, static_cast<unsigned long>(b) + 1), "from the cpu");
        EXPECT_EQ(pl_munmap(t, static_cast<unsigned long>(b), kPage), 0);
        EXPECT_EQ(pl_munmap(t, addr, len), 0);
    }
}

TEST_F(DmaBufHeap, MmapBeyondTheBufferIsEinval) {
    // dma_buf_mmap_internal(): vm_pgoff + vma_pages(vma) > size >> PAGE_SHIFT.
    pl_file* f = heap_alloc_kept("system", 4 * kPage);
    ASSERT_NE(f, nullptr);
    struct {
        unsigned long len, off;
        bool ok;
    } rows[] = {
        {4 * kPage, 0, true},          {5 * kPage, 0, false},         {kPage, 3 * kPage, true},
        {2 * kPage, 3 * kPage, false}, {kPage, 4 * kPage, false},     {kPage, 1UL << 50, false},
    };
    for (auto r : rows) {
        long a = map_buf(f, r.len, MAP_SHARED, r.off);
        if (r.ok) {
            EXPECT_GT(a, 0) << r.len << "@" << r.off << ": " << pl_last_error();
            if (a > 0) {
                EXPECT_EQ(pl_munmap(t, static_cast<unsigned long>(a), r.len), 0);
            }
        } else {
            EXPECT_EQ(a, -EINVAL) << r.len << "@" << r.off;
        }
    }
    // A file that is not a dma-buf has no device view.
    pl_file* ext4 = file("ext4", kPage);
    char c;
    EXPECT_EQ(pl_dma_buf_device_read(ext4, 0, &c, 1), -EINVAL);
    EXPECT_EQ(pl_dma_buf_device_read(f, 4 * kPage, &c, 1), -EINVAL);
    EXPECT_EQ(pl_dma_buf_device_write(f, 4 * kPage - 1, "ab", 2), -EINVAL);
    EXPECT_EQ(pl_dma_buf_size(ext4), 0UL);
}

// ---- GUP on the mappings ---------------------------------------------------------

TEST_F(DmaBufHeap, GupOnEachHeapsMapping) {
    for (const HeapRow& row : kHeaps) {
        SCOPED_TRACE(std::string(row.heap) + " [" + row.config + "]: " + row.rule);
        reboot(row.config);
        const unsigned long len = 2 * kPage;
        pl_file* f = heap_alloc_kept(row.heap, len);
        ASSERT_NE(f, nullptr);
        long a = map_buf(f, len);
        ASSERT_GT(a, 0) << pl_last_error();
        const unsigned long addr = static_cast<unsigned long>(a);
        put_str(t, addr, "fault it in");  // the CMA heap maps at fault time
        pl_set_current(t);

        page* pages[2] = {};
        // GUP-fast (special PTEs stop it; the slow path's check_vma_flags() then refuses).
        int n = pin_user_pages_fast(addr, 2, FOLL_WRITE, pages);
        if (row.gup_ok) {
            ASSERT_EQ(n, 2);
            // The pinned page is the buffer's: the device's write shows through it.
            device_put(f, 0, "dma");
            char got[4] = {};
            ASSERT_EQ(pl_page_read(pages[0], 0, got, 4), 0);
            EXPECT_STREQ(got, "dma");
            unpin_user_pages(pages, 2);
        } else {
            EXPECT_EQ(n, -EFAULT);
        }
        // The slow path: get_user_pages() under mmap_read_lock.
        mmap_read_lock(pl_task_mm(t));
        long g = ::get_user_pages(addr, 2, 0, pages);
        mmap_read_unlock(pl_task_mm(t));
        if (row.gup_ok) {
            ASSERT_EQ(g, 2);
            put_page(pages[0]);
            put_page(pages[1]);
        } else {
            EXPECT_EQ(g, -EFAULT);
        }
        EXPECT_EQ(pl_munmap(t, addr, len), 0);
        pl_set_current(nullptr);
    }
}

// ---- seed 003: dmabuf.require_pfnmap ----------------------------------------------

TEST_F(DmaBufHeap, RequirePfnmapWarnsAtMmapWithoutRefusing) {
    struct Row {
        const char* heap;
        const char* config;
        bool warns;
        const char* rule;
    } rows[] = {
        {"system", "ram=512M hugetlb_2m=8 hugetlb_1g=0 dmabuf.require_pfnmap=on", false,
         "system_heap_mmap(): remap_pfn_range sets VM_PFNMAP"},
        {"system-insert-page", "ram=512M hugetlb_2m=8 hugetlb_1g=0 dmabuf.require_pfnmap=on", true,
         "seed 003: WARN_ON(!(vma->vm_flags & VM_PFNMAP)) catches vm_insert_page"},
        {"cma", "ram=512M hugetlb_2m=8 hugetlb_1g=0 cma=64M dmabuf.require_pfnmap=on", false,
         "cma_heap_mmap() v6.9+: VM_PFNMAP"},
        {"cma", "ram=512M hugetlb_2m=8 hugetlb_1g=0 cma=64M era=v6.5 dmabuf.require_pfnmap=on", true,
         "seed 003, John Stultz: \"with the current dmabuf heaps it spews a lot of warnings\""},
        {"system", "ram=512M hugetlb_2m=8 hugetlb_1g=0 era=v5.10 dmabuf.require_pfnmap=on", true,
         "heap-helpers.c dma_heap_mmap() (v5.6-v5.10) sets no VM_PFNMAP"},
        {"system-insert-page", kBase, false, "upstream (switch off): no check"},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(std::string(r.heap) + " [" + r.config + "]: " + r.rule);
        reboot(r.config);
        pl_file* f = heap_alloc_kept(r.heap, 2 * kPage);
        ASSERT_NE(f, nullptr);
        // The patch only WARNs: the mmap succeeds either way.
        long a = map_buf(f, 2 * kPage);
        ASSERT_GT(a, 0) << pl_last_error();
        const int warns = pl_warning_count(k, "warn");
        if (r.warns) {
            expect_reports("warn", 1);
            ASSERT_EQ(warns, 1) << pl_dmesg(k);
            EXPECT_NE(std::string(pl_dmesg(k)).find(std::string("dma-buf: exporter ") + r.heap +
                                                    " mmap did not set VM_PFNMAP"),
                      std::string::npos)
                << pl_dmesg(k);
        } else {
            EXPECT_EQ(warns, 0) << pl_dmesg(k);
        }
        // And the warned-about mapping is exactly the one GUP can reach.
        pl_set_current(t);
        page* p = nullptr;
        int n = pin_user_pages_fast(static_cast<unsigned long>(a), 1, FOLL_WRITE, &p);
        if (r.warns || std::string(r.config) == kBase) {
            EXPECT_EQ(n, 1);
            if (n == 1) unpin_user_page(p);
        } else {
            EXPECT_EQ(n, -EFAULT);
        }
        pl_set_current(nullptr);
    }
}

TEST_F(DmaBufHeap, RequirePfnmapWarnsEvenWhenTheExporterRefuses) {
    // Seed 003's hunk: `ret = dmabuf->ops->mmap(dmabuf, vma); WARN_ON(!(vma->vm_flags
    // & VM_PFNMAP)); return ret;` — the check runs after a failed mmap too:
    // cma_heap_mmap() refuses MAP_PRIVATE before it sets VM_PFNMAP.
    reboot("ram=512M hugetlb_2m=8 hugetlb_1g=0 cma=64M dmabuf.require_pfnmap=on");
    pl_file* f = heap_alloc_kept("cma", kPage);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(map_buf(f, kPage, MAP_PRIVATE), -EINVAL);
    expect_reports("warn", 1);
    EXPECT_EQ(pl_warning_count(k, "warn"), 1) << pl_dmesg(k);
    // The same heap's MAP_SHARED mapping sets VM_PFNMAP: no further WARN.
    EXPECT_GT(map_buf(f, kPage), 0) << pl_last_error();
    EXPECT_EQ(pl_warning_count(k, "warn"), 1) << pl_dmesg(k);
}

// ---- seed 003 thread: dmabuf.refuse_private, and the heaps' own MAP_PRIVATE rules ----

TEST_F(DmaBufHeap, MapPrivate) {
    struct Row {
        const char* heap;
        const char* config;
        unsigned long len;
        long want;  // 1: mapped, else the errno
        const char* rule;
    } rows[] = {
        {"system-insert-page", kBase, 2 * kPage, 1, "upstream: vm_insert_page works in a COW mapping"},
        {"system-insert-page", "ram=512M hugetlb_2m=8 hugetlb_1g=0 dmabuf.refuse_private=on", 2 * kPage, -EINVAL,
         "seed 003 thread: -EINVAL on is_cow_mapping() at mmap time"},
        {"system", kBase, kPage, 1, "remap_pfn_range(): one chunk covers the whole COW VMA"},
        {"system", kBase, 2 * kPage, -EINVAL, "remap_pfn_range(): a COW VMA needs one call for the whole range"},
        {"system", "ram=512M hugetlb_2m=8 hugetlb_1g=0 dmabuf.refuse_private=on", kPage, -EINVAL,
         "seed 003 thread: refused before the exporter is asked"},
        {"cma", kWithCma, kPage, -EINVAL, "cma_heap_mmap(): !(VM_SHARED|VM_MAYSHARE) → -EINVAL"},
        {"cma", kWithCmaV65, kPage, -EINVAL, "cma_heap_mmap(): the same check before v6.9"},
        {"system", kV510, kPage, -EINVAL, "heap-helpers.c dma_heap_mmap(): !(VM_SHARED|VM_MAYSHARE) → -EINVAL"},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(std::string(r.heap) + " [" + r.config + "]: " + r.rule);
        reboot(r.config);
        pl_file* f = heap_alloc_kept(r.heap, r.len);
        ASSERT_NE(f, nullptr);
        device_put(f, 0, "shared bytes");
        long a = map_buf(f, r.len, MAP_PRIVATE);
        if (r.want != 1) {
            EXPECT_EQ(a, r.want);
            // Nothing half-mapped was left behind.
            EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
            continue;
        }
        ASSERT_GT(a, 0) << pl_last_error();
        const unsigned long addr = static_cast<unsigned long>(a);
        // A private mapping reads the buffer until it writes: the write COWs.
        EXPECT_EQ(get_str(t, addr), "shared bytes");
        put_str(t, addr, "private");
        EXPECT_EQ(get_str(t, addr), "private");
        EXPECT_EQ(device_str(f, 0), "shared bytes");
        // MAP_SHARED stays allowed with the switch.
        long s = map_buf(f, r.len);
        EXPECT_GT(s, 0) << pl_last_error();
    }
    // The switch does not touch shared mappings.
    reboot("ram=512M hugetlb_2m=8 hugetlb_1g=0 dmabuf.refuse_private=on");
    pl_file* f = heap_alloc_kept("system", 2 * kPage);
    EXPECT_GT(map_buf(f, 2 * kPage), 0) << pl_last_error();
}

// ---- lifetime: the VMA's file reference, fork, release while pinned ----------------

TEST_F(DmaBufHeap, ClosingTheFileWhileMappedKeepsTheBufferUntilMunmap) {
    for (const HeapRow& row : kHeaps) {
        SCOPED_TRACE(std::string(row.heap) + " [" + row.config + "]: " + row.rule);
        reboot(row.config);
        const unsigned long len = 4 * kPage;
        pl_file* f = heap_alloc(row.heap, len);
        ASSERT_NE(f, nullptr);
        device_put(f, kPage, "still here");
        long a = map_buf(f, len);
        ASSERT_GT(a, 0) << pl_last_error();
        const unsigned long addr = static_cast<unsigned long>(a);
        // close(fd): the VMA's vm_file reference keeps the dma-buf.
        pl_file_put(f);
        EXPECT_EQ(pl_nr_allocated_pages(k), baseline + 4);
        EXPECT_EQ(get_str(t, addr + kPage), "still here");
        EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
        // munmap(): the last reference goes, dma_buf_release() frees the buffer.
        EXPECT_EQ(pl_munmap(t, addr, len), 0);
        EXPECT_EQ(pl_nr_allocated_pages(k), baseline);
    }
}

TEST_F(DmaBufHeap, ForkSharesTheMapping) {
    for (const HeapRow& row : kHeaps) {
        SCOPED_TRACE(std::string(row.heap) + " [" + row.config + "]: " + row.rule +
                     " (copy_page_range copies VM_PFNMAP/VM_MIXEDMAP entries; an ordinary shared file VMA refaults)");
        reboot(row.config);
        const unsigned long len = 2 * kPage;
        pl_file* f = heap_alloc_kept(row.heap, len);
        ASSERT_NE(f, nullptr);
        long a = map_buf(f, len);
        ASSERT_GT(a, 0) << pl_last_error();
        const unsigned long addr = static_cast<unsigned long>(a);
        put_str(t, addr, "parent");
        task_struct* child = pl_fork(t);
        ASSERT_NE(child, nullptr) << pl_last_error();
        EXPECT_EQ(get_str(child, addr), "parent");
        put_str(child, addr + kPage, "child");
        EXPECT_EQ(get_str(t, addr + kPage), "child");
        EXPECT_EQ(device_str(f, kPage), "child");
        EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
        pl_exit(child);
        EXPECT_EQ(get_str(t, addr), "parent");
    }
}

TEST_F(DmaBufHeap, ReleaseWhilePinnedReportsAndThePinKeepsTheFrame) {
    // The heaps' release drops their reference on each page whatever else
    // holds it; a pin taken through a mapping GUP could reach keeps the
    // frame, which no longer belongs to any buffer: the pin tracker reports
    // it, and the frame is freed at unpin.
    struct Row {
        const char* heap;
        const char* config;
        int contig_warns;
        const char* rule;
    } rows[] = {
        {"system-insert-page", kBase, 0, "system_heap_dma_buf_release(): __free_pages() per chunk"},
        {"cma", kWithCmaV65, 1,
         "cma_heap_dma_buf_release() → cma_release() → free_contig_range(): __free_page() per page, "
         "WARN \"pages are still in use!\""},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(std::string(r.heap) + " [" + r.config + "]: " + r.rule);
        reboot(r.config);
        const unsigned long len = 2 * kPage;  // two order-0 pages
        pl_file* f = heap_alloc(r.heap, len);
        ASSERT_NE(f, nullptr);
        long a = map_buf(f, len);
        ASSERT_GT(a, 0) << pl_last_error();
        const unsigned long addr = static_cast<unsigned long>(a);
        pl_set_current(t);
        page* p = nullptr;
        {
            // A driver's long-lived pin (direct I/O in flight, an RDMA MR).
            PinOwnerScope owner("test-dio", "dma_buf_test");
            ASSERT_EQ(pin_user_pages_fast(addr, 1, FOLL_WRITE, &p), 1);
        }
        pl_set_current(nullptr);
        EXPECT_EQ(pl_munmap(t, addr, len), 0);
        EXPECT_EQ(pl_warning_count(k, "pinned_page_moved"), 0);
        pl_file_put(f);  // the last reference: dma_buf_release()
        expect_reports("pinned_page_moved", 1);
        EXPECT_EQ(pl_warning_count(k, "pinned_page_moved"), 1) << pl_dmesg(k);
        if (r.contig_warns) {
            expect_reports("warn", r.contig_warns);
            EXPECT_NE(std::string(pl_dmesg(k)).find("1 pages are still in use!"), std::string::npos) << pl_dmesg(k);
        }
        // The unpinned page went back to the buddy; the pinned one lives on.
        EXPECT_EQ(pl_nr_allocated_pages(k), baseline + 1);
        EXPECT_EQ(page_ref_count(p), GUP_PIN_COUNTING_BIAS);
        EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
        // The device may still write through the pin; the frame is freed at unpin.
        EXPECT_EQ(pl_page_write(p, 0, "late", 5), 0);
        unpin_user_page(p);
        EXPECT_EQ(pl_nr_allocated_pages(k), baseline);
    }
}

TEST_F(DmaBufHeap, NoReportsOnCorrectPaths) {
    // Allocate, map, fork, access, unmap and close on every heap with both
    // switches on: only the WARNs the switches promise (none for VM_PFNMAP
    // heaps), no pin-tracker report.
    reboot("ram=512M hugetlb_2m=8 hugetlb_1g=0 cma=64M dmabuf.require_pfnmap=on dmabuf.refuse_private=on");
    for (const char* heap : {"system", "cma"}) {
        pl_file* f = heap_alloc(heap, 300 * kPage);
        ASSERT_NE(f, nullptr);
        long a = map_buf(f, 300 * kPage);
        ASSERT_GT(a, 0) << pl_last_error();
        const unsigned long addr = static_cast<unsigned long>(a);
        EXPECT_EQ(pl_memset(t, addr, 'x', 300 * kPage), static_cast<long>(300 * kPage));
        task_struct* child = pl_fork(t);
        ASSERT_NE(child, nullptr);
        EXPECT_EQ(get_str(child, addr + 299 * kPage, 1), "x");
        pl_exit(child);
        EXPECT_EQ(pl_munmap(t, addr, 300 * kPage), 0);
        pl_file_put(f);
    }
    EXPECT_EQ(pl_warning_count(k, nullptr), 0) << pl_dmesg(k);
    EXPECT_EQ(pl_nr_allocated_pages(k), baseline);
}

}  // namespace
}  // namespace pl::test
