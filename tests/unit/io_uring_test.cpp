// io_uring fixed buffers (src/drivers/io_uring_rsrc.cpp): registration across
// backings in the three ways the kernel has pinned them (today's io_pin_pages(),
// the 2023 rsrc.c vmas[] walk, seed 002's FOLL_SAME_FILE), huge-page
// coalescing, fixed reads and writes as DMA, fork with a registered buffer.
#include <sys/uio.h>

#include <string>

#include "test_kernel.h"

namespace pl::test {
namespace {

constexpr unsigned long kHuge = 2UL << 20;

// The ring goes before the fixture's teardown exits its task, as the ring
// file is released when the task's files are closed.
struct Ring {
    pl_io_uring* r = nullptr;
    explicit Ring(task_struct* t) : r(pl_io_uring_setup(t, 8)) {}
    ~Ring() {
        if (r) pl_io_uring_exit(r);
    }
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;
    int reg(unsigned long addr, unsigned long len) {
        iovec iov{reinterpret_cast<void*>(addr), len};
        return pl_io_uring_register_buffers(r, &iov, 1);
    }
};

enum class Backing { Anon, Thp, HugetlbAnon, Memfd, MemfdHugetlb, TmpfsShared, Ext4Shared, Ext4Private, Pfnmap,
                     TwoTmpfsFiles, AnonThenTmpfs };

const char* name(Backing b) {
    switch (b) {
        case Backing::Anon: return "anon";
        case Backing::Thp: return "thp";
        case Backing::HugetlbAnon: return "hugetlb";
        case Backing::Memfd: return "memfd";
        case Backing::MemfdHugetlb: return "memfd-hugetlb";
        case Backing::TmpfsShared: return "tmpfs-shared";
        case Backing::Ext4Shared: return "ext4-shared";
        case Backing::Ext4Private: return "ext4-private";
        case Backing::Pfnmap: return "pfnmap";
        case Backing::TwoTmpfsFiles: return "two-tmpfs-files";
        case Backing::AnonThenTmpfs: return "anon-then-tmpfs";
    }
    return "?";
}

class IoUring : public KernelTest {
protected:
    // A buffer of `len` bytes (2 MiB aligned for the huge backings), written
    // to once so every page is present; 0 on failure.
    unsigned long make(Backing b, unsigned long len) {
        const int rw = PROT_READ | PROT_WRITE;
        unsigned long a = 0;
        switch (b) {
            case Backing::Anon: a = map(t, len); break;
            case Backing::Thp: {
                unsigned long raw = map(t, len + kHuge);
                a = (raw + kHuge - 1) & ~(kHuge - 1);
                EXPECT_EQ(pl_madvise(t, a, len, MADV_HUGEPAGE), 0);
                break;
            }
            case Backing::HugetlbAnon: a = map(t, len, rw, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB); break;
            case Backing::Memfd: a = map(t, len, rw, MAP_SHARED, file("memfd", len)); break;
            case Backing::MemfdHugetlb: a = map(t, len, rw, MAP_SHARED, file("memfd-hugetlb", len)); break;
            case Backing::TmpfsShared: a = map(t, len, rw, MAP_SHARED, file("tmpfs", len)); break;
            case Backing::Ext4Shared: a = map(t, len, rw, MAP_SHARED, file("ext4", len)); break;
            case Backing::Ext4Private: a = map(t, len, rw, MAP_PRIVATE, file("ext4", len)); break;
            case Backing::Pfnmap: {
                pl_file* d = pl_dev_open(k, "pfnmap");
                EXPECT_NE(d, nullptr);
                files.push_back(d);
                a = map(t, len, rw, MAP_SHARED, d);
                break;
            }
            case Backing::TwoTmpfsFiles:
            case Backing::AnonThenTmpfs: {
                a = b == Backing::TwoTmpfsFiles ? map(t, len, rw, MAP_SHARED, file("tmpfs", len)) : map(t, len);
                // The second half from another file, at the same addresses.
                map(t, len / 2, rw, MAP_SHARED | MAP_FIXED, file("tmpfs", len), 0, a + len / 2);
                break;
            }
        }
        if (a && pl_memset(t, a, 0x5a, len) != static_cast<long>(len)) ADD_FAILURE() << name(b) << ": memset";
        return a;
    }
};

// One row: the backing and the errno upstream gives in each variant.
struct Row {
    Backing backing;
    int today;     // io_uring/memmap.c io_pin_pages(): pin_user_pages_fast(); GUP's check_vma_flags()
    int rsrc2023;  // v6.3/v6.4 io_uring/rsrc.c io_pin_pages(): vmas[] walk
    int same_file; // seed 002 "io_uring: rsrc: use FOLL_SAME_FILE on pin_user_pages()"
    const char* why;
};

const Row kRows[] = {
    {Backing::Anon, 0, 0, 0, "anonymous memory is what fixed buffers are for"},
    {Backing::Thp, 0, 0, 0, "anonymous THP"},
    {Backing::HugetlbAnon, 0, 0, 0, "hugetlb: is_file_hugepages() is allowed by the VMA checks"},
    {Backing::Memfd, 0, 0, 0, "shmem: vma_is_shmem() allowed; no dirty tracking (writable_file_mapping_allowed)"},
    {Backing::MemfdHugetlb, 0, 0, 0, "memfd hugetlb"},
    {Backing::TmpfsShared, 0, 0, 0, "tmpfs is shmem"},
    // Shared ext4 in the 2023 variant: see Rsrc2023SharedExt4 below.
    {Backing::Ext4Private, 0, -EOPNOTSUPP, -EOPNOTSUPP,
     "private file mapping: today the write pin COWs to anon; 2023's walk refuses any non-shmem vm_file"},
    {Backing::Pfnmap, -EFAULT, -EFAULT, -EFAULT, "check_vma_flags(): VM_IO|VM_PFNMAP"},
    {Backing::TwoTmpfsFiles, 0, -EINVAL, -EFAULT,
     "two files: 2023 'disallow multi-source reg buffers' -EINVAL; FOLL_SAME_FILE stops the pin halfway"},
    {Backing::AnonThenTmpfs, 0, -EINVAL, -EFAULT, "NULL vm_file then a file counts as two sources"},
};

const char* const kConfigs[] = {
    "ram=512M hugetlb_2m=8 hugetlb_1g=0",
    "era=v6.4 ram=512M hugetlb_2m=8 hugetlb_1g=0",
    "gup.foll_same_file=on ram=512M hugetlb_2m=8 hugetlb_1g=0",
};

TEST_F(IoUring, RegistrationAcrossBackingsInEachVariant) {
    for (int v = 0; v < 3; v++) {
        reboot(kConfigs[v]);
        for (const Row& row : kRows) {
            const int want = v == 0 ? row.today : v == 1 ? row.rsrc2023 : row.same_file;
            // The pfnmap device has 1 MiB to map.
            const unsigned long len = row.backing == Backing::Pfnmap ? kHuge / 4 : 2 * kHuge;
            unsigned long a = make(row.backing, len);
            ASSERT_NE(a, 0u) << name(row.backing);
            const unsigned long acquired = pl_vmstat(k, "nr_foll_pin_acquired");
            const unsigned long released = pl_vmstat(k, "nr_foll_pin_released");
            Ring ring(t);
            ASSERT_NE(ring.r, nullptr);
            // What the ring itself holds (io_create_region(); none in v6.4).
            const unsigned long ring_pages = pl_task_locked_vm(t, 1);
            EXPECT_EQ(ring.reg(a, len), want) << kConfigs[v] << " " << name(row.backing) << ": " << row.why;
            EXPECT_EQ(pl_io_uring_unregister_buffers(ring.r), want ? -ENXIO : 0);
            EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired") - acquired, pl_vmstat(k, "nr_foll_pin_released") - released)
                << kConfigs[v] << " " << name(row.backing) << ": every pin taken is released";
            EXPECT_EQ(pl_task_locked_vm(t, 1), ring_pages) << "the buffer's charge is returned";
            EXPECT_EQ(pl_munmap(t, a, len), 0);
        }
    }
}

// Today: GUP itself refuses a long-term writable pin of a dirty-tracked shared
// file mapping (writable_file_mapping_allowed(), v6.5); FOLL_SAME_FILE on a
// current GUP gets the same refusal before its VMA check runs.
TEST_F(IoUring, SharedExt4IsRefusedByGupToday) {
    for (int v : {0, 2}) {
        reboot(kConfigs[v]);
        unsigned long a = make(Backing::Ext4Shared, 4 * kPage);
        Ring ring(t);
        EXPECT_EQ(ring.reg(a, 4 * kPage), -EFAULT) << kConfigs[v];
    }
}

// The 2023 rsrc.c walk (v6.3/v6.4): GUP did not refuse shared file mappings
// yet (writable_file_mapping_allowed() is v6.5), so the io_uring check
// answered -EOPNOTSUPP.
TEST_F(IoUring, Rsrc2023SharedExt4IsEopnotsupp) {
    reboot(kConfigs[1]);
    unsigned long a = make(Backing::Ext4Shared, 4 * kPage);
    Ring ring(t);
    EXPECT_EQ(ring.reg(a, 4 * kPage), -EOPNOTSUPP);
}

// io_sqe_buffers_register() / io_buffer_validate() / io_pin_pages() errors.
TEST_F(IoUring, RegistrationErrors) {
    unsigned long a = map(t, 4 * kPage);
    Ring ring(t);
    ASSERT_NE(ring.r, nullptr);
    EXPECT_EQ(pl_io_uring_setup(t, 0), nullptr) << "entries 0: -EINVAL";
    EXPECT_EQ(pl_io_uring_setup(t, 32769), nullptr) << "entries > IORING_MAX_ENTRIES";
    iovec iov{reinterpret_cast<void*>(a), 4 * kPage};
    EXPECT_EQ(pl_io_uring_register_buffers(ring.r, &iov, 0), -EINVAL) << "nr_args 0";
    EXPECT_EQ(pl_io_uring_register_buffers(ring.r, &iov, 16385), -EINVAL) << "> IORING_MAX_REG_BUFFERS";
    EXPECT_EQ(pl_io_uring_unregister_buffers(ring.r), -ENXIO) << "nothing registered";
    EXPECT_EQ(ring.reg(a, 0), -EFAULT) << "a base with no length";
    EXPECT_EQ(ring.reg(a, (1UL << 30) + 1), -EFAULT) << "more than SZ_1G";
    EXPECT_EQ(ring.reg(~0UL - kPage, 2 * kPage), -EOVERFLOW) << "base + len overflows";
    EXPECT_EQ(ring.reg(a, 5 * kPage), -EFAULT) << "partial pin: the fifth page is unmapped, all or nothing";
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
    EXPECT_EQ(ring.reg(a, 4 * kPage), 0);
    EXPECT_EQ(ring.reg(a, 4 * kPage), -EBUSY) << "already registered";
    // A sparse slot (NULL, 0) next to a real buffer; a failure later in the
    // array unregisters what was registered before it.
    EXPECT_EQ(pl_io_uring_unregister_buffers(ring.r), 0);
    iovec two[2] = {{nullptr, 0}, {reinterpret_cast<void*>(a), 4 * kPage}};
    EXPECT_EQ(pl_io_uring_register_buffers(ring.r, two, 2), 0);
    EXPECT_EQ(pl_io_uring_buffer_segments(ring.r, 0, nullptr), -EINVAL) << "sparse";
    EXPECT_EQ(pl_io_uring_buffer_segments(ring.r, 1, nullptr), 4);
    EXPECT_EQ(pl_io_uring_unregister_buffers(ring.r), 0);
    iovec bad[2] = {{reinterpret_cast<void*>(a), 4 * kPage}, {reinterpret_cast<void*>(a), 8 * kPage}};
    EXPECT_EQ(pl_io_uring_register_buffers(ring.r, bad, 2), -EFAULT);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"))
        << "the first buffer was unpinned when the second failed";
    EXPECT_EQ(pl_io_uring_unregister_buffers(ring.r), -ENXIO);
    EXPECT_EQ(pl_io_uring_register_buffers(nullptr, &iov, 1), -EINVAL);
}

// io_account_mem(): pinned pages count against RLIMIT_MEMLOCK (the user's
// locked_vm), on top of the ring's own pages (io_create_region()); a large
// folio is charged once, whole. CAP_IPC_LOCK counts when the ring is created
// (io_uring_create() leaves ctx->user NULL): __io_account_mem() itself checks
// no capability, and mm->pinned_vm is charged either way.
TEST_F(IoUring, MemlockAccounting) {
    unsigned long a = map(t, 16 * kPage);
    ASSERT_EQ(pl_memset(t, a, 1, 16 * kPage), static_cast<long>(16 * kPage));
    ASSERT_EQ(pl_task_set_rlimit_memlock(t, 8 * kPage), 0);
    Ring ring(t);
    ASSERT_NE(ring.r, nullptr);
    EXPECT_EQ(pl_task_locked_vm(t, 1), 2u) << "8 entries: one page of rings, one of SQEs";
    EXPECT_EQ(ring.reg(a, 16 * kPage), -ENOMEM);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
    EXPECT_EQ(ring.reg(a, 7 * kPage), -ENOMEM) << "2 + 7 > 8: the ring's pages share the limit";
    EXPECT_EQ(pl_task_locked_vm(t, 1), 2u) << "a refused registration charges nothing";
    EXPECT_EQ(ring.reg(a, 6 * kPage), 0);
    EXPECT_EQ(pl_task_locked_vm(t, 1), 8u);
    EXPECT_EQ(pl_task_pinned_vm(t), 6u);
    EXPECT_EQ(pl_io_uring_unregister_buffers(ring.r), 0);
    EXPECT_EQ(pl_task_locked_vm(t, 1), 2u);
    EXPECT_EQ(pl_task_pinned_vm(t), 0u);
    ASSERT_EQ(pl_task_set_cap_ipc_lock(t, 1), 0);
    EXPECT_EQ(ring.reg(a, 16 * kPage), -ENOMEM) << "a ring made without CAP_IPC_LOCK stays limited";
    {
        Ring capable(t);
        ASSERT_NE(capable.r, nullptr);
        EXPECT_EQ(pl_task_locked_vm(t, 1), 2u) << "made with CAP_IPC_LOCK: its rings are not charged";
        EXPECT_EQ(capable.reg(a, 16 * kPage), 0) << "CAP_IPC_LOCK: no limit";
        EXPECT_EQ(pl_task_locked_vm(t, 1), 2u);
        EXPECT_EQ(pl_task_pinned_vm(t), 16u) << "mm->pinned_vm is charged without ctx->user too";
        EXPECT_EQ(pl_io_uring_unregister_buffers(capable.r), 0);

        // One page of a hugetlb folio charges the whole 2 MiB.
        unsigned long h = map(t, kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB);
        ASSERT_EQ(pl_memset(t, h, 1, kPage), static_cast<long>(kPage));
        EXPECT_EQ(capable.reg(h, kPage), 0);
        EXPECT_EQ(pl_task_pinned_vm(t), kHuge / kPage);
        EXPECT_EQ(pl_io_uring_unregister_buffers(capable.r), 0);
        EXPECT_EQ(pl_task_pinned_vm(t), 0u);
    }
    EXPECT_EQ(pl_task_locked_vm(t, 1), 2u) << "closing the capable ring returned nothing it had not taken";
    ASSERT_EQ(pl_task_set_cap_ipc_lock(t, 0), 0);
    ASSERT_EQ(pl_task_set_rlimit_memlock(t, 8UL << 20), 0);
    unsigned long h = map(t, kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB);
    ASSERT_EQ(pl_memset(t, h, 1, kPage), static_cast<long>(kPage));
    EXPECT_EQ(ring.reg(h, kPage), 0);
    EXPECT_EQ(pl_task_locked_vm(t, 1), 2 + kHuge / kPage) << "the hugetlb folio charged whole";
    EXPECT_EQ(pl_io_uring_unregister_buffers(ring.r), 0);
}

// The ring's own memory against RLIMIT_MEMLOCK, per era. Each row: the
// pages io_uring_create() charges to user->locked_vm for `entries` (the SQ
// rounded up to a power of two, the CQ twice that), and what it adds to
// mm->locked_vm.
//  - current (v6.14+): io_allocate_scq_urings() makes two regions,
//    PAGE_ALIGN(rings_size()) and PAGE_ALIGN(sq_entries * 64), and
//    io_create_region() charges each; rings_size() is struct io_rings (64
//    bytes) + 16-byte CQEs, cache-line aligned, + a u32 per SQ entry.
//  - v5.12 (memcg, "place ring SQ/CQ arrays under memcg memory limits") to
//    v6.13: nothing.
//  - v5.4-v5.11: ring_pages(), 1 << get_order() of rings_size() (a
//    320-byte struct io_rings then) plus that of the SQE array; from v5.9
//    ("report pinned memory usage") the same pages also go to mm->locked_vm
//    (io_account_mem(..., ACCT_LOCKED)).
//  - v5.1-v5.3: ring_pages() of the separate SQ ring (192 + 4 per entry),
//    SQE array and CQ ring (192 + 16 per CQE), summed, then rounded to pages.
TEST_F(IoUring, RingMemoryChargedPerEra) {
    struct EraRow {
        const char* config;
        unsigned entries;
        unsigned long user_pages;
        unsigned long mm_locked;
        const char* why;
    };
    const EraRow rows[] = {
        {"", 1, 2, 0, "rings 132 B and SQEs 64 B: a page each"},
        {"", 4, 2, 0, "rings 208 B, SQEs 256 B"},
        {"", 5, 2, 0, "5 entries are 8: rings 352 B, SQEs 512 B"},
        {"", 128, 4, 0, "rings 64 + 4096 + 512 B: 2 pages; SQEs 8 KiB: 2"},
        {"", 256, 7, 0, "rings 9280 B: 3 pages; SQEs 16 KiB: 4"},
        {"", 32768, 801, 0, "rings 1179712 B: 289 pages; SQEs 2 MiB: 512"},
        {"era=v6.5", 256, 0, 0, "v5.12-v6.13: memcg accounting, no RLIMIT_MEMLOCK"},
        {"era=v5.16", 4, 0, 0, "v5.12-v6.13: memcg accounting"},
        {"era=v5.11", 4, 2, 2, "order 0 each; mm->locked_vm too (v5.9+)"},
        {"era=v5.10", 256, 8, 8, "rings 9536 B: 3 pages, order 2 = 4; SQEs 4"},
        {"era=v5.8", 256, 8, 0, "ring_pages() as v5.10, no mm->locked_vm before v5.9"},
        {"era=v5.5", 128, 4, 0, "rings 4928 B: order 1; SQEs order 1"},
        {"era=v5.3", 4, 1, 0, "192 + 16 + 256 + 192 + 128 = 784 B: one page for all"},
        {"era=v5.3", 256, 7, 0, "384 + 100 * 256 = 25984 B: 7 pages"},
    };
    for (const EraRow& row : rows) {
        SCOPED_TRACE(std::string(row.config) + " entries " + std::to_string(row.entries) + ": " + row.why);
        reboot((std::string(row.config) + " ram=512M hugetlb_2m=0 hugetlb_1g=0").c_str());
        pl_io_uring* r = pl_io_uring_setup(t, row.entries);
        ASSERT_NE(r, nullptr) << pl_last_error();
        EXPECT_EQ(pl_task_locked_vm(t, 1), row.user_pages);
        EXPECT_EQ(pl_task_locked_vm(t, 0), row.mm_locked);
        EXPECT_EQ(pl_task_pinned_vm(t), 0u) << "the ring's pages are not pinned_vm";
        pl_io_uring_exit(r);
        EXPECT_EQ(pl_task_locked_vm(t, 1), 0u) << "io_ring_ctx_free() returns the charge";
        EXPECT_EQ(pl_task_locked_vm(t, 0), 0u);
        if (!row.user_pages) continue;
        // One page short of the limit: io_uring_setup() fails with -ENOMEM
        // and nothing stays charged; exactly at the limit it succeeds.
        ASSERT_EQ(pl_task_set_rlimit_memlock(t, (row.user_pages - 1) * kPage), 0);
        EXPECT_EQ(pl_io_uring_setup(t, row.entries), nullptr);
        EXPECT_NE(std::string(pl_last_error()).find("-ENOMEM"), std::string::npos) << pl_last_error();
        EXPECT_EQ(pl_task_locked_vm(t, 1), 0u);
        EXPECT_EQ(pl_task_locked_vm(t, 0), 0u);
        ASSERT_EQ(pl_task_set_rlimit_memlock(t, row.user_pages * kPage), 0);
        r = pl_io_uring_setup(t, row.entries);
        EXPECT_NE(r, nullptr) << pl_last_error();
        if (r) pl_io_uring_exit(r);
        // With CAP_IPC_LOCK at setup the user is not charged at all, in
        // every era (ctx->user NULL; before v5.12 !limit_mem/!account_mem).
        ASSERT_EQ(pl_task_set_cap_ipc_lock(t, 1), 0);
        ASSERT_EQ(pl_task_set_rlimit_memlock(t, 0), 0);
        r = pl_io_uring_setup(t, row.entries);
        ASSERT_NE(r, nullptr) << pl_last_error();
        EXPECT_EQ(pl_task_locked_vm(t, 1), 0u);
        EXPECT_EQ(pl_task_locked_vm(t, 0), row.mm_locked) << "ACCT_LOCKED did not depend on limit_mem";
        pl_io_uring_exit(r);
        EXPECT_EQ(pl_task_locked_vm(t, 0), 0u);
    }
}

// Registered buffers went to mm->pinned_vm (VmPin) only from v5.9
// (io_account_mem(..., ACCT_PINNED)); the user's locked_vm took them in
// every era.
TEST_F(IoUring, BufferPinnedVmSinceV5_9) {
    for (const char* era : {"era=v5.8", "era=v5.10", ""}) {
        SCOPED_TRACE(era);
        reboot((std::string(era) + " ram=512M hugetlb_2m=0 hugetlb_1g=0").c_str());
        unsigned long a = map(t, 3 * kPage);
        ASSERT_EQ(pl_memset(t, a, 1, 3 * kPage), static_cast<long>(3 * kPage));
        Ring ring(t);
        ASSERT_NE(ring.r, nullptr);
        const unsigned long ring_pages = pl_task_locked_vm(t, 1);
        ASSERT_EQ(ring.reg(a, 3 * kPage), 0);
        EXPECT_EQ(pl_task_locked_vm(t, 1), ring_pages + 3);
        EXPECT_EQ(pl_task_pinned_vm(t), std::string(era) == "era=v5.8" ? 0u : 3u);
        EXPECT_EQ(pl_io_uring_unregister_buffers(ring.r), 0);
        EXPECT_EQ(pl_task_locked_vm(t, 1), ring_pages);
        EXPECT_EQ(pl_task_pinned_vm(t), 0u);
    }
}

// io_check_coalesce_buffer()/io_coalesce_buffer() (v6.12): a buffer made of
// same-size large folios becomes one bio_vec per folio, with one pin per folio.
TEST_F(IoUring, CoalescesHugeBuffers) {
    for (Backing b : {Backing::Thp, Backing::HugetlbAnon}) {
        unsigned long a = make(b, 2 * kHuge);
        ASSERT_NE(a, 0u);
        folio* f0 = page_folio(pg(t, a));
        ASSERT_EQ(folio_nr_pages(f0), kHuge / kPage) << name(b) << ": the buffer is backed by a 2 MiB folio";
        Ring ring(t);
        ASSERT_EQ(ring.reg(a, 2 * kHuge), 0) << name(b);
        unsigned long seg = 0;
        EXPECT_EQ(pl_io_uring_buffer_segments(ring.r, 0, &seg), 2) << name(b);
        EXPECT_EQ(seg, kHuge);
        EXPECT_EQ(pl_folio_pincount(f0), 1) << name(b) << ": all but one pin dropped";
        EXPECT_EQ(pl_io_uring_unregister_buffers(ring.r), 0);
        EXPECT_EQ(pl_folio_pincount(f0), 0);
        // Entered past the folio's start and left before its end: still one
        // segment (only the first and last folio may be partial).
        ASSERT_EQ(ring.reg(a + 3 * kPage, kHuge), 0);
        EXPECT_EQ(pl_io_uring_buffer_segments(ring.r, 0, &seg), 2);
        EXPECT_EQ(pl_io_uring_unregister_buffers(ring.r), 0);
        EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
    }
    // Small pages: one segment per page; a THP followed by small pages mixes
    // folio sizes and is not coalesced.
    unsigned long a = make(Backing::Thp, kHuge);
    unsigned long s = map(t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, nullptr, 0,
                          a + kHuge);
    ASSERT_EQ(pl_madvise(t, s, 4 * kPage, MADV_NOHUGEPAGE), 0);
    ASSERT_EQ(pl_memset(t, s, 1, 4 * kPage), static_cast<long>(4 * kPage));
    Ring ring(t);
    ASSERT_EQ(ring.reg(a, kHuge + 4 * kPage), 0);
    unsigned long seg = 0;
    EXPECT_EQ(pl_io_uring_buffer_segments(ring.r, 0, &seg), static_cast<int>(kHuge / kPage + 4));
    EXPECT_EQ(seg, kPage);
    EXPECT_EQ(pl_folio_pincount(page_folio(pg(t, a))), static_cast<int>(kHuge / kPage));
}

// The 2023 era had no coalescing: one bio_vec per page.
TEST_F(IoUring, NoCoalescingBeforeV6_12) {
    reboot(kConfigs[1]);
    unsigned long a = make(Backing::HugetlbAnon, kHuge);
    Ring ring(t);
    ASSERT_EQ(ring.reg(a, kHuge), 0);
    EXPECT_EQ(pl_io_uring_buffer_segments(ring.r, 0, nullptr), static_cast<int>(kHuge / kPage));
}

// IORING_OP_WRITE_FIXED / READ_FIXED move data between the pinned frames and
// a file; the process sees it through its mapping.
TEST_F(IoUring, FixedReadAndWriteFlowBothWays) {
    for (int v = 0; v < 3; v++) {
        reboot(kConfigs[v]);
        for (Backing b : {Backing::Anon, Backing::HugetlbAnon, Backing::Memfd}) {
            const unsigned long len = kHuge;
            unsigned long a = make(b, len);
            pl_file* f = file("ext4", 4 * kPage);
            Ring ring(t);
            ASSERT_EQ(ring.reg(a, len), 0) << kConfigs[v] << " " << name(b);
            // write: user memory → file, across a page boundary.
            put_str(t, a + kPage - 3, "from-memory");
            EXPECT_EQ(pl_io_uring_write_fixed(ring.r, f, 0, a + kPage - 3, 12, 100), 12);
            char buf[16] = {};
            EXPECT_EQ(pl_pread(f, buf, 12, 100), 12);
            EXPECT_STREQ(buf, "from-memory") << name(b);
            // read: file → user memory.
            ASSERT_EQ(pl_pwrite(f, "from-the-file", 14, 2 * kPage), 14);
            EXPECT_EQ(pl_io_uring_read_fixed(ring.r, f, 0, a + 5 * kPage + 7, 14, 2 * kPage), 14);
            EXPECT_EQ(get_str(t, a + 5 * kPage + 7), "from-the-file") << name(b);
            // Reads past EOF are short.
            EXPECT_EQ(pl_io_uring_read_fixed(ring.r, f, 0, a, 2 * kPage, 3 * kPage), static_cast<long>(kPage));
            // Outside the registered buffer, or a bad index.
            EXPECT_EQ(pl_io_uring_write_fixed(ring.r, f, 0, a + len - 4, 8, 0), -EFAULT);
            EXPECT_EQ(pl_io_uring_write_fixed(ring.r, f, 1, a, 8, 0), -EFAULT);
            EXPECT_EQ(pl_io_uring_read_fixed(ring.r, f, 0, a - 1, 8, 0), -EFAULT);
            EXPECT_EQ(pl_io_uring_write_fixed(ring.r, f, 0, a, ~0UL, 0), -EFAULT) << "addr + len wraps";
            // Released dirty: read_fixed stored into the frames.
            page* p = pg(t, a + 5 * kPage);
            EXPECT_EQ(pl_io_uring_unregister_buffers(ring.r), 0);
            EXPECT_TRUE(PageDirty(p)) << name(b);
            EXPECT_EQ(pl_munmap(t, a, len), 0);
        }
    }
}

// cow.c "fork() with an iouring fixed buffer": fork() copies the pinned
// anonymous pages for the child (page_needs_cow_for_dma()), so the ring keeps
// seeing what the parent writes, never what the child writes.
TEST_F(IoUring, ForkKeepsPinnedPagesWithParent) {
    for (Backing b : {Backing::Anon, Backing::Thp, Backing::HugetlbAnon}) {
        unsigned long a = make(b, kHuge);
        Ring ring(t);
        ASSERT_EQ(ring.reg(a, kHuge), 0) << name(b);
        page* pinned = pg(t, a);
        task_struct* c = pl_fork(t);
        ASSERT_NE(c, nullptr);
        EXPECT_EQ(pg(t, a), pinned) << name(b) << ": the parent keeps the pinned page";
        put_str(c, a, "child");
        put_str(t, a, "parent");
        pl_file* f = file("tmpfs", kPage);
        EXPECT_EQ(pl_io_uring_write_fixed(ring.r, f, 0, a, 7, 0), 7);
        char buf[8] = {};
        EXPECT_EQ(pl_pread(f, buf, 7, 0), 7);
        EXPECT_STREQ(buf, "parent") << name(b);
        // And a fixed read lands where the parent (only) sees it.
        ASSERT_EQ(pl_pwrite(f, "device", 7, 0), 7);
        EXPECT_EQ(pl_io_uring_read_fixed(ring.r, f, 0, a, 7, 0), 7);
        EXPECT_EQ(get_str(t, a), "device");
        EXPECT_EQ(get_str(c, a), "child");
        pl_exit(c);
        EXPECT_EQ(pl_io_uring_unregister_buffers(ring.r), 0);
        EXPECT_EQ(pl_munmap(t, a, kHuge), 0);
    }
}

// Ring exit unregisters; the global balance holds.
TEST_F(IoUring, ExitReleasesEverything) {
    unsigned long a = make(Backing::Thp, 2 * kHuge);
    {
        Ring ring(t);
        iovec iov[3] = {{reinterpret_cast<void*>(a), kHuge},
                        {reinterpret_cast<void*>(a + kHuge), kPage},
                        {reinterpret_cast<void*>(a), 2 * kHuge}};
        // Two pages for the ring itself (io_create_region() of the rings and of the SQEs).
        ASSERT_EQ(pl_io_uring_register_buffers(ring.r, iov, 3), 0);
        EXPECT_EQ(pl_task_locked_vm(t, 1), 2 + 2 * kHuge / kPage) << "each THP charged once across buffers";
        EXPECT_GT(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
        // The pin tracker's balance per owner: buffer 0 and 2 coalesced (one
        // pin per folio: 1 + 2), buffer 1 one page.
        EXPECT_EQ(pl_pin_balance(k, "io_uring"), 4);
    }
    EXPECT_EQ(pl_pin_balance(k, "io_uring"), 0);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
    EXPECT_EQ(pl_task_locked_vm(t, 1), 0u) << "the buffers' and the ring's own pages returned";
    EXPECT_EQ(pl_folio_pincount(page_folio(pg(t, a))), 0);
}

}  // namespace
}  // namespace pl::test

namespace pl::test {
namespace {

// A ring still registered when its task exits: do_exit() closes the ring
// fd in exit_files() and io_ring_ctx_free() unregisters the buffers, so the
// pins go at exit and nothing leaks; the handle is still closed later, and
// other calls on it give -ESRCH.
TEST_F(IoUring, RingClosedAfterTaskExit) {
    unsigned long a = map(t, kPage);
    ASSERT_EQ(pl_memset(t, a, 1, kPage), static_cast<long>(kPage));
    pl_io_uring* r = pl_io_uring_setup(t, 4);
    iovec iov{reinterpret_cast<void*>(a), kPage};
    ASSERT_EQ(pl_io_uring_register_buffers(r, &iov, 1), 0);
    EXPECT_EQ(pl_pin_balance(k, "io_uring"), 1);
    pl_exit(t);
    t = nullptr;
    EXPECT_EQ(pl_pin_balance(k, "io_uring"), 0);
    EXPECT_EQ(pl_warning_count(k, "leak"), 0) << pl_dmesg(k);
    EXPECT_EQ(pl_io_uring_register_buffers(r, &iov, 1), -ESRCH);
    pl_io_uring_exit(r);
    EXPECT_EQ(pl_pin_balance(k, "io_uring"), 0);
}

}  // namespace
}  // namespace pl::test
