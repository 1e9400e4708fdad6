// pinlab conform — see conform_cmd.h and docs/CONFORMANCE.md.
#include "conform_cmd.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "base/config.h"
#include "json_text.h"
#include "oracle/conform.h"
#include "oracle/conform_random.h"
#include "scenario/runner.h"

namespace pl::tools {

namespace {

using oracle::ConformResult;
using oracle::ConformStatus;

struct Tally {
    std::map<ConformStatus, int> n;
    long observations = 0;
    int unstable = 0;  // agreed, but an earlier run differed
    int total() const {
        int t = 0;
        for (auto& [k, v] : n) t += v;
        return t;
    }
    int of(ConformStatus s) const {
        auto it = n.find(s);
        return it == n.end() ? 0 : it->second;
    }
};

// *.pin files under each path, in name order; false with a message for a
// path that does not exist.
bool collect(const std::vector<std::string>& paths, std::vector<std::string>* files, std::string* err) {
    for (const std::string& p : paths) {
        std::error_code ec;
        if (std::filesystem::is_directory(p, ec)) {
            std::vector<std::string> found;
            if (!scenario::pin_files_below(p, &found, &ec)) {
                *err = "pinlab conform: " + p + ": cannot list: " + ec.message();
                return false;
            }
            files->insert(files->end(), found.begin(), found.end());
        } else if (std::filesystem::is_regular_file(p, ec)) {
            files->push_back(p);
        } else {
            *err = "pinlab conform: " + p + ": no such file or directory";
            return false;
        }
    }
    return true;
}

bool read_file(const std::string& path, std::string* text) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    std::ostringstream ss;
    ss << in.rdbuf();
    *text = ss.str();
    return text->size() <= scenario::kMaxFileBytes;
}

std::string host_line(const oracle::HostCaps& c) {
    std::string s = "Linux " + c.kernel + " (" + (c.root ? "root" : "not root") + ", io_uring " +
                    (c.io_uring ? "on" : "off") + ", THP " + (c.thp ? "yes" : "no") + ", hugetlb 2M " +
                    (c.hugetlb_2m ? "yes" : "no") + ", 1G " + (c.hugetlb_1g ? "yes" : "no");
    for (const auto& [fs, dir] : c.fs_dirs) s += "; " + fs + " " + dir;
    for (const auto& [dev, what] : c.devices) s += "; " + dev + ": " + what;
    return s + ")";
}

const char* colour_of(ConformStatus s) {
    switch (s) {
        case ConformStatus::agree: return "\033[32m";
        case ConformStatus::disagree:
        case ConformStatus::model_fail:
        case ConformStatus::error: return "\033[31m";
        default: return "\033[33m";
    }
}

void print_text(const ConformResult& r, bool tty) {
    const std::string st(oracle::conform_status_name(r.status));
    std::string line = (tty ? std::string(colour_of(r.status)) : "") + st + (tty ? "\033[0m" : "");
    line += std::string(st.size() < 11 ? 11 - st.size() : 1, ' ') + r.name;
    if (r.status == ConformStatus::agree) {
        line += "  (" + std::to_string(r.compared) + " compared, " + std::to_string(r.model_only_checks) + " model-only)";
        if (r.kernel_outcome != "PASS") line += "  kernel " + r.kernel_outcome;
    } else if (!r.reason.empty()) {
        line += "\n           " + r.reason;
    }
    if (r.status == ConformStatus::disagree && !r.source_line.empty())
        line += "\n           | " + r.source_line;
    if (!r.unstable.empty())
        line += "\n           (unstable on the host: an earlier run differed: " + r.unstable + ")";
    else if (r.attempts > 1)
        line += "\n           (the same in " + std::to_string(r.attempts) + " runs)";
    std::printf("%s\n", line.c_str());
}

std::string json_result(const ConformResult& r) {
    return "{\"name\": " + json_quote(r.name) + ", \"file\": " + json_quote(r.file) + ", \"title\": " +
           json_quote(r.title) + ", \"status\": " + json_quote(std::string(oracle::conform_status_name(r.status))) +
           ", \"reason\": " + json_quote(r.reason) + ", \"line\": " + std::to_string(r.first_difference.loc.line) +
           ", \"model\": " + json_quote(r.first_difference.model) + ", \"kernel\": " +
           json_quote(r.first_difference.kernel) + ", \"model_verdict\": " +
           json_quote(std::string(scenario::verdict_name(r.model_verdict))) + ", \"kernel_outcome\": " +
           json_quote(r.kernel_outcome) + ", \"unstable\": " + json_quote(r.unstable) + ", \"compared\": " + std::to_string(r.compared) +
           ", \"model_only_checks\": " + std::to_string(r.model_only_checks) + ", \"attempts\": " +
           std::to_string(r.attempts) + ", \"seconds\": " + std::to_string(r.seconds) + "}";
}

std::string md_cell(std::string s) {
    for (char& c : s)
        if (c == '|' || c == '\n') c = ' ';
    if (s.size() > 160) s = s.substr(0, 157) + "...";
    return s;
}

}  // namespace

ConformCommand::ConformCommand(CLI::App& app) {
    cmd_ = app.add_subcommand("conform",
                              "Run scenarios in the model and on the host kernel, step by step, and compare them");
    cmd_->add_option("paths", args_.paths,
                     "Scenario files and directories (default: examples/selftests and examples/conform)");
    cmd_->add_option("--format", args_.format, "Output format (markdown: the table of docs/CONFORMANCE.md)")
        ->check(CLI::IsMember({"text", "json", "markdown"}));
    cmd_->add_option("--config", args_.config, "key=value words applied after each scenario's own config (repeatable)")
        ->allow_extra_args(false);
    cmd_->add_option("--era", args_.era, "Kernel era (as --config era=E; any era but current is model-only)");
    cmd_->add_option("--fs", args_.fs, "A directory on a file system type for host files: TYPE=DIR (repeatable)")
        ->allow_extra_args(false);
    cmd_->add_option("--random", args_.random, "Generate and compare N random scenarios instead of files")
        ->check(CLI::Range(1L, 1000000L));
    cmd_->add_option("--seed", args_.seed, "Seed of --random (scenario i of seed S is always the same)");
    cmd_->add_option("--out", args_.out_dir, "Where --random writes each shrunk disagreement as a .pin file");
    cmd_->add_option("--shrink-tries", args_.shrink_tries, "Runs the shrinker may spend per disagreement")
        ->check(CLI::Range(0, 100000));
}

int ConformCommand::run() const {
    oracle::ConformOptions opts;
    for (const std::string& c : args_.config) opts.extra_config += (opts.extra_config.empty() ? "" : " ") + c;
    if (!args_.era.empty()) opts.extra_config += (opts.extra_config.empty() ? "" : " ") + ("era=" + args_.era);
    if (!opts.extra_config.empty() && !Config::parse(opts.extra_config).ok()) {
        std::fprintf(stderr, "pinlab conform: %s\n", Config::last_error().c_str());
        return 2;
    }
    std::map<std::string, std::string> fs_dirs;
    for (const std::string& f : args_.fs) {
        const auto eq = f.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == f.size()) {
            std::fprintf(stderr, "pinlab conform: --fs %s: expected TYPE=DIR\n", f.c_str());
            return 2;
        }
        std::error_code ec;
        if (!std::filesystem::is_directory(f.substr(eq + 1), ec)) {
            std::fprintf(stderr, "pinlab conform: --fs %s: %s is not a directory\n", f.c_str(), f.substr(eq + 1).c_str());
            return 2;
        }
        fs_dirs[f.substr(0, eq)] = f.substr(eq + 1);
    }
    std::vector<std::string> files;
    if (args_.random == 0) {
        std::vector<std::string> paths = args_.paths;
        if (paths.empty())
            for (const char* sub : {"selftests", "conform"}) {
                std::string dir = std::string(PINLAB_EXAMPLES_DIR) + "/" + sub;
                std::error_code ec;
                const std::string rel = std::filesystem::relative(dir, ec).string();
                if (!ec && !rel.empty() && rel.rfind("..", 0) != 0) dir = rel;
                paths.push_back(dir);
            }
        std::string err;
        if (!collect(paths, &files, &err)) {
            std::fprintf(stderr, "%s\n", err.c_str());
            return 2;
        }
    }

    // Forked now, while this process is small: every host task comes from it.
    auto session = oracle::HostSession::create(fs_dirs);
    if (!session.ok()) {
        std::fprintf(stderr, "pinlab conform: cannot start the host side: %s\n", std::string(errno_name(session.error().errnum)).c_str());
        return 2;
    }
    oracle::HostSession& host = *session.value();
    if (auto st = host.acquire_host(); !st.ok())
        std::fprintf(stderr, "pinlab conform: warning: cannot lock the host for this run; counters may move\n");

    const bool tty = args_.format == "text" && isatty(STDOUT_FILENO);
    std::vector<ConformResult> results;
    Tally tally;
    bool bad_input = false;
    auto take = [&](ConformResult r) {
        tally.n[r.status]++;
        tally.observations += r.compared;
        if (!r.unstable.empty()) ++tally.unstable;
        if (r.status == ConformStatus::error && r.model_verdict == scenario::Verdict::Error) bad_input = true;
        if (args_.format == "text") {
            print_text(r, tty);
            std::fflush(stdout);
        }
        results.push_back(std::move(r));
    };

    if (args_.random > 0) {
        for (long i = 0; i < args_.random; ++i) {
            const std::string name = "random-" + std::to_string(args_.seed) + "-" + std::to_string(i);
            std::string text = oracle::random_scenario(args_.seed, static_cast<uint64_t>(i));
            // Without CONFIG_MEM_SOFT_DIRTY on the host, `clear_refs 4` would
            // make the scenario model-only from there: leave it out.
            if (!host.caps().soft_dirty) {
                std::string kept;
                std::istringstream in(text);
                for (std::string line; std::getline(in, line);)
                    if (line.find("clear_refs 4") == std::string::npos) kept += line + "\n";
                text = kept;
            }
            auto rs = oracle::conform_text(name + ".pin", text, host, opts);
            for (auto& r : rs) {
                if (r.status == ConformStatus::disagree) {
                    // Shrink to the smallest scenario that still disagrees.
                    // Only a difference of the same kind counts: a shrink
                    // must not drift to another failure on the way.
                    auto kind = [](const std::string& what) {
                        std::istringstream in(what);
                        std::string first, word, last;
                        in >> first;
                        while (in >> word) last = word;
                        return first == "page" ? first + " " + last : first;
                    };
                    const std::string want = kind(r.first_difference.what);
                    auto still = [&](const std::string& t) {
                        auto again = oracle::conform_text(name + ".pin", t, host, opts);
                        return !again.empty() && again[0].status == ConformStatus::disagree &&
                               kind(again[0].first_difference.what) == want;
                    };
                    int used = 0;
                    const std::string small = oracle::shrink_scenario(text, still, args_.shrink_tries, &used);
                    const std::string path = args_.out_dir + "/disagreement-" + std::to_string(args_.seed) + "-" +
                                             std::to_string(i) + ".pin";
                    std::ofstream out(path, std::ios::binary | std::ios::trunc);
                    out << "# pinlab conform --random: seed " << args_.seed << ", scenario " << i << ", kernel "
                        << host.caps().kernel << "\n# first difference: " << r.reason << "\n# shrunk in " << used
                        << " runs from " << std::count(text.begin(), text.end(), '\n') << " lines\n"
                        << small;
                    if (out.flush()) r.reason += "\n           shrunk to " + path;
                    else r.reason += "\n           (cannot write " + path + ")";
                }
                take(std::move(r));
            }
        }
    } else {
        for (const std::string& f : files) {
            std::string text;
            if (!read_file(f, &text)) {
                std::fprintf(stderr, "pinlab conform: %s: cannot read (or larger than 4 MiB)\n", f.c_str());
                bad_input = true;
                continue;
            }
            for (auto& r : oracle::conform_text(f, text, host, opts)) take(std::move(r));
        }
    }
    host.restore_knobs();
    host.release_host();

    const int agree = tally.of(ConformStatus::agree), disagree = tally.of(ConformStatus::disagree);
    const int both = agree + disagree;
    char rate[32] = "-";
    if (both) std::snprintf(rate, sizeof rate, "%.1f%%", 100.0 * agree / both);
    const std::string kernel = host_line(host.caps());
    int status = 0;
    if (disagree || tally.of(ConformStatus::model_fail)) status = 1;
    if (bad_input) status = 2;

    if (args_.format == "text") {
        std::printf("\nconform: %d scenarios: %d agree, %d disagree, %d model-only, %d skipped, %d model-fail, %d error\n",
                    tally.total(), agree, disagree, tally.of(ConformStatus::model_only),
                    tally.of(ConformStatus::skipped), tally.of(ConformStatus::model_fail),
                    tally.of(ConformStatus::error));
        std::printf("agreement: %s of %d scenarios run on both sides (%ld observations compared)\n", rate, both,
                    tally.observations);
        if (tally.unstable)
            std::printf("unstable: %d scenario(s) differed in one run and agreed when run again\n", tally.unstable);
        std::printf("kernel: %s\n", kernel.c_str());
    } else if (args_.format == "json") {
        std::string out = "{\n  \"kernel\": " + json_quote(host.caps().kernel) + ",\n  \"host\": " + json_quote(kernel) +
                          ",\n  \"scenarios\": [";
        bool first = true;
        for (const auto& r : results) {
            out += std::string(first ? "" : ",") + "\n    " + json_result(r);
            first = false;
        }
        out += "\n  ],\n  \"summary\": {\"total\": " + std::to_string(tally.total()) + ", \"agree\": " +
               std::to_string(agree) + ", \"disagree\": " + std::to_string(disagree) + ", \"model_only\": " +
               std::to_string(tally.of(ConformStatus::model_only)) + ", \"skipped\": " +
               std::to_string(tally.of(ConformStatus::skipped)) + ", \"model_fail\": " +
               std::to_string(tally.of(ConformStatus::model_fail)) + ", \"error\": " +
               std::to_string(tally.of(ConformStatus::error)) + ", \"agreement\": " +
               (both ? std::to_string(static_cast<double>(agree) / both) : std::string("null")) +
               ", \"observations\": " + std::to_string(tally.observations) + ", \"exit_status\": " +
               std::to_string(status) + "}\n}\n";
        std::fputs(out.c_str(), stdout);
    } else {
        std::printf("| case | model | kernel | result |\n|---|---|---|---|\n");
        for (const auto& r : results) {
            std::string model(scenario::verdict_name(r.model_verdict));
            if (r.model_verdict != scenario::Verdict::Pass && !r.model_reason.empty()) model += ": " + r.model_reason;
            std::string result(oracle::conform_status_name(r.status));
            if (r.status == ConformStatus::agree) result += " (" + std::to_string(r.compared) + " compared)";
            else if (!r.reason.empty()) result += ": " + r.reason;
            std::printf("| %s | %s | %s | %s |\n", md_cell(r.name).c_str(), md_cell(model).c_str(),
                        md_cell(r.kernel_outcome).c_str(), md_cell(result).c_str());
        }
        std::printf("\n**%d scenarios: %d agree, %d disagree, %d model-only, %d skipped, %d model-fail, %d error. "
                    "Agreement: %s of %d run on both sides (%ld observations compared).**\n\nKernel: %s\n",
                    tally.total(), agree, disagree, tally.of(ConformStatus::model_only),
                    tally.of(ConformStatus::skipped), tally.of(ConformStatus::model_fail),
                    tally.of(ConformStatus::error), rate, both, tally.observations, kernel.c_str());
    }
    return status;
}

}  // namespace pl::tools
