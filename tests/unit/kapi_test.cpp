// The C API against bad input: every call returns a clean error naming the
// argument (or NULL), never crashes, hangs or allocates without bound.
#include "test_kernel.h"

#include <random>

namespace pl::test {
namespace {

TEST(KapiBadInput, NullHandlesAreRefused) {
    EXPECT_EQ(pl_task_new(nullptr), nullptr);
    EXPECT_NE(std::string(pl_last_error()).find("'k'"), std::string::npos) << pl_last_error();
    EXPECT_EQ(pl_fork(nullptr), nullptr);
    EXPECT_EQ(pl_mmap(nullptr, 0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0), -EINVAL);
    EXPECT_NE(std::string(pl_last_error()).find("pl_mmap"), std::string::npos);
    EXPECT_EQ(pl_munmap(nullptr, 0, 0), -EINVAL);
    EXPECT_EQ(pl_mprotect(nullptr, 0, 0, 0), -EINVAL);
    EXPECT_EQ(pl_madvise(nullptr, 0, 0, 0), -EINVAL);
    EXPECT_EQ(pl_mremap(nullptr, 0, 0, 0, 0, 0), -EINVAL);
    EXPECT_EQ(pl_write(nullptr, 0, "x", 1), -EINVAL);
    EXPECT_EQ(pl_read(nullptr, 0, nullptr, 0), -EINVAL);
    EXPECT_EQ(pl_page_read(nullptr, 0, nullptr, 0), -EINVAL);
    EXPECT_EQ(pl_page_write(nullptr, 0, nullptr, 0), -EINVAL);
    EXPECT_EQ(pl_pread(nullptr, nullptr, 0, 0), -EINVAL);
    EXPECT_EQ(pl_ftruncate(nullptr, 0), -EINVAL);
    EXPECT_EQ(pl_fsync(nullptr), -EINVAL);
    EXPECT_EQ(pl_kernel_check(nullptr), -EINVAL);
    EXPECT_EQ(pl_virt_to_page(nullptr, 0), nullptr);
    EXPECT_EQ(pl_file_new(nullptr, "ext4", 0), nullptr);
    EXPECT_EQ(pl_dev_open(nullptr, "pfnmap"), nullptr);
    EXPECT_EQ(pl_vmstat(nullptr, "pgfault"), 0u);
    EXPECT_EQ(page_ref_count(nullptr), 0);
    EXPECT_EQ(::page_folio(static_cast<page*>(nullptr)), nullptr);
    pl_exit(nullptr);
    pl_file_put(nullptr);
    pl_kernel_free(nullptr);
    put_page(nullptr);
    get_page(nullptr);
}

class KapiBadArgs : public KernelTest {};

TEST_F(KapiBadArgs, NamesAndUnknownValues) {
    EXPECT_EQ(pl_file_new(k, "ntfs", 4096), nullptr);
    EXPECT_NE(std::string(pl_last_error()).find("ntfs"), std::string::npos);
    EXPECT_EQ(pl_file_new(k, nullptr, 4096), nullptr);
    EXPECT_EQ(pl_dev_open(k, "gpu0"), nullptr);
    EXPECT_NE(std::string(pl_last_error()).find("gpu0"), std::string::npos);
    EXPECT_EQ(pl_vmstat(k, "no_such_counter"), 0u);
    EXPECT_NE(std::string(pl_last_error()).find("no_such_counter"), std::string::npos);
    EXPECT_EQ(pl_task_signal(t, 0), -EINVAL);
    EXPECT_EQ(pl_clear_refs(t, 9), -EINVAL);
    EXPECT_EQ(pl_kernel_new("ram=64G hugetlb_2m=99999999"), nullptr);
    EXPECT_NE(std::string(pl_last_error()).find("hugetlb"), std::string::npos) << pl_last_error();
}

TEST_F(KapiBadArgs, BoundaryAddressesAndLengths) {
    char c = 0;
    const unsigned long top = (1UL << 47);
    EXPECT_EQ(pl_read(t, top - 1, &c, 2), -EFAULT);
    EXPECT_EQ(pl_read(t, ~0UL - 2, &c, 8), -EFAULT) << "wrap-around";
    EXPECT_EQ(pl_write(t, 0, &c, 1), -EFAULT);
    EXPECT_EQ(pl_mmap(t, 0, ~0UL, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0), -ENOMEM);
    EXPECT_EQ(pl_mmap(t, top, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, nullptr, 0), -ENOMEM);
    EXPECT_EQ(pl_mmap(t, 0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (7 << 26), nullptr, 0),
              -EINVAL)
        << "an unknown huge page size";
    pl_file* f = file("ext4", 4096);
    EXPECT_EQ(pl_mmap(t, 0, 4096, PROT_READ, MAP_PRIVATE, f, ~0UL & ~4095UL), -EOVERFLOW);
    EXPECT_EQ(pl_munmap(t, top - 4096, 8192), -EINVAL);
    EXPECT_EQ(pl_mremap(t, 0x10000, 4096, 0, 1, 0), -EINVAL);
    EXPECT_EQ(pl_madvise(t, 0x10000, ~0UL, MADV_DONTNEED), -EINVAL);
    EXPECT_EQ(pl_mprotect(t, 0x10000, 4096, 0x1000), -EINVAL) << "unknown PROT bits";
    EXPECT_EQ(pl_pwrite(f, "x", 1, ~0UL - 1), -EFBIG);
    EXPECT_EQ(pl_fallocate(f, 0x40, 0, 4096), -EOPNOTSUPP);
    char buf[200];
    EXPECT_EQ(pl_page_read(pg(t, map(4096)), 4000, buf, 200), -EINVAL) << "a device access may not cross the frame";
}

// Random garbage through every address-space call: errors are fine, crashes
// and broken invariants are not.
TEST_F(KapiBadArgs, RandomGarbageKeepsTheKernelConsistent) {
    std::mt19937_64 rng(42);
    auto addr = [&] {
        switch (rng() % 4) {
            case 0: return rng();
            case 1: return rng() % (1UL << 47);
            case 2: return (rng() % 64) << 12;
            default: return 0x7f0000000000UL - ((rng() % 1024) << 12);
        }
    };
    auto len = [&] { return rng() % 3 == 0 ? rng() : (rng() % 64) << 12; };
    for (int i = 0; i < 3000; ++i) {
        int prot = static_cast<int>(rng() % 16);
        int flags = static_cast<int>(rng());
        switch (rng() % 6) {
            case 0: (void)pl_mmap(t, addr(), len() % (64UL << 20), prot, flags & ~MAP_HUGETLB, nullptr, rng()); break;
            case 1: (void)pl_munmap(t, addr(), len()); break;
            case 2: (void)pl_mprotect(t, addr(), len(), prot); break;
            case 3: (void)pl_madvise(t, addr(), len(), static_cast<int>(rng() % 30)); break;
            case 4: (void)pl_mremap(t, addr(), len() % (1UL << 30), len() % (1UL << 30), static_cast<int>(rng() % 8), addr()); break;
            case 5: {
                char buf[64];
                (void)pl_write(t, addr(), buf, rng() % 64);
                break;
            }
        }
    }
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
}

}  // namespace
}  // namespace pl::test
