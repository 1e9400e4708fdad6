// pinlab — the command-line entry point.
//
// Until the scenario runner (issue 5) exists, the main job is `pinlab demo`
// (also what `pinlab` with no arguments runs): it boots a simulated kernel and
// walks through fork and copy-on-write over every backing the substrate
// models, printing what each process sees and the state of its pages, and
// exits non-zero if anything differs from what Linux does.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "base/config.h"
#include "pinlab/kapi.h"

namespace {

struct Backing {
    const char* name;
    const char* fs;  // nullptr: anonymous
    int flags;
    unsigned long len;
    bool shared;
};

int failures = 0;
int passes = 0;

void row(const std::string& what, bool ok, const std::string& detail) {
    std::printf("  %-4s %-48s %s\n", ok ? "ok" : "FAIL", what.c_str(), detail.c_str());
    ++(ok ? passes : failures);
}

std::string read_str(task_struct* t, unsigned long addr) {
    char buf[32] = {};
    long r = pl_read(t, addr, buf, sizeof buf - 1);
    if (r < 0) return std::string("<") + std::strerror(static_cast<int>(-r)) + ">";
    return buf;
}

std::string page_state(task_struct* t, unsigned long addr) {
    page* p = pl_virt_to_page(t, addr);
    if (!p) return "no struct page";
    char buf[160];
    std::snprintf(buf, sizeof buf, "pfn %#lx refcount %d mapcount %d%s%s", page_to_pfn(p), page_ref_count(p),
                  page_mapcount(p), PageAnonExclusive(p) ? " AnonExclusive" : "", PageCompound(p) ? " large" : "");
    return buf;
}

int demo(const std::string& config) {
    pl_kernel* k = pl_kernel_new(config.c_str());
    if (!k) {
        std::fprintf(stderr, "pinlab: %s\n", pl_last_error());
        return 2;
    }
    std::printf("pinlab: a model of Linux GUP's world (issue 2 substrate demo)\nkernel: %s\n\n", pl_kernel_config(k));

    const std::vector<Backing> backings = {
        {"anonymous private", nullptr, MAP_PRIVATE | MAP_ANONYMOUS, 4096, false},
        {"anonymous private THP", nullptr, MAP_PRIVATE | MAP_ANONYMOUS, 2UL << 20, false},
        {"anonymous shared", nullptr, MAP_SHARED | MAP_ANONYMOUS, 4096, true},
        {"ext4 private", "ext4", MAP_PRIVATE, 4096, false},
        {"ext4 shared", "ext4", MAP_SHARED, 4096, true},
        {"memfd shared", "memfd", MAP_SHARED, 4096, true},
        {"hugetlb private", nullptr, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, 2UL << 20, false},
        {"hugetlbfs shared", "hugetlbfs", MAP_SHARED, 2UL << 20, true},
    };
    for (const Backing& b : backings) {
        std::printf("%s:\n", b.name);
        task_struct* parent = pl_task_new(k);
        pl_file* f = b.fs ? pl_file_new(k, b.fs, b.len) : nullptr;
        long addr = pl_mmap(parent, 0, b.len, PROT_READ | PROT_WRITE, b.flags, f, 0);
        if (addr < 0) {
            row("mmap", false, pl_last_error());
            pl_exit(parent);
            if (f) pl_file_put(f);
            continue;
        }
        auto a = static_cast<unsigned long>(addr);
        pl_write(parent, a, "parent", 7);
        row("parent writes 'parent'", read_str(parent, a) == "parent", page_state(parent, a));
        task_struct* child = pl_fork(parent);
        page* before = pl_virt_to_page(parent, a);
        std::string seen = read_str(child, a);  // faults the child's page in first
        row("after fork the child sees 'parent'", seen == "parent", page_state(child, a));
        pl_write(parent, a, "parent-2", 9);
        std::string want = b.shared ? "parent-2" : "parent";
        row("parent writes 'parent-2'; child sees '" + want + "'", read_str(child, a) == want,
            b.shared ? "one shared copy" : "copy-on-write kept the child's data");
        page* after_p = pl_virt_to_page(parent, a);
        page* after_c = pl_virt_to_page(child, a);
        bool same = after_p == after_c;
        row(b.shared ? "both map the same frame" : "each maps its own frame", same == b.shared,
            "parent: " + page_state(parent, a));
        (void)before;
        pl_exit(child);
        pl_exit(parent);
        if (f) pl_file_put(f);
    }

    std::printf("devices:\n");
    for (const char* dev : {"pfnmap", "mixedmap"}) {
        task_struct* t = pl_task_new(k);
        pl_file* d = pl_dev_open(k, dev);
        long addr = pl_mmap(t, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, d, 0);
        auto a = static_cast<unsigned long>(addr);
        mmap_read_lock(pl_task_mm(t));
        unsigned long flags = pl_vma_flags(vma_lookup(pl_task_mm(t), a));
        mmap_read_unlock(pl_task_mm(t));
        bool pfnmap = std::strcmp(dev, "pfnmap") == 0;
        bool has_page = pl_virt_to_page(t, a) != nullptr;
        std::string desc = std::string(flags & VM_PFNMAP ? "VM_PFNMAP " : "") + (flags & VM_IO ? "VM_IO " : "") +
                           (flags & VM_MIXEDMAP ? "VM_MIXEDMAP " : "") + "pte: " + pl_pte_describe(t, a);
        row(std::string(dev) + (pfnmap ? ": no struct page for GUP" : ": normal pages GUP can reach"),
            has_page != pfnmap, desc);
        pl_exit(t);
        pl_file_put(d);
    }

    int check = pl_kernel_check(k);
    std::printf("\ninvariants: %s\n", check == 0 ? "all hold" : pl_last_error());
    ++(check ? failures : passes);
    std::printf("nr_foll_pin_acquired %lu, nr_foll_pin_released %lu, pgfault %lu, cow_copies %lu\n",
                pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"), pl_vmstat(k, "pgfault"),
                pl_vmstat(k, "cow_copies"));
    pl_kernel_free(k);
    std::printf("%d passed, %d failed\n", passes, failures);
    return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"pinlab: an executable model of Linux's page pinning (GUP) subsystem"};
    app.require_subcommand(0, 1);
    std::string config;
    app.add_option("--config", config, "Kernel configuration: space-separated key=value words (see config-keys)");
    app.add_subcommand("demo", "Walk through fork and copy-on-write over every backing (the default)");
    auto* keys_cmd = app.add_subcommand("config-keys", "List the kernel configuration keys with their defaults");
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        // Bad command lines exit with 2, like every other bad input.
        std::fprintf(stderr, "pinlab: %s\nRun 'pinlab --help' for usage.\n", e.what());
        return 2;
    }
    if (keys_cmd->parsed()) {
        for (const std::string& line : pl::Config::describe_keys()) std::printf("%s\n", line.c_str());
        return 0;
    }
    return demo(config);
}
