// vfio type1 (src/drivers/vfio_iommu_type1.cpp): MAP_DMA/UNMAP_DMA over
// anonymous, hugetlb and PFNMAP memory, locked_vm against RLIMIT_MEMLOCK,
// and the device's DMA through the IOMMU mappings.
#include <memory>

#include "fs/file.h"
#include "fs/inode.h"
#include "mm/vma.h"
#include "mm/vm_ops.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

constexpr unsigned long kHuge = 2UL << 20;
constexpr unsigned RW = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;

// A PCI BAR: I/O memory without struct pages, mapped VM_IO|VM_PFNMAP and
// filled in at fault time with vmf_insert_pfn(), as vfio-pci's own BAR mmap
// does (so MAP_DMA of it goes through fixup_user_fault()).
struct Bar {
    Kernel* kernel;
    pfn_t base;
    unsigned long nr;
    static void release(void* self) {
        auto* b = static_cast<Bar*>(self);
        b->kernel->mem->iomem_free(b->base, b->nr);
        delete b;
    }
};
class BarVmOps final : public VmOperations {
public:
    const char* name() const override { return "test-bar"; }
    vm_fault_t fault(VmFault& vmf) const override {
        auto* bar = static_cast<Bar*>(vmf.vma->file->private_data);
        if (vmf.pgoff >= bar->nr) return VM_FAULT_SIGBUS;
        return vmf_insert_pfn(*vmf.vma, vmf.address, bar->base + vmf.pgoff);
    }
};
const BarVmOps kBarVmOps;
class BarFops final : public FileOperations {
public:
    Status mmap(File&, Vma& vma) const override {
        vma.flags |= VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP;
        vma.ops = &kBarVmOps;
        return ok_status();
    }
};
const BarFops kBarFops;

class Vfio : public KernelTest {
protected:
    pl_file* bar(unsigned long nr_pages, pfn_t* base) {
        Kernel& kk = kern();
        Result<pfn_t> r = kk.mem->iomem_alloc(nr_pages);
        EXPECT_TRUE(r.ok());
        auto* b = new Bar{&kk, r.value(), nr_pages};
        *base = b->base;
        auto* f = new File(kk.inode_new(FsKind::Device), &kBarFops, "test-bar");
        f->private_data = b;
        f->private_release = &Bar::release;
        auto* pf = reinterpret_cast<pl_file*>(f);
        files.push_back(pf);
        return pf;
    }
    unsigned long balance() { return pl_vmstat(k, "nr_foll_pin_acquired") - pl_vmstat(k, "nr_foll_pin_released"); }
};

// Closed before the fixture's teardown exits the task (closing the vfio
// container fd at exit).
struct Container {
    pl_vfio_container* c;
    explicit Container(task_struct* t) : c(pl_vfio_open(t)) {}
    ~Container() {
        if (c) pl_vfio_close(c);
    }
    Container(const Container&) = delete;
    Container& operator=(const Container&) = delete;
};

// vfio_pin_pages_remote(): every page pinned (FOLL_LONGTERM), charged to the
// mm's locked_vm; vfio_unmap_unpin() releases and uncharges.
TEST_F(Vfio, MapUnmapAnonAndHugetlb) {
    Container ct(t);
    ASSERT_NE(ct.c, nullptr);
    unsigned long a = map(t, 8 * kPage);
    unsigned long h = map(t, kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB);
    // Not touched before MAP_DMA: pin_user_pages_remote() faults them in.
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x100000, a, 8 * kPage, RW), 0);
    EXPECT_EQ(balance(), 8u);
    EXPECT_EQ(pl_pin_balance(k, "vfio"), 8) << "the pin tracker names the driver";
    EXPECT_EQ(pl_task_locked_vm(t, 0), 8u);
    EXPECT_TRUE(page_maybe_dma_pinned(pg(t, a + 3 * kPage)));
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x400000, h, kHuge, VFIO_DMA_MAP_FLAG_READ), 0);
    EXPECT_EQ(pl_folio_pincount(page_folio(pg(t, h))), static_cast<int>(kHuge / kPage)) << "one pin per subpage";
    EXPECT_EQ(pl_task_locked_vm(t, 0), 8u + kHuge / kPage);
    EXPECT_EQ(pl_vfio_unmap_dma(ct.c, 0x100000, 8 * kPage), static_cast<long>(8 * kPage));
    EXPECT_EQ(pl_task_locked_vm(t, 0), kHuge / kPage);
    EXPECT_FALSE(page_maybe_dma_pinned(pg(t, a + 3 * kPage)));
    // An unmap covering more than the mappings returns what was mapped.
    EXPECT_EQ(pl_vfio_unmap_dma(ct.c, 0, 1UL << 30), static_cast<long>(kHuge));
    EXPECT_EQ(pl_vfio_unmap_dma(ct.c, 0, 1UL << 30), 0) << "nothing left";
    EXPECT_EQ(balance(), 0u);
    EXPECT_EQ(pl_pin_balance(k, "vfio"), 0);
    EXPECT_EQ(pl_task_locked_vm(t, 0), 0u);
}

// vfio_dma_do_map()/vfio_dma_do_unmap() argument rules.
TEST_F(Vfio, MapErrors) {
    Container ct(t);
    unsigned long a = map(t, 8 * kPage);
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x1000, a, 0, RW), -EINVAL) << "size 0";
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x1001, a, kPage, RW), -EINVAL) << "iova misaligned";
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x1000, a + 1, kPage, RW), -EINVAL) << "vaddr misaligned";
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x1000, a, kPage + 1, RW), -EINVAL) << "size misaligned";
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x1000, a, kPage, 0), -EINVAL) << "no READ|WRITE";
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x1000, a, kPage, RW | 0x100), -EINVAL) << "unknown flag";
    EXPECT_EQ(pl_vfio_map_dma(ct.c, ~0UL & ~(kPage - 1), a, 2 * kPage, RW), -EINVAL) << "iova wraps";
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x10000, a, 4 * kPage, RW), 0);
    // vfio_find_dma(): any overlap.
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x10000, a + 4 * kPage, 4 * kPage, RW), -EEXIST);
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x13000, a + 4 * kPage, 4 * kPage, RW), -EEXIST);
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0xe000, a + 4 * kPage, 4 * kPage, RW), -EEXIST);
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x14000, a + 4 * kPage, 4 * kPage, RW), 0) << "adjacent is fine";
    // Unmap may not split a mapping (v2 semantics).
    EXPECT_EQ(pl_vfio_unmap_dma(ct.c, 0x11000, kPage), -EINVAL);
    EXPECT_EQ(pl_vfio_unmap_dma(ct.c, 0x10000, kPage), -EINVAL);
    EXPECT_EQ(pl_vfio_unmap_dma(ct.c, 0x10001, kPage), -EINVAL);
    EXPECT_EQ(pl_vfio_unmap_dma(ct.c, 0x10000, 8 * kPage), static_cast<long>(8 * kPage));
    // A range running into a hole pins nothing in the end.
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x10000, a, 9 * kPage, RW), -EFAULT);
    EXPECT_EQ(balance(), 0u);
    EXPECT_EQ(pl_task_locked_vm(t, 0), 0u);
    EXPECT_EQ(pl_vfio_map_dma(nullptr, 0x1000, a, kPage, RW), -EINVAL);
    // A read-only mapping cannot be mapped for device writes (FOLL_WRITE).
    unsigned long ro = map(t, kPage, PROT_READ);
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x40000, ro, kPage, RW), -EFAULT);
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x40000, ro, kPage, VFIO_DMA_MAP_FLAG_READ), 0);
}

// vfio_pin_pages_remote(): "RLIMIT_MEMLOCK exceeded" → -ENOMEM unless
// CAP_IPC_LOCK; a failed map leaves nothing pinned or charged.
TEST_F(Vfio, LockedVmLimit) {
    Container ct(t);
    unsigned long a = map(t, 16 * kPage);
    ASSERT_EQ(pl_task_set_rlimit_memlock(t, 6 * kPage), 0);
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0, a, 4 * kPage, RW), 0);
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x10000, a + 4 * kPage, 4 * kPage, RW), -ENOMEM);
    EXPECT_NE(std::string(pl_dmesg(k)).find("RLIMIT_MEMLOCK"), std::string::npos);
    expect_reports("warn", 1);  // upstream's pr_warn() in vfio_pin_pages_remote()
    EXPECT_EQ(pl_task_locked_vm(t, 0), 4u);
    EXPECT_EQ(balance(), 4u);
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x10000, a + 4 * kPage, 2 * kPage, RW), 0) << "exactly at the limit";
    ASSERT_EQ(pl_task_set_cap_ipc_lock(t, 1), 0);
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x20000, a + 8 * kPage, 8 * kPage, RW), 0);
    EXPECT_EQ(pl_task_locked_vm(t, 0), 14u) << "still counted with the capability";
    EXPECT_EQ(pl_vfio_unmap_dma(ct.c, 0, 1UL << 20), static_cast<long>(14 * kPage));
    EXPECT_EQ(pl_task_locked_vm(t, 0), 0u);
    EXPECT_EQ(balance(), 0u);
}

// vaddr_get_pfns(): pin_user_pages_remote() refuses VM_IO|VM_PFNMAP, then
// follow_fault_pfn() faults the BAR in (fixup_user_fault) and records the raw
// pfns: no reference, nothing charged.
TEST_F(Vfio, PfnmapFallbackRecordsRawPfns) {
    pfn_t base = 0;
    pl_file* b = bar(4, &base);
    unsigned long a = map(t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, b);
    EXPECT_EQ(entry(t, a), 0u) << "not faulted in yet";
    Container ct(t);
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x200000, a, 4 * kPage, RW), 0);
    EXPECT_NE(entry(t, a + 2 * kPage), 0u) << "fixup_user_fault() populated the PTE";
    EXPECT_EQ(balance(), 0u) << "no pins";
    EXPECT_EQ(pl_task_locked_vm(t, 0), 0u) << "invalid pfns are not charged";
    // Peer-to-peer: the device writes the BAR, the CPU sees it.
    EXPECT_EQ(pl_vfio_dma_write(ct.c, 0x200000 + 2 * kPage + 5, "bar", 4), 4);
    EXPECT_EQ(get_str(t, a + 2 * kPage + 5), "bar");
    EXPECT_EQ(pl_vfio_unmap_dma(ct.c, 0x200000, 4 * kPage), static_cast<long>(4 * kPage));
    EXPECT_EQ(pl_munmap(t, a, 4 * kPage), 0);

    // The pfnmap device remaps RAM that is not PageReserved: vfio refuses it
    // (is_invalid_reserved_pfn() false → -EFAULT), it would otherwise unpin a
    // page it never pinned.
    pl_file* d = pl_dev_open(k, "pfnmap");
    ASSERT_NE(d, nullptr);
    files.push_back(d);
    unsigned long p = map(t, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, d);
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x300000, p, 2 * kPage, RW), -EFAULT);
    EXPECT_EQ(balance(), 0u);
}

// DMA through the IOMMU both ways; UNMAP dirties what a WRITE mapping allowed.
TEST_F(Vfio, DmaReadWriteAndDirtyOnUnmap) {
    Container ct(t);
    unsigned long a = map(t, 4 * kPage);
    pl_file* f = file("ext4", 4 * kPage);
    unsigned long fm = map(t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    put_str(t, a + kPage - 2, "cpu-data");
    ASSERT_EQ(pl_vfio_map_dma(ct.c, 0x8000, a, 4 * kPage, RW), 0);
    char buf[16] = {};
    EXPECT_EQ(pl_vfio_dma_read(ct.c, 0x8000 + kPage - 2, buf, 9), 9);
    EXPECT_STREQ(buf, "cpu-data");
    EXPECT_EQ(pl_vfio_dma_write(ct.c, 0x8000 + 3 * kPage, "dev-data", 9), 9);
    EXPECT_EQ(get_str(t, a + 3 * kPage), "dev-data");
    EXPECT_EQ(pl_vfio_dma_read(ct.c, 0x8000 + 4 * kPage - 2, buf, 4), -EFAULT) << "runs off the mapping";
    EXPECT_EQ(pl_vfio_dma_read(ct.c, 0x100, buf, 4), -EFAULT) << "unmapped iova";
    // A R/O pin of a shared ext4 mapping is allowed long-term; the device may
    // only read it.
    put_str(t, fm, "file");
    ASSERT_EQ(pl_vfio_map_dma(ct.c, 0x20000, fm, 4 * kPage, VFIO_DMA_MAP_FLAG_READ), 0);
    EXPECT_EQ(pl_vfio_dma_write(ct.c, 0x20000, "x", 1), -EFAULT) << "no IOMMU_WRITE";
    EXPECT_EQ(pl_vfio_dma_read(ct.c, 0x20000, buf, 5), 5);
    EXPECT_STREQ(buf, "file");
    // A R/W one is refused by GUP (writable_file_mapping_allowed()).
    EXPECT_EQ(pl_vfio_map_dma(ct.c, 0x40000, fm, 4 * kPage, RW), -EFAULT);
    ASSERT_EQ(pl_fsync(f), 0);
    page* fp = pg(t, fm);
    ASSERT_FALSE(PageDirty(fp));
    EXPECT_EQ(pl_vfio_unmap_dma(ct.c, 0x20000, 4 * kPage), static_cast<long>(4 * kPage));
    EXPECT_FALSE(PageDirty(fp)) << "READ-only mappings are released clean";
    page* ap = pg(t, a + 3 * kPage);
    EXPECT_EQ(pl_vfio_unmap_dma(ct.c, 0x8000, 4 * kPage), static_cast<long>(4 * kPage));
    EXPECT_TRUE(PageDirty(ap)) << "put_pfn(): unpin_user_pages_dirty_lock(.., prot & IOMMU_WRITE)";
    EXPECT_EQ(pl_vfio_dma_read(ct.c, 0x8000, buf, 4), -EFAULT) << "gone from the IOMMU";
    EXPECT_EQ(balance(), 0u);
}

// A VM that forks (QEMU running a helper): the pinned anonymous pages stay
// with the parent (fork copies possibly-pinned exclusive pages for the
// child), so the device keeps sharing memory with the parent only.
TEST_F(Vfio, ForkKeepsDmaPagesWithParent) {
    Container ct(t);
    unsigned long a = map(t, 2 * kPage);
    ASSERT_EQ(pl_vfio_map_dma(ct.c, 0x1000, a, 2 * kPage, RW), 0);
    page* pinned = pg(t, a);
    task_struct* c = pl_fork(t);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(pg(t, a), pinned);
    put_str(c, a, "child");
    put_str(t, a, "parent");
    char buf[8] = {};
    EXPECT_EQ(pl_vfio_dma_read(ct.c, 0x1000, buf, 7), 7);
    EXPECT_STREQ(buf, "parent");
    EXPECT_EQ(pl_vfio_dma_write(ct.c, 0x1000, "dma", 4), 4);
    EXPECT_EQ(get_str(t, a), "dma");
    EXPECT_EQ(get_str(c, a), "child");
    pl_exit(c);
}

// A container still holding mappings when its task exits: exit_files()
// closes it (vfio_iommu_type1_release() unmaps and unpins), so nothing leaks
// and pl_vfio_close() afterwards only frees the handle.
TEST_F(Vfio, ContainerClosedAtTaskExit) {
    task_struct* c = pl_fork(t);
    ASSERT_NE(c, nullptr);
    unsigned long a = map(c, 4 * kPage);
    pl_vfio_container* ct = pl_vfio_open(c);
    ASSERT_NE(ct, nullptr);
    ASSERT_EQ(pl_vfio_map_dma(ct, 0, a, 4 * kPage, RW), 0);
    EXPECT_EQ(balance(), 4u);
    pl_exit(c);
    EXPECT_EQ(balance(), 0u);
    EXPECT_EQ(pl_warning_count(k, "leak"), 0) << pl_dmesg(k);
    EXPECT_EQ(pl_vfio_map_dma(ct, 0x10000, a, kPage, RW), -ESRCH);
    pl_vfio_close(ct);
}

// Closing the container unmaps everything.
TEST_F(Vfio, CloseUnpinsEverything) {
    unsigned long a = map(t, 8 * kPage);
    {
        Container ct(t);
        ASSERT_EQ(pl_vfio_map_dma(ct.c, 0, a, 4 * kPage, RW), 0);
        ASSERT_EQ(pl_vfio_map_dma(ct.c, 0x10000, a + 4 * kPage, 4 * kPage, VFIO_DMA_MAP_FLAG_READ), 0);
        EXPECT_EQ(balance(), 8u);
    }
    EXPECT_EQ(balance(), 0u);
    EXPECT_EQ(pl_task_locked_vm(t, 0), 0u);
}

}  // namespace
}  // namespace pl::test
