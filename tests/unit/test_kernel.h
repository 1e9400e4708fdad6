// pinlab tests — a small fixture around the C API plus internal access.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "kernel/kernel.h"
#include "kernel/task.h"
#include "mm/internal.h"
#include "pinlab/kapi.h"

namespace pl::test {

inline constexpr unsigned long kPage = 4096;

// One simulated machine and a first task. Every test ends with the full
// invariant check, with no report of the kernel log (pl_warning_count) that
// the test did not declare with expect_reports(), and, once everything is
// torn down, with no frame leaked (frames quarantined by leaked pins excepted
// when the test expected "leak" reports).
class KernelTest : public ::testing::Test {
public:
    // Report kinds of include/pinlab/kapi.h's pin tracker block.
    static constexpr const char* kReportKinds[] = {"warn",          "put_page_on_pinned", "unpin_not_pinned",
                                                   "double_unpin",  "leak",               "pinned_page_moved",
                                                   "dangling_vma",  "pfnmap_gup"};
    static constexpr int kAtLeastOne = -1;

protected:
    // Declares that this test raises `n` reports of `kind` by teardown
    // (kAtLeastOne: one or more). Calls add up.
    void expect_reports(const char* kind, int n = kAtLeastOne) {
        int& want = expected_reports[kind];
        want = (n < 0 || want < 0) ? kAtLeastOne : want + n;
    }
    // Allows any number of reports of `kind` (none included) on every kernel
    // this test boots: for tests that reboot across eras and check their
    // pl_dmesg() lines themselves.
    void allow_reports(const char* kind) { allowed_reports.push_back(kind); }
    void check_reports() {
        int total = 0;
        for (const char* kind : kReportKinds) {
            const int got = pl_warning_count(k, kind);
            total += got;
            if (std::find(allowed_reports.begin(), allowed_reports.end(), kind) != allowed_reports.end()) continue;
            auto it = expected_reports.find(kind);
            const int want = it == expected_reports.end() ? 0 : it->second;
            if (want < 0)
                EXPECT_GE(got, 1) << "expected reports of kind " << kind << "; dmesg:\n" << pl_dmesg(k);
            else
                EXPECT_EQ(got, want) << "reports of kind " << kind << "; dmesg:\n" << pl_dmesg(k);
        }
        EXPECT_EQ(pl_warning_count(k, nullptr), total) << "reports of an unknown kind; dmesg:\n" << pl_dmesg(k);
    }

    void boot(const char* config = "ram=512M hugetlb_2m=8 hugetlb_1g=0") {
        k = pl_kernel_new(config);
        ASSERT_NE(k, nullptr) << pl_last_error();
        baseline = pl_nr_allocated_pages(k);
        t = pl_task_new(k);
        ASSERT_NE(t, nullptr);
    }
    void SetUp() override { boot(); }
    // For tests that misuse the API on purpose and leave the reference
    // accounting wrong (as the kernel's would be): teardown skips the
    // invariant check; the test checks what broke itself.
    void invariants_broken_on_purpose() { invariants_broken = true; }
    void TearDown() override {
        if (!k) return;
        if (!invariants_broken) {
            EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
        }
        for (Task* task : kern().tasks()) pl_exit(reinterpret_cast<task_struct*>(task));
        for (pl_file* f : files) pl_file_put(f);
        if (!invariants_broken) {
            EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
        }
        check_reports();
        // Leaked pins keep their frames for good (quarantine), when expected.
        const bool leaks_expected =
            expected_reports.count("leak") ||
            std::find(allowed_reports.begin(), allowed_reports.end(), "leak") != allowed_reports.end();
        const unsigned long quarantined = leaks_expected ? pl_nr_quarantined_pages(k) : 0;
        EXPECT_EQ(pl_nr_allocated_pages(k), baseline + quarantined) << "frames leaked";
        pl_kernel_free(k);
        k = nullptr;
        expected_reports.clear();
    }
    void reboot(const char* config) {
        TearDown();
        files.clear();
        boot(config);
    }

    Kernel& kern() { return *reinterpret_cast<Kernel*>(k); }
    MmStruct& mm(task_struct* task) { return *reinterpret_cast<Task*>(task)->mm; }
    MmStruct& mm() { return mm(t); }

    unsigned long map(task_struct* task, unsigned long len, int prot = PROT_READ | PROT_WRITE,
                      int flags = MAP_PRIVATE | MAP_ANONYMOUS, pl_file* f = nullptr, unsigned long off = 0,
                      unsigned long addr = 0) {
        long a = pl_mmap(task, addr, len, prot, flags, f, off);
        EXPECT_GT(a, 0) << pl_last_error();
        return static_cast<unsigned long>(a);
    }
    unsigned long map(unsigned long len, int prot = PROT_READ | PROT_WRITE, int flags = MAP_PRIVATE | MAP_ANONYMOUS) {
        return map(t, len, prot, flags);
    }
    pl_file* file(const char* fs, unsigned long size) {
        pl_file* f = pl_file_new(k, fs, size);
        EXPECT_NE(f, nullptr) << pl_last_error();
        files.push_back(f);
        return f;
    }
    void put_str(task_struct* task, unsigned long addr, const std::string& s) {
        ASSERT_EQ(pl_write(task, addr, s.c_str(), s.size() + 1), static_cast<long>(s.size() + 1)) << pl_last_error();
    }
    std::string get_str(task_struct* task, unsigned long addr, size_t max = 64) {
        std::vector<char> buf(max + 1, 0);
        long r = pl_read(task, addr, buf.data(), max);
        if (r < 0) return "<" + std::string(errno_name(static_cast<int>(-r))) + ">";
        return std::string(buf.data());
    }
    // The leaf entry at addr (0 if none).
    pte::entry_t entry(task_struct* task, unsigned long addr) {
        PageTable::Leaf l = mm(task).pgtable.find_leaf(addr);
        return l.slot ? l.entry : 0;
    }
    PtLevel level(task_struct* task, unsigned long addr) { return mm(task).pgtable.find_leaf(addr).level; }
    Folio* folio_at(task_struct* task, unsigned long addr) {
        page* p = pl_virt_to_page(task, addr);
        return p ? page_folio(reinterpret_cast<Page*>(p)) : nullptr;
    }
    page* pg(task_struct* task, unsigned long addr) { return pl_virt_to_page(task, addr); }

    pl_kernel* k = nullptr;
    task_struct* t = nullptr;
    unsigned long baseline = 0;
    std::vector<pl_file*> files;
    bool invariants_broken = false;
    std::map<std::string, int> expected_reports;  // per kernel (cleared by TearDown)
    std::vector<std::string> allowed_reports;      // for the whole test
};

}  // namespace pl::test
