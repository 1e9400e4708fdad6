// pinlab bench — tools/testing/selftests/mm/gup_test's command line and
// output, run against a booted model kernel, and optionally side by side with
// the host kernel's own pinning (--compare-kernel). docs/PERFORMANCE.md.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace pl::tools {

// gup_test's ioctl commands (mm/gup_test.h).
enum class GupTestCmd {
    gup_fast_benchmark,      // -u get_user_pages_fast + put_page
    pin_fast_benchmark,      // -a pin_user_pages_fast + unpin_user_pages
    pin_longterm_benchmark,  // -L pin_user_pages(FOLL_LONGTERM) under mmap_read_lock
    gup_basic_test,          // -U get_user_pages under mmap_read_lock
    pin_basic_test,          // -b pin_user_pages under mmap_read_lock
    dump_user_pages_test,    // -c get (or, with -p, pin) and dump pages
};

struct BenchOptions {
    bool u = false, a = false, L = false, U = false, b = false, c = false, p = false;
    std::string foll_flags = "0";  // -F, strtol base 0 as gup_test
    long mib = 128;                // -m (gup_test's default size)
    long nr_pages = 1;             // -n, negative: the whole size per call
    int repeats = 1;               // -r
    int threads = 1;               // -j
    bool stagger = false;          // --stagger: threads start at i/j of the range
    bool thp_on = false, thp_off = false;  // -t / -T
    bool write = false, no_write = false;  // -w / -W (write is the default)
    bool shared = false;                   // -S
    bool hugetlb = false;                  // -H
    std::string file;                      // -f: a model file system name
    std::vector<long> dump_pages;          // -c's page indices
    bool compare_kernel = false;
    std::string kernel_door = "auto";  // auto | io_uring | odirect
    std::string format = "text";
    std::vector<std::string> config;
    bool no_progress = false;
};

// Adds the `bench` subcommand to app; run() it when parsed().
class BenchCommand {
public:
    explicit BenchCommand(CLI::App& app);
    bool parsed() const { return cmd_->parsed(); }
    // global_config: the top-level --config words, applied before bench's own.
    int run(const std::string& global_config) const;

private:
    CLI::App* cmd_;
    BenchOptions opt_;
};

}  // namespace pl::tools
