// pinlab — the command-line entry point.
//
// `pinlab run [FILE|DIR ...]` (the main job; also what `pinlab` with no
// subcommand runs) runs scenarios (.pin files, docs/SCENARIOS.md) and reports
// each: exit 0 when all pass, 1 when an expectation failed, 2 on bad input.
// With no argument it runs the built-in corpus (examples/tutorial, seeds and
// selftests) of the source tree this binary was built from
// (PINLAB_EXAMPLES_DIR, a compile definition).
//
// `pinlab demo` boots a simulated kernel and walks through fork and
// copy-on-write over every backing the substrate models, printing what each
// process sees and the state of its pages.
#include <CLI/CLI.hpp>

#include "bench_cmd.h"
#include "conform_cmd.h"
#include "explore_cmd.h"
#include "json_text.h"
#include "manpage.h"
#ifdef PINLAB_HAVE_NLOHMANN_JSON
#include <nlohmann/json.hpp>
#endif
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "base/config.h"
#include "pinlab/kapi.h"
#include "scenario/explain.h"
#include "scenario/report.h"
#include "scenario/runner.h"

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

#ifndef PINLAB_EXAMPLES_DIR
#define PINLAB_EXAMPLES_DIR "examples"
#endif

#ifndef PINLAB_HAVE_NLOHMANN_JSON
using pl::tools::json_escape;
#endif

std::string format_json(const pl::scenario::RunSummary& run) {
    using pl::scenario::verdict_name;
#ifdef PINLAB_HAVE_NLOHMANN_JSON
    nlohmann::ordered_json j;
    j["scenarios"] = nlohmann::ordered_json::array();
    for (const auto& r : run.results) {
        // Scenario text may hold any bytes: replace invalid UTF-8 on output.
        j["scenarios"].push_back({{"name", r.name},
                                  {"file", r.file},
                                  {"title", r.title},
                                  {"status", std::string(verdict_name(r.verdict))},
                                  {"reason", r.reason},
                                  {"detail", r.detail},
                                  {"seconds", r.seconds}});
    }
    j["summary"] = {{"passed", run.passed}, {"failed", run.failed}, {"skipped", run.skipped},
                    {"errors", run.errors}, {"exit_status", run.exit_status()}};
    return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
#else
    std::string out = "{\n  \"scenarios\": [";
    bool first = true;
    for (const auto& r : run.results) {
        out += std::string(first ? "" : ",") + "\n    {\"name\": \"" + json_escape(r.name) + "\", \"file\": \"" +
               json_escape(r.file) + "\", \"title\": \"" + json_escape(r.title) + "\", \"status\": \"" +
               std::string(verdict_name(r.verdict)) + "\", \"reason\": \"" + json_escape(r.reason) +
               "\", \"detail\": \"" + json_escape(r.detail) + "\", \"seconds\": " + std::to_string(r.seconds) + "}";
        first = false;
    }
    out += "\n  ],\n  \"summary\": {\"passed\": " + std::to_string(run.passed) + ", \"failed\": " +
           std::to_string(run.failed) + ", \"skipped\": " + std::to_string(run.skipped) + ", \"errors\": " +
           std::to_string(run.errors) + ", \"exit_status\": " + std::to_string(run.exit_status()) + "}\n}\n";
    return out;
#endif
}

struct RunArgs {
    std::vector<std::string> paths;
    std::string format = "text";
    std::vector<std::string> config;
    std::string era;
};

int run_scenarios(const RunArgs& args) {
    pl::scenario::RunOptions opts;
    for (const std::string& c : args.config) opts.extra_config += (opts.extra_config.empty() ? "" : " ") + c;
    if (!args.era.empty()) opts.extra_config += (opts.extra_config.empty() ? "" : " ") + ("era=" + args.era);
    if (!opts.extra_config.empty()) {
        auto parsed = pl::Config::parse(opts.extra_config);
        if (!parsed.ok()) {
            std::fprintf(stderr, "pinlab run: %s\n", pl::Config::last_error().c_str());
            return 2;
        }
    }
    std::vector<std::string> paths = args.paths;
    if (paths.empty()) {
        // The built-in corpus: the tutorial, the seed threads' questions and
        // the kernel's selftests. Shown relative to the working directory
        // when that is shorter (run from the source tree: examples/...).
        for (const char* sub : {"tutorial", "seeds", "selftests"}) {
            std::string dir = std::string(PINLAB_EXAMPLES_DIR) + "/" + sub;
            std::error_code ec;
            const std::string rel = std::filesystem::relative(dir, ec).string();
            if (!ec && !rel.empty() && rel.rfind("..", 0) != 0) dir = rel;
            paths.push_back(dir);
        }
    }
    pl::scenario::RunSummary run;
    pl::scenario::run_paths(paths, opts, &run);
    std::string out;
    if (args.format == "json") out = format_json(run);
    else if (args.format == "tap") out = pl::scenario::format_tap(run);
    else
        out = pl::scenario::format_text(run, isatty(STDOUT_FILENO) ? pl::scenario::Colour::on : pl::scenario::Colour::off);
    std::fwrite(out.data(), 1, out.size(), stdout);
    return run.exit_status();
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"pinlab: an executable model of Linux's page pinning (GUP) subsystem"};
    app.require_subcommand(0, 1);
    bool man = false;
    // The man page comes from these same definitions (tools/manpage.cpp);
    // the build writes it to pinlab.1.
    app.add_flag("--man", man, "Print the man page (troff) and exit")->group("");
    std::string config;
    app.add_option("--config", config, "Kernel configuration: space-separated key=value words (see config-keys)");
    auto* demo_cmd = app.add_subcommand("demo", "Walk through fork and copy-on-write over every backing");
    auto* keys_cmd = app.add_subcommand("config-keys", "List the kernel configuration keys with their defaults");
    RunArgs run_args;
    auto* run_cmd = app.add_subcommand("run", "Run scenarios (.pin files; directories are searched for *.pin)");
    run_cmd->add_option("paths", run_args.paths,
                        "Scenario files and directories (default: the built-in corpus, examples/tutorial, "
                        "examples/seeds and examples/selftests)");
    run_cmd->add_option("--format", run_args.format, "Output format")
        ->check(CLI::IsMember({"text", "json", "tap"}));
    run_cmd->add_option("--config", run_args.config,
                        "key=value words applied after each scenario's own config (repeatable)")
        ->allow_extra_args(false);
    run_cmd->add_option("--era", run_args.era, "Kernel era for every scenario (as --config era=E)");
    pl::tools::BenchCommand bench(app);  // pinlab bench (tools/bench_cmd.cpp)
    pl::tools::ConformCommand conform(app);  // pinlab conform (tools/conform_cmd.cpp)
    pl::tools::ExploreCommand explore(app);  // pinlab explore (tools/explore_cmd.cpp)
    std::string explain_target, explain_colour = "auto", explain_era;
    std::vector<std::string> explain_config;
    auto* explain_cmd = app.add_subcommand("explain", "Run one scenario and tell the story of each step (or of the step at LINE)");
    explain_cmd->add_option("target", explain_target, "FILE or FILE:LINE")->required();
    explain_cmd->add_option("--color", explain_colour, "Colour: auto (on a terminal), always, never")
        ->check(CLI::IsMember({"auto", "always", "never"}));
    explain_cmd->add_option("--config", explain_config, "key=value words applied after the scenario's own config")
        ->allow_extra_args(false);
    explain_cmd->add_option("--era", explain_era, "Kernel era (as --config era=E)");
    std::string explain_html;
    explain_cmd->add_option("--html", explain_html,
                            "Also write a self-contained HTML page (VMAs, page tables, frames per step, a step slider) to this file");
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        // Bad command lines exit with 2, like every other bad input.
        std::fprintf(stderr, "pinlab: %s\nRun 'pinlab --help' for usage.\n", e.what());
        return 2;
    }
    if (man) {
        std::fputs(pl::tools::render_manpage(app, PINLAB_VERSION).c_str(), stdout);
        return 0;
    }
    if (keys_cmd->parsed()) {
        for (const std::string& line : pl::Config::describe_keys()) std::printf("%s\n", line.c_str());
        return 0;
    }
    if (run_cmd->parsed()) return run_scenarios(run_args);
    if (bench.parsed()) return bench.run(config);
    if (conform.parsed()) return conform.run();
    if (explore.parsed()) return explore.run();
    if (explain_cmd->parsed()) {
        pl::scenario::ExplainOptions o;
        for (const std::string& c : explain_config) o.extra_config += (o.extra_config.empty() ? "" : " ") + c;
        if (!explain_era.empty()) o.extra_config += (o.extra_config.empty() ? "" : " ") + ("era=" + explain_era);
        if (!o.extra_config.empty() && !pl::Config::parse(o.extra_config).ok()) {
            std::fprintf(stderr, "pinlab explain: %s\n", pl::Config::last_error().c_str());
            return 2;
        }
        const bool tty = isatty(STDOUT_FILENO);
        o.colour = explain_colour == "always" || (explain_colour == "auto" && tty) ? pl::scenario::Colour::on
                                                                                  : pl::scenario::Colour::off;
        o.snapshots = !explain_html.empty();
        const pl::scenario::ExplainResult r = pl::scenario::explain_path(explain_target, o);
        std::fwrite(r.text.data(), 1, r.text.size(), stdout);
        std::fwrite(r.error.data(), 1, r.error.size(), stderr);
        if (!explain_html.empty() && !r.scenarios.empty()) {
            std::ofstream html(explain_html, std::ios::binary | std::ios::trunc);
            html << pl::scenario::format_html(r);
            if (!html.flush()) {
                std::fprintf(stderr, "pinlab explain: cannot write %s\n", explain_html.c_str());
                return 2;
            }
        }
        return r.exit_status;
    }
    if (demo_cmd->parsed()) return demo(config);
    // No subcommand: the main job, the built-in corpus.
    RunArgs corpus;
    if (!config.empty()) corpus.config.push_back(config);
    return run_scenarios(corpus);
}
