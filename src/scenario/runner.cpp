#include "scenario/runner.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "scenario/matrix.h"
#include "scenario/parser.h"

namespace pl::scenario {
namespace {

ScenarioResult error_result(const std::string& name, const std::string& file, const Diagnostic& d) {
    ScenarioResult r;
    r.name = name;
    r.file = file;
    r.verdict = Verdict::Error;
    r.reason = d.loc.line > 0 ? std::to_string(d.loc.line) + ":" + std::to_string(d.loc.col) + ": " + d.message
                              : d.message;
    r.detail = d.format();
    return r;
}

void run_file(const std::string& path, const RunOptions& opts, RunSummary* out) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) {
        out->add(error_result(path, path, Diagnostic{path, {}, "cannot read: " + ec.message(), ""}));
        return;
    }
    if (size > kMaxFileBytes) {
        out->add(error_result(path, path,
                              Diagnostic{path, {}, "file too large (at most " + std::to_string(kMaxFileBytes) + " bytes)", ""}));
        return;
    }
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in && !in.eof()) {
        out->add(error_result(path, path, Diagnostic{path, {}, "cannot read", ""}));
        return;
    }
    run_text(path, text.str(), opts, out);
}

}  // namespace

void RunSummary::add(ScenarioResult r) {
    switch (r.verdict) {
        case Verdict::Pass: ++passed; break;
        case Verdict::Fail: ++failed; break;
        case Verdict::Skip: ++skipped; break;
        case Verdict::Error: ++errors; break;
    }
    results.push_back(std::move(r));
}

int RunSummary::exit_status() const { return errors ? 2 : failed ? 1 : 0; }

void run_text(const std::string& file, const std::string& text, const RunOptions& opts, RunSummary* out) {
    if (text.size() > kMaxFileBytes) {
        out->add(error_result(file, file, Diagnostic{file, {}, "input too large", ""}));
        return;
    }
    std::vector<Expansion> expansions;
    Diagnostic d;
    if (!expand_matrix(file, split_lines(text), &expansions, &d)) {
        out->add(error_result(file, file, d));
        return;
    }
    // Parse every expansion before running any: bad input is reported as
    // such, not after half the matrix ran.
    std::vector<Scenario> scenarios(expansions.size());
    for (size_t i = 0; i < expansions.size(); ++i) {
        const std::string name = file + expansions[i].suffix;
        if (!parse_scenario(file, name, expansions[i].lines, &scenarios[i], &d)) {
            out->add(error_result(name, file, d));
            return;
        }
    }
    for (const Scenario& s : scenarios) {
        const auto t0 = std::chrono::steady_clock::now();
        Outcome o = run_scenario(s, opts.extra_config);
        ScenarioResult r;
        r.name = s.name;
        r.file = file;
        r.title = s.title;
        r.verdict = o.verdict;
        r.reason = o.reason;
        if (o.verdict == Verdict::Fail || o.verdict == Verdict::Error) {
            r.detail = o.diag.format();
            if (o.diag.loc.line > 0)
                r.reason = std::to_string(o.diag.loc.line) + ":" + std::to_string(o.diag.loc.col) + ": " + o.reason;
        }
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        out->add(std::move(r));
    }
}

bool pin_files_below(const std::string& dir, std::vector<std::string>* files, std::error_code* ec) {
    for (auto it = std::filesystem::recursive_directory_iterator(dir, *ec);
         !*ec && it != std::filesystem::recursive_directory_iterator(); it.increment(*ec)) {
        // A `known/` subdirectory holds scenarios that expect the real kernel where the
        // model disagrees (examples/conform/known): run only when named explicitly.
        if (it->is_directory(*ec) && it->path().filename() == "known") {
            it.disable_recursion_pending();
            continue;
        }
        if (it->is_regular_file(*ec) && it->path().extension() == ".pin") files->push_back(it->path().string());
    }
    std::sort(files->begin(), files->end());
    return !*ec;
}

void run_paths(const std::vector<std::string>& paths, const RunOptions& opts, RunSummary* out) {
    for (const std::string& p : paths) {
        std::error_code ec;
        if (std::filesystem::is_directory(p, ec)) {
            std::vector<std::string> files;
            if (!pin_files_below(p, &files, &ec)) {
                out->add(error_result(p, p, Diagnostic{p, {}, "cannot list: " + ec.message(), ""}));
                continue;
            }
            if (files.empty()) out->add(error_result(p, p, Diagnostic{p, {}, "no *.pin scenarios in this directory", ""}));
            for (const std::string& f : files) run_file(f, opts, out);
        } else if (std::filesystem::exists(p, ec)) {
            run_file(p, opts, out);
        } else {
            out->add(error_result(p, p, Diagnostic{p, {}, "no such file or directory", ""}));
        }
    }
}

}  // namespace pl::scenario
