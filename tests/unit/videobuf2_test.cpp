// videobuf2 USERPTR buffers (src/drivers/videobuf2.cpp; seed 000, issue 4):
// QBUF of user memory through vb2_create_framevec() in every era, the
// device's DMA through what the frame vector holds, DQBUF, and put_userptr.
// Rows cite the upstream rule they check: videobuf2-core.c
// __prepare_userptr(), videobuf2-memops.c vb2_create_framevec(), the
// get_userptr/put_userptr of videobuf2-{vmalloc,dma-contig,dma-sg}.c, and
// get_vaddr_frames() of the era (docs/FIDELITY.md, "Frame vectors").
#include <cstring>
#include <string>
#include <vector>

#include "mm/physmem.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

constexpr const char* kBase = "ram=512M hugetlb_2m=8 hugetlb_1g=0";
constexpr unsigned kN = 4;  // pages per buffer
constexpr unsigned long kLen = kN * kPage;

const char* memops_name(int m) {
    return m == PL_VB2_VMALLOC ? "vmalloc" : m == PL_VB2_DMA_CONTIG ? "dma-contig" : "dma-sg";
}

// A queue closed at the end of its scope (before the fixture exits the task
// or reboots), as a program closing its video device.
struct Queue {
    pl_vb2_queue* q;
    Queue(task_struct* t, int memops, int type, unsigned long sizeimage = kLen, unsigned flags = 0)
        : q(pl_vb2_queue_new(t, memops, type, sizeimage, flags)) {
        EXPECT_NE(q, nullptr) << pl_last_error();
        if (q) {
            EXPECT_EQ(pl_vb2_reqbufs(q, 2), 2);
        }
    }
    ~Queue() {
        if (q) pl_vb2_queue_free(q);
    }
    Queue(const Queue&) = delete;
    Queue& operator=(const Queue&) = delete;
};

class Videobuf2 : public KernelTest {
protected:
    void SetUp() override { boot_era(kBase, "current"); }
    void boot_era(const char* base, const char* era) {
        const std::string c = std::string(base) + " era=" + era;
        if (k) reboot(c.c_str());
        else boot(c.c_str());
        pl_set_current(t);
    }
    long balance() { return pl_pin_balance(k, "videobuf2"); }
    std::string dmesg() { return pl_dmesg(k); }
    bool warned() { return dmesg().find("get_vaddr_frames() cannot follow VM_IO mapping") != std::string::npos; }
    std::string pattern(const char* tag, unsigned long len) {
        std::string s;
        while (s.size() < len) s += tag;
        s.resize(len);
        return s;
    }
    std::string cpu_read(unsigned long addr, unsigned long len) {
        std::string s(len, '\0');
        EXPECT_EQ(pl_read(t, addr, s.data(), len), static_cast<long>(len)) << pl_last_error();
        return s;
    }
    void cpu_write(unsigned long addr, const std::string& s) {
        EXPECT_EQ(pl_write(t, addr, s.data(), s.size()), static_cast<long>(s.size())) << pl_last_error();
    }
    pl_file* device(const char* name) {
        pl_file* d = pl_dev_open(k, name);
        EXPECT_NE(d, nullptr) << pl_last_error();
        return d;
    }
    // n pages of a device mapped MAP_SHARED from page offset pgoff.
    unsigned long map_device(pl_file* d, unsigned long n, unsigned long pgoff = 0, unsigned long at = 0) {
        return map(t, n * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | (at ? MAP_FIXED : 0), d, pgoff * kPage, at);
    }
    unsigned long anon(unsigned long n) {
        unsigned long a = map(n * kPage);
        EXPECT_EQ(pl_memset(t, a, 0x5a, n * kPage), static_cast<long>(n * kPage));
        return a;
    }
    unsigned long mapped_pfn(unsigned long addr) { return pte::pfn(entry(t, addr)); }
    std::vector<unsigned long> frames(pl_vb2_queue* q, unsigned index, int* got_ref) {
        std::vector<unsigned long> pfns(64, 0);
        int n = pl_vb2_buffer_frames(q, index, pfns.data(), 64, got_ref);
        EXPECT_GE(n, 0) << pl_last_error();
        pfns.resize(n > 0 ? static_cast<size_t>(n) : 0);
        return pfns;
    }
    // DQBUF of the buffer the device just completed.
    void expect_dqbuf(pl_vb2_queue* q, int index, unsigned long bytes) {
        unsigned long used = 0;
        EXPECT_EQ(pl_vb2_dqbuf(q, &used), index);
        EXPECT_EQ(used, bytes);
    }
};

// ---- normal memory: capture and output through pinned pages -------------------------------------

struct EraRow {
    const char* era;
    bool pins;  // v5.8 55a650c35fea: FOLL_PIN (else FOLL_GET references of get_user_pages_locked())
    const char* why;
};
constexpr EraRow kEras[] = {
    {"v4.8", false, "v4.2 mm/frame_vector.c: get_user_pages_locked(FOLL_FORCE|FOLL_WRITE), GET references"},
    {"v5.8", true, "v5.8: pin_user_pages_locked(), FOLL_PIN"},
    {"v5.16", true, "v5.12 04769cb1c45a (seed 000): pin_user_pages_fast(FOLL_LONGTERM)"},
    {"v6.0", true, "v5.12-v6.0: the same, PFN fallback only when nothing was pinned"},
    {"v6.4", true, "v6.1 6647e76ab623: pin_user_pages_fast(FOLL_LONGTERM) only"},
    {"current", true, "v6.6: the same"},
};

TEST_F(Videobuf2, CaptureIntoAnonCpuReadsWhatTheDeviceWrote) {
    for (const EraRow& r : kEras) {
        for (int m : {PL_VB2_VMALLOC, PL_VB2_DMA_CONTIG, PL_VB2_DMA_SG}) {
            SCOPED_TRACE(std::string(r.why) + " / " + memops_name(m));
            boot_era(kBase, r.era);
            const unsigned long a = anon(kN);
            // dma-contig: behind an IOMMU any page list is one DMA range.
            Queue q(t, m, PL_VB2_CAPTURE, kLen, m == PL_VB2_DMA_CONTIG ? PL_VB2_DEV_IOMMU : 0);
            const int ref0 = page_ref_count(pg(t, a));
            ASSERT_EQ(pl_vb2_qbuf(q.q, 0, a, kLen), 0) << pl_last_error();
            int got_ref = -1;
            std::vector<unsigned long> pfns = frames(q.q, 0, &got_ref);
            ASSERT_EQ(pfns.size(), kN);
            EXPECT_EQ(got_ref, 1) << "normal memory: the vector holds references";
            for (unsigned i = 0; i < kN; i++) EXPECT_EQ(pfns[i], mapped_pfn(a + i * kPage)) << "frame " << i;
            EXPECT_EQ(balance(), r.pins ? static_cast<long>(kN) : 0) << "pins owned by videobuf2";
            if (!r.pins) {
                EXPECT_EQ(page_ref_count(pg(t, a)), ref0 + 1) << "a GET reference instead";
            }
            const std::string img = pattern("frame-0:", kLen);
            ASSERT_EQ(pl_vb2_device_dma(q.q, const_cast<char*>(img.data()), kLen), static_cast<long>(kLen));
            expect_dqbuf(q.q, 0, kLen);
            EXPECT_EQ(cpu_read(a, kLen), img) << "the process sees what the device wrote";
            // vb2 keeps USERPTR memory across DQBUF (why it is a long-term pin).
            EXPECT_EQ(balance(), r.pins ? static_cast<long>(kN) : 0);
            ASSERT_EQ(pl_vb2_reqbufs(q.q, 0), 0);  // put_userptr -> vb2_destroy_framevec
            EXPECT_EQ(balance(), 0);
            EXPECT_EQ(page_ref_count(pg(t, a)), ref0) << "put_vaddr_frames() released what it took";
        }
    }
}

TEST_F(Videobuf2, OutputDeviceReadsWhatTheCpuWrote) {
    for (const EraRow& r : kEras) {
        SCOPED_TRACE(r.why);
        boot_era(kBase, r.era);
        const unsigned long a = anon(kN) + 256;  // vmalloc and dma-sg take any offset
        Queue q(t, PL_VB2_DMA_SG, PL_VB2_OUTPUT, kLen - kPage);
        const std::string img = pattern("to-the-device;", kLen - kPage);
        cpu_write(a, img);
        ASSERT_EQ(pl_vb2_qbuf(q.q, 1, a, kLen - kPage), 0) << pl_last_error();
        EXPECT_EQ(frames(q.q, 1, nullptr).size(), kN) << "an offset buffer spans one page more";
        std::string got(kLen - kPage, '\0');
        ASSERT_EQ(pl_vb2_device_dma(q.q, got.data(), got.size()), static_cast<long>(got.size()));
        EXPECT_EQ(got, img);
        expect_dqbuf(q.q, 1, kLen - kPage);
    }
}

// ---- put_userptr: set_page_dirty_lock() for capture ----------------------------------------------

TEST_F(Videobuf2, PutUserptrDirtiesCaptureBuffersSoWritebackSavesTheImage) {
    // A shared ext4 buffer written back (cleaned) while queued: the device's
    // DMA does not dirty the page, put_userptr's set_page_dirty_lock() does
    // (capture: DMA_FROM_DEVICE), so the next fsync() writes the image. Output
    // buffers are not dirtied, except by v4.8's dma-contig (the
    // DMA_FROM_DEVICE test came with v4.16). Eras before v6.5 allow the
    // writable long-term pin of a shared ext4 mapping.
    struct Row {
        const char* era;
        int memops;
        int type;
        bool dirtied;
        const char* why;
    };
    const Row rows[] = {
        {"v4.8", PL_VB2_DMA_SG, PL_VB2_CAPTURE, true, "vb2_dma_sg_put_userptr(): DMA_FROM_DEVICE"},
        {"v5.8", PL_VB2_VMALLOC, PL_VB2_CAPTURE, true, "vb2_vmalloc_put_userptr(): !is_pfns, DMA_FROM_DEVICE"},
        {"v6.0", PL_VB2_DMA_CONTIG, PL_VB2_CAPTURE, true, "vb2_dc_put_userptr(): sgt, DMA_FROM_DEVICE"},
        {"v6.0", PL_VB2_DMA_SG, PL_VB2_OUTPUT, false, "output buffers are not dirtied"},
        {"v4.8", PL_VB2_DMA_CONTIG, PL_VB2_OUTPUT, true, "v4.8 vb2_dc_put_userptr(): dirtied every page"},
        {"v5.8", PL_VB2_DMA_CONTIG, PL_VB2_OUTPUT, false, "v4.16: only DMA_FROM_DEVICE/BIDIRECTIONAL"},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(std::string(r.era) + " " + r.why);
        boot_era(kBase, r.era);
        pl_file* f = file("ext4", kPage);
        const std::string old = pattern("on-disk ", kPage);
        ASSERT_EQ(pl_pwrite(f, old.data(), kPage, 0), static_cast<long>(kPage));
        const unsigned long a = map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
        Queue q(t, r.memops, r.type, kPage);
        ASSERT_EQ(pl_vb2_qbuf(q.q, 0, a, kPage), 0) << pl_last_error();
        ASSERT_EQ(pl_fsync(f), 0);
        ASSERT_FALSE(PageDirty(pg(t, a))) << "precondition: written back while queued";
        std::string img = pattern("captured ", kPage);
        if (r.type == PL_VB2_CAPTURE) {
            ASSERT_EQ(pl_vb2_device_dma(q.q, img.data(), kPage), static_cast<long>(kPage));
        } else {
            img = old;  // an output device leaves memory alone
            std::string sink(kPage, '\0');
            ASSERT_EQ(pl_vb2_device_dma(q.q, sink.data(), kPage), static_cast<long>(kPage));
        }
        EXPECT_FALSE(PageDirty(pg(t, a))) << "DMA itself does not dirty the page";
        expect_dqbuf(q.q, 0, kPage);
        ASSERT_EQ(pl_vb2_reqbufs(q.q, 0), 0);
        EXPECT_EQ(static_cast<bool>(PageDirty(pg(t, a))), r.dirtied);
        ASSERT_EQ(pl_fsync(f), 0);
        std::string disk(kPage, '\0');
        ASSERT_EQ(pl_file_read_disk(f, disk.data(), kPage, 0), static_cast<long>(kPage));
        if (r.type == PL_VB2_CAPTURE) {
            EXPECT_TRUE(disk == img) << "the captured image reached the disk; disk starts " << disk.substr(0, 16);
        }
        EXPECT_EQ(balance(), 0);
        ASSERT_EQ(pl_munmap(t, a, kPage), 0);
    }
}

// ---- VM_IO|VM_PFNMAP buffers from another device (seed 000) ---------------------------------------

TEST_F(Videobuf2, PfnmapDeviceBufferPerEra) {
    // "/dev/pfnmap": remap_pfn_range() of the device's RAM (dma_mmap_coherent()
    // memory, as the media maintainers' use case: a buffer from another
    // device's mmap). Its frames have struct pages, so every allocator turns
    // the PFNs into pages, but nobody holds a reference.
    allow_reports("warn");  // v6.4/v6.5's WARN, checked per row
    struct Row {
        const char* era;
        bool accepted;
        bool warns;
        const char* why;
    };
    const Row rows[] = {
        {"v4.8", true, false, "v4.2: VM_IO|VM_PFNMAP first VMA -> follow_pfn(), raw PFNs"},
        {"v5.8", true, false, "v5.8: the same beside pin_user_pages_locked()"},
        {"v5.16", true, false, "v5.12: pin_user_pages_fast() pins nothing (special PTEs) -> follow_pfn()"},
        {"v6.0", true, false, "v6.0: the same"},
        {"v6.4", false, true, "v6.1 6647e76ab623: no follow_pfn() fallback, WARN_ONCE"},
        {"v6.5", false, true, "v6.5: still the WARN_ONCE"},
        {"current", false, false, "v6.6 735de5caf79e: no WARN"},
    };
    for (const Row& r : rows) {
        for (int m : {PL_VB2_VMALLOC, PL_VB2_DMA_CONTIG, PL_VB2_DMA_SG}) {
            SCOPED_TRACE(std::string(r.why) + " / " + memops_name(m));
            boot_era(kBase, r.era);
            pl_file* d = device("pfnmap");
            const unsigned long a = map_device(d, kN);
            pl_file_put(d);  // the mapping keeps the device open
            const int ref0 = page_ref_count(pl_pfn_to_page(k, mapped_pfn(a)));
            {
                Queue q(t, m, PL_VB2_CAPTURE);
                const int ret = pl_vb2_qbuf(q.q, 0, a, kLen);
                if (r.accepted) {
                    ASSERT_EQ(ret, 0) << pl_last_error();
                    int got_ref = -1;
                    std::vector<unsigned long> pfns = frames(q.q, 0, &got_ref);
                    ASSERT_EQ(pfns.size(), kN);
                    EXPECT_EQ(got_ref, 0) << "raw PFNs: no reference, no pin";
                    for (unsigned i = 0; i < kN; i++) EXPECT_EQ(pfns[i], mapped_pfn(a + i * kPage));
                    EXPECT_EQ(page_ref_count(pl_pfn_to_page(k, pfns[0])), ref0);
                    const std::string img = pattern("pfn-dma ", kLen);
                    ASSERT_EQ(pl_vb2_device_dma(q.q, const_cast<char*>(img.data()), kLen), static_cast<long>(kLen));
                    expect_dqbuf(q.q, 0, kLen);
                    EXPECT_EQ(cpu_read(a, kLen), img) << "the DMA landed in the exporting device's buffer";
                } else {
                    // vb2_vmalloc/vb2_dc return get_vaddr_frames()'s -EFAULT;
                    // vb2_dma_sg_get_userptr() turns every failure into -ENOMEM.
                    EXPECT_EQ(ret, m == PL_VB2_DMA_SG ? -ENOMEM : -EFAULT);
                    EXPECT_EQ(pl_vb2_buffer_frames(q.q, 0, nullptr, 0, nullptr), -EINVAL) << "no memory behind it";
                }
                EXPECT_EQ(warned(), r.warns) << dmesg();
                EXPECT_EQ(balance(), 0);
            }
            EXPECT_EQ(page_ref_count(pl_pfn_to_page(k, mapped_pfn(a))), ref0) << "nothing taken, nothing put";
        }
    }
}

TEST_F(Videobuf2, WhichAllocatorsAcceptPfnsWithoutStructPages) {
    // "/dev/iomem": I/O memory (pfn_valid() fails), so frame_vector_to_pages()
    // fails and each allocator shows its own rule (PFN eras only).
    struct Row {
        int memops;
        bool reversed;  // pgoff 1 mapped below pgoff 0: PFNs not contiguous
        int ret;
        const char* why;
    };
    const Row rows[] = {
        {PL_VB2_VMALLOC, false, 0, "vb2_vmalloc_get_userptr(): contiguous PFNs -> ioremap()"},
        {PL_VB2_VMALLOC, true, -ENOMEM, "vb2_vmalloc_get_userptr(): not contiguous -> fail_map, -ENOMEM"},
        {PL_VB2_DMA_CONTIG, false, 0, "vb2_dc_get_userptr(): contiguous PFNs -> dma_map_resource()"},
        {PL_VB2_DMA_CONTIG, true, -EINVAL, "vb2_dc_get_userptr(): not contiguous -> frame_vector_to_pages()'s -EINVAL"},
        {PL_VB2_DMA_SG, false, -ENOMEM, "vb2_dma_sg_get_userptr(): frame_vector_pages() fails -> -ENOMEM"},
        {PL_VB2_DMA_SG, true, -ENOMEM, "vb2_dma_sg_get_userptr(): the same"},
    };
    for (const char* era : {"v5.8", "v6.0"}) {
        for (const Row& r : rows) {
            SCOPED_TRACE(std::string(era) + " " + r.why);
            boot_era(kBase, era);
            pl_file* d = device("iomem");
            unsigned long a = 0;
            if (r.reversed) {
                a = map_device(d, 2);
                ASSERT_EQ(map_device(d, 1, 1, a), a);
                ASSERT_EQ(map_device(d, 1, 0, a + kPage), a + kPage);
                ASSERT_EQ(mapped_pfn(a), mapped_pfn(a + kPage) + 1) << "precondition: reversed frames";
            } else {
                a = map_device(d, 2);
            }
            pl_file_put(d);
            ASSERT_EQ(pl_pfn_to_page(k, mapped_pfn(a)), nullptr) << "precondition: no struct page";
            Queue q(t, r.memops, PL_VB2_CAPTURE, 2 * kPage);
            ASSERT_EQ(pl_vb2_qbuf(q.q, 0, a, 2 * kPage), r.ret) << pl_last_error();
            if (r.ret == 0) {
                int got_ref = -1;
                EXPECT_EQ(frames(q.q, 0, &got_ref).size(), 2u);
                EXPECT_EQ(got_ref, 0);
                const std::string img = pattern("bar ", 2 * kPage);
                ASSERT_EQ(pl_vb2_device_dma(q.q, const_cast<char*>(img.data()), img.size()),
                          static_cast<long>(img.size()));
                expect_dqbuf(q.q, 0, img.size());
                EXPECT_EQ(cpu_read(a, img.size()), img) << "DMA into the aperture, read back through the mapping";
            }
            EXPECT_EQ(balance(), 0);
            ASSERT_EQ(pl_munmap(t, a, 2 * kPage), 0);
        }
    }
}

TEST_F(Videobuf2, DmaContigNeedsOneContiguousRangeUnlessBehindAnIommu) {
    // vb2_dc_get_userptr(): cache-aligned address and size, then
    // vb2_dc_get_contiguous_size() of the mapped table must cover the buffer
    // ("contiguous mapping is too small" -> -EFAULT). A hugetlb page is
    // physically contiguous; scattered anonymous pages are not, unless the
    // device's IOMMU maps them into one range.
    const unsigned long h = map(t, 2UL << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB);
    ASSERT_EQ(pl_memset(t, h, 1, kLen), static_cast<long>(kLen));
    const unsigned long a = map(2 * kPage);
    // Touch the upper page first, then move it: its frame is not the one
    // after the lower page's.
    ASSERT_EQ(pl_memset(t, a + kPage, 2, kPage), static_cast<long>(kPage));
    ASSERT_EQ(pl_memset(t, a, 2, kPage), static_cast<long>(kPage));
    if (mapped_pfn(a) + 1 == mapped_pfn(a + kPage)) {
        ASSERT_EQ(pl_migrate_page(t, a + kPage), 0);
    }
    ASSERT_NE(mapped_pfn(a) + 1, mapped_pfn(a + kPage)) << "precondition: scattered frames";
    {
        Queue q(t, PL_VB2_DMA_CONTIG, PL_VB2_CAPTURE, 2 * kPage);
        EXPECT_EQ(pl_vb2_qbuf(q.q, 0, h, kLen), 0) << "hugetlb: one contiguous range; " << pl_last_error();
        EXPECT_EQ(pl_vb2_qbuf(q.q, 1, a, 2 * kPage), -EFAULT);
        EXPECT_NE(std::string(pl_last_error()).find("contiguous mapping is too small 4096/8192"), std::string::npos)
            << pl_last_error();
        EXPECT_EQ(pl_vb2_buffer_frames(q.q, 1, nullptr, 0, nullptr), -EINVAL) << "the failed buffer holds nothing";
        EXPECT_EQ(balance(), static_cast<long>(kN)) << "only the hugetlb buffer's pins remain";
        EXPECT_EQ(pl_vb2_qbuf(q.q, 1, a + 64, 2 * kPage), -EINVAL) << "not 128-byte aligned";
        EXPECT_NE(std::string(pl_last_error()).find("aligned"), std::string::npos) << pl_last_error();
    }
    {
        Queue q(t, PL_VB2_DMA_CONTIG, PL_VB2_CAPTURE, 2 * kPage, PL_VB2_DEV_IOMMU);
        EXPECT_EQ(pl_vb2_qbuf(q.q, 1, a, 2 * kPage), 0) << pl_last_error();
        EXPECT_EQ(balance(), 2);
    }
    EXPECT_EQ(balance(), 0);
}

// ---- FOLL_LONGTERM: movable and CMA memory is migrated first -------------------------------------

TEST_F(Videobuf2, LongtermErasMigrateMovableAndCmaBuffersFirst) {
    // From v5.12 (seed 000) the vector is a FOLL_LONGTERM pin:
    // check_and_migrate_movable_pages() moves ZONE_MOVABLE and MIGRATE_CMA
    // folios out before pinning. The older GET/PIN forms pin them in place,
    // blocking memory hot-unplug and CMA allocations for as long as the
    // buffer stays queued.
    struct Row {
        const char* era;
        bool longterm;
    };
    const Row rows[] = {{"v4.8", false}, {"v5.8", false}, {"v5.16", true}, {"v6.0", true}, {"v6.4", true},
                        {"current", true}};
    for (const char* base : {"ram=512M movable=128M hugetlb_2m=0", "ram=512M cma=384M hugetlb_2m=0"}) {
        const bool cma = std::strstr(base, "cma") != nullptr;
        for (const Row& r : rows) {
            SCOPED_TRACE(std::string(base) + " era=" + r.era);
            boot_era(base, r.era);
            const unsigned long a = anon(kN);
            auto unpinnable = [&](unsigned long pfn) {
                return cma ? kern().mem->pageblock_migratetype(pfn) == MigrateType::Cma
                           : page_folio(reinterpret_cast<Page*>(pl_pfn_to_page(k, pfn)))->zone() == ZoneId::Movable;
            };
            std::vector<unsigned long> before;
            for (unsigned i = 0; i < kN; i++) before.push_back(mapped_pfn(a + i * kPage));
            for (unsigned long pfn : before) ASSERT_TRUE(unpinnable(pfn)) << "precondition: born movable/CMA";
            Queue q(t, PL_VB2_DMA_SG, PL_VB2_CAPTURE);
            ASSERT_EQ(pl_vb2_qbuf(q.q, 0, a, kLen), 0) << pl_last_error();
            std::vector<unsigned long> pfns = frames(q.q, 0, nullptr);
            ASSERT_EQ(pfns.size(), kN);
            for (unsigned i = 0; i < kN; i++) {
                EXPECT_EQ(pfns[i], mapped_pfn(a + i * kPage)) << "the process maps what the device will write";
                EXPECT_EQ(pfns[i] != before[i], r.longterm) << "migrated? frame " << i;
                EXPECT_EQ(unpinnable(pfns[i]), !r.longterm) << "frame " << i;
            }
            EXPECT_EQ(cpu_read(a, 8), std::string(8, '\x5a')) << "migration kept the contents";
        }
    }
}

TEST_F(Videobuf2, MixedmapDeviceBufferIsPinnedLikeNormalMemory) {
    // "/dev/mixedmap": vm_insert_page() of the device's pages into a
    // VM_MIXEDMAP VMA. The PTEs are normal, so get_vaddr_frames() takes
    // references (pins from v5.8) in every era: the device buffer cannot be
    // freed under the queued vb2 buffer.
    for (const EraRow& r : kEras) {
        SCOPED_TRACE(r.why);
        boot_era(kBase, r.era);
        pl_file* d = device("mixedmap");
        const unsigned long a = map_device(d, kN);
        pl_file_put(d);
        Queue q(t, PL_VB2_DMA_CONTIG, PL_VB2_CAPTURE);  // one physically contiguous device buffer
        ASSERT_EQ(pl_vb2_qbuf(q.q, 0, a, kLen), 0) << pl_last_error();
        int got_ref = -1;
        const std::vector<unsigned long> pfns = frames(q.q, 0, &got_ref);
        EXPECT_EQ(got_ref, 1);
        EXPECT_EQ(balance(), r.pins ? static_cast<long>(kN) : 0);
        ASSERT_EQ(pl_munmap(t, a, kLen), 0);  // closes the device: the references keep its buffer
        EXPECT_NE(pl_pfn_to_page(k, pfns[0]), nullptr);
        EXPECT_GT(page_ref_count(pl_pfn_to_page(k, pfns[0])), 0) << "not freed while the vector holds it";
        const std::string img = pattern("mixed ", kLen);
        ASSERT_EQ(pl_vb2_device_dma(q.q, const_cast<char*>(img.data()), kLen), static_cast<long>(kLen));
        expect_dqbuf(q.q, 0, kLen);
        ASSERT_EQ(pl_vb2_reqbufs(q.q, 0), 0);
        EXPECT_EQ(balance(), 0);
    }
}

TEST_F(Videobuf2, OnlyACompleteSetOfFramesIsAccepted) {
    // vb2_create_framevec(): "We accept only complete set of PFNs" — a
    // buffer whose first page is anonymous and second is a VM_PFNMAP device
    // page gets one frame from every era's get_vaddr_frames() (GUP stops at
    // the PFNMAP VMA; the old code decides by the first VMA), so QBUF fails
    // with -EFAULT and the partial reference is dropped again.
    for (const EraRow& r : kEras) {
        SCOPED_TRACE(r.why);
        boot_era(kBase, r.era);
        const unsigned long a = anon(2);
        pl_file* d = device("pfnmap");
        ASSERT_EQ(map_device(d, 1, 0, a + kPage), a + kPage);
        pl_file_put(d);
        const int ref0 = page_ref_count(pg(t, a));
        const unsigned long acquired = pl_vmstat(k, "nr_foll_pin_acquired");
        Queue q(t, PL_VB2_VMALLOC, PL_VB2_CAPTURE, 2 * kPage);
        EXPECT_EQ(pl_vb2_qbuf(q.q, 0, a, 2 * kPage), -EFAULT);
        EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired") - acquired, r.pins ? 1u : 0u) << "one frame was taken";
        EXPECT_EQ(balance(), 0) << "and released (out_release: put_vaddr_frames())";
        EXPECT_EQ(page_ref_count(pg(t, a)), ref0);
    }
}

// ---- seed 000's hazard: raw PFNs outlive the exporting device --------------------------------------

TEST_F(Videobuf2, PfnEraDmaLandsInTheNewOwnerOfAFreedDeviceBuffer) {
    // The vector of a VM_IO|VM_PFNMAP buffer holds PFNs and no reference.
    // Close the exporting device while the vb2 buffer is queued: its buffer
    // is freed and the allocator hands the frames to someone else; the
    // capture DMA then writes into the new owner's memory. Upstream nothing
    // notices; the model does not report it either (it could: a DMA through
    // a raw PFN whose frame changed owner since QBUF — see FIDELITY.md).
    for (const char* era : {"v4.8", "v5.10", "v6.0"}) {
        for (int m : {PL_VB2_VMALLOC, PL_VB2_DMA_CONTIG, PL_VB2_DMA_SG}) {
            SCOPED_TRACE(std::string(era) + " / " + memops_name(m));
            boot_era(kBase, era);
            pl_file* exporter = device("pfnmap");
            const unsigned long a = map_device(exporter, kN);
            pl_file_put(exporter);
            Queue q(t, m, PL_VB2_CAPTURE);
            ASSERT_EQ(pl_vb2_qbuf(q.q, 0, a, kLen), 0) << pl_last_error();
            const std::vector<unsigned long> pfns = frames(q.q, 0, nullptr);
            ASSERT_EQ(pfns.size(), kN);
            // Closing the device: the last reference to its file goes with
            // the mapping, and DevBuffer::release() frees the frames.
            ASSERT_EQ(pl_munmap(t, a, kLen), 0);
            // Another device allocates; the buddy allocator reuses the block.
            std::vector<pl_file*> others;
            unsigned long owner = 0;
            for (int tries = 0; tries < 8 && !owner; tries++) {
                pl_file* o = device("mixedmap");
                others.push_back(o);
                const unsigned long b = map_device(o, 1UL << 8);
                for (unsigned long off = 0; off < (1UL << 8) && !owner; off++)
                    if (mapped_pfn(b + off * kPage) == pfns[0]) owner = b + off * kPage;
                if (!owner) {
                    ASSERT_EQ(pl_munmap(t, b, (1UL << 8) * kPage), 0);
                }
            }
            ASSERT_NE(owner, 0u) << "precondition: the freed frames were reused";
            cpu_write(owner, pattern("new owner's data ", kPage));
            const std::string img = pattern("STALE-DMA ", kLen);
            ASSERT_EQ(pl_vb2_device_dma(q.q, const_cast<char*>(img.data()), kLen), static_cast<long>(kLen));
            expect_dqbuf(q.q, 0, kLen);
            EXPECT_EQ(cpu_read(owner, kPage), img.substr(0, kPage))
                << "the device overwrote a page the vb2 buffer no longer owns";
            ASSERT_EQ(pl_vb2_reqbufs(q.q, 0), 0);
            EXPECT_EQ(balance(), 0) << "nothing was pinned to begin with";
            for (pl_file* o : others) pl_file_put(o);
        }
    }
}

TEST_F(Videobuf2, PinnedAnonBufferSurvivesMunmapWhileQueued) {
    // The contrast: a pinned page outlives its mapping, so the device writes
    // into memory nobody else can be given; put_userptr frees it.
    const unsigned long a = anon(kN);
    Queue q(t, PL_VB2_VMALLOC, PL_VB2_CAPTURE);
    ASSERT_EQ(pl_vb2_qbuf(q.q, 0, a, kLen), 0) << pl_last_error();
    const unsigned long frees = pl_nr_free_pages(k);
    ASSERT_EQ(pl_munmap(t, a, kLen), 0);
    EXPECT_EQ(pl_nr_free_pages(k), frees) << "the pins keep the frames";
    EXPECT_EQ(balance(), static_cast<long>(kN));
    const std::string img = pattern("late ", kLen);
    ASSERT_EQ(pl_vb2_device_dma(q.q, const_cast<char*>(img.data()), kLen), static_cast<long>(kLen));
    expect_dqbuf(q.q, 0, kLen);
    ASSERT_EQ(pl_vb2_reqbufs(q.q, 0), 0);
    EXPECT_EQ(balance(), 0);
    EXPECT_EQ(pl_nr_free_pages(k), frees + kN) << "the last unpin freed them";
}

// ---- the queue: QBUF/DQBUF rules, reuse, exit, bad input --------------------------------------------

TEST_F(Videobuf2, QbufReusesTheSameUserptrAndReplacesAnother) {
    const unsigned long a = anon(kN), b = anon(kN);
    Queue q(t, PL_VB2_DMA_SG, PL_VB2_CAPTURE);
    const unsigned long acquired = pl_vmstat(k, "nr_foll_pin_acquired");
    ASSERT_EQ(pl_vb2_qbuf(q.q, 0, a, kLen), 0);
    EXPECT_EQ(pl_vb2_qbuf(q.q, 0, a, kLen), -EINVAL) << "vb2_core_qbuf(): buffer already in use";
    std::string img = pattern("1", kLen);
    ASSERT_EQ(pl_vb2_device_dma(q.q, img.data(), kLen), static_cast<long>(kLen));
    expect_dqbuf(q.q, 0, kLen);
    // __prepare_userptr(): same pointer and length -> nothing re-acquired.
    ASSERT_EQ(pl_vb2_qbuf(q.q, 0, a, kLen), 0);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), acquired + kN);
    ASSERT_EQ(pl_vb2_device_dma(q.q, img.data(), kLen), static_cast<long>(kLen));
    expect_dqbuf(q.q, 0, kLen);
    // Another pointer: put_userptr of the old memory, get_userptr of the new.
    ASSERT_EQ(pl_vb2_qbuf(q.q, 0, b, kLen), 0);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), acquired + 2 * kN);
    EXPECT_EQ(balance(), static_cast<long>(kN));
    EXPECT_EQ(frames(q.q, 0, nullptr)[0], mapped_pfn(b));
    EXPECT_EQ(pl_vb2_reqbufs(q.q, 4), -EBUSY) << "vb2_core_reqbufs(): streaming";
    ASSERT_EQ(pl_vb2_device_dma(q.q, img.data(), kLen), static_cast<long>(kLen));
    EXPECT_EQ(pl_vb2_device_dma(q.q, img.data(), kLen), -EAGAIN) << "nothing queued";
    expect_dqbuf(q.q, 0, kLen);
    EXPECT_EQ(pl_vb2_dqbuf(q.q, nullptr), -EAGAIN) << "nothing done (O_NONBLOCK)";
    // A failed get_userptr leaves the buffer without memory (err: path).
    EXPECT_EQ(pl_vb2_qbuf(q.q, 0, 0x1000, kLen), -ENOMEM) << "dma-sg: unmapped range";
    EXPECT_EQ(pl_vb2_buffer_frames(q.q, 0, nullptr, 0, nullptr), -EINVAL);
    EXPECT_EQ(balance(), 0);
}

TEST_F(Videobuf2, BufferQueueOrderAndLength) {
    const unsigned long a = anon(2 * kN);
    Queue q(t, PL_VB2_VMALLOC, PL_VB2_CAPTURE);
    EXPECT_EQ(pl_vb2_qbuf(q.q, 0, a, kLen - 1), -EINVAL) << "__prepare_userptr(): smaller than the plane";
    EXPECT_EQ(pl_vb2_qbuf(q.q, 2, a, kLen), -EINVAL) << "index past the buffers";
    ASSERT_EQ(pl_vb2_qbuf(q.q, 1, a + kLen, kLen), 0);
    ASSERT_EQ(pl_vb2_qbuf(q.q, 0, a, kLen), 0);
    std::string first = pattern("first ", 100), second = pattern("second ", 200);
    ASSERT_EQ(pl_vb2_device_dma(q.q, first.data(), first.size()), 100);
    ASSERT_EQ(pl_vb2_device_dma(q.q, second.data(), second.size()), 200);
    expect_dqbuf(q.q, 1, 100);  // completed in QBUF order
    expect_dqbuf(q.q, 0, 200);
    EXPECT_EQ(cpu_read(a + kLen, 100), first);
    EXPECT_EQ(cpu_read(a, 200), second);
    EXPECT_EQ(pl_vb2_reqbufs(q.q, 100), 32) << "VB2_MAX_FRAME";
    EXPECT_EQ(balance(), 0) << "REQBUFS released both buffers";
}

TEST_F(Videobuf2, ExitClosesTheQueueAndReleasesItsPins) {
    task_struct* child = pl_task_new(k);
    ASSERT_NE(child, nullptr);
    const unsigned long a = map(child, kLen);
    ASSERT_EQ(pl_memset(child, a, 7, kLen), static_cast<long>(kLen));
    pl_vb2_queue* q = pl_vb2_queue_new(child, PL_VB2_DMA_SG, PL_VB2_CAPTURE, kLen, 0);
    ASSERT_NE(q, nullptr);
    ASSERT_EQ(pl_vb2_reqbufs(q, 1), 1);
    ASSERT_EQ(pl_vb2_qbuf(q, 0, a, kLen), 0) << pl_last_error();
    EXPECT_EQ(balance(), static_cast<long>(kN));
    pl_exit(child);  // exit_files(): the video device closes, vb2_queue_release()
    EXPECT_EQ(balance(), 0);
    EXPECT_EQ(pl_vb2_qbuf(q, 0, a, kLen), -ESRCH);
    EXPECT_EQ(pl_vb2_reqbufs(q, 1), -ESRCH);
    pl_vb2_queue_free(q);
}

TEST_F(Videobuf2, BadHandlesAndArgumentsAreRefused) {
    EXPECT_EQ(pl_vb2_queue_new(nullptr, PL_VB2_VMALLOC, PL_VB2_CAPTURE, kLen, 0), nullptr);
    EXPECT_NE(std::string(pl_last_error()).find("'t'"), std::string::npos);
    EXPECT_EQ(pl_vb2_queue_new(t, 7, PL_VB2_CAPTURE, kLen, 0), nullptr);
    EXPECT_EQ(pl_vb2_queue_new(t, PL_VB2_VMALLOC, 9, kLen, 0), nullptr);
    EXPECT_EQ(pl_vb2_queue_new(t, PL_VB2_VMALLOC, PL_VB2_OUTPUT, 0, 0), nullptr);
    EXPECT_EQ(pl_vb2_queue_new(t, PL_VB2_VMALLOC, PL_VB2_OUTPUT, kLen, 0x80), nullptr);
    int not_a_queue = 0;
    auto* bogus = reinterpret_cast<pl_vb2_queue*>(&not_a_queue);
    EXPECT_EQ(pl_vb2_reqbufs(bogus, 1), -EINVAL);
    EXPECT_EQ(pl_vb2_qbuf(nullptr, 0, 0, 0), -EINVAL);
    EXPECT_EQ(pl_vb2_dqbuf(bogus, nullptr), -EINVAL);
    EXPECT_EQ(pl_vb2_device_dma(bogus, nullptr, 0), -EINVAL);
    EXPECT_EQ(pl_vb2_buffer_frames(bogus, 0, nullptr, 0, nullptr), -EINVAL);
    pl_vb2_queue_free(bogus);  // ignored
    EXPECT_NE(std::string(pl_last_error()).find("'q'"), std::string::npos);
    Queue q(t, PL_VB2_VMALLOC, PL_VB2_CAPTURE);
    EXPECT_EQ(pl_vb2_device_dma(q.q, nullptr, 5), -EINVAL);
    EXPECT_EQ(pl_vb2_qbuf(q.q, 0, ~0UL - kPage, kLen), -EFAULT) << "wrapping range";
}

}  // namespace
}  // namespace pl::test
