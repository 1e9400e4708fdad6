#include "scenario/report.h"

#include <algorithm>

namespace pl::scenario {
namespace {

std::string indent(const std::string& text, const std::string& prefix) {
    std::string out;
    size_t start = 0;
    while (start <= text.size()) {
        size_t nl = text.find('\n', start);
        if (nl == std::string::npos) nl = text.size();
        out += prefix + text.substr(start, nl - start) + "\n";
        start = nl + 1;
    }
    return out;
}

// One line for TAP's "# reason": no newlines, no '#' confusion.
std::string one_line(std::string s) {
    std::replace(s.begin(), s.end(), '\n', ' ');
    return s;
}

}  // namespace

std::string format_text(const RunSummary& run, Colour colour) {
    std::string out;
    size_t width = 0;
    for (const ScenarioResult& r : run.results) width = std::max(width, r.name.size());
    width = std::min<size_t>(width, 60);
    for (const ScenarioResult& r : run.results) {
        const char* col = "";
        switch (r.verdict) {
            case Verdict::Pass: col = "\033[32m"; break;
            case Verdict::Fail: col = "\033[31m"; break;
            case Verdict::Skip: col = "\033[33m"; break;
            case Verdict::Error: col = "\033[1;31m"; break;
        }
        std::string v(verdict_name(r.verdict));
        v.resize(5, ' ');
        out += colour == Colour::on ? std::string(col) + v + "\033[0m" : v;
        std::string name = r.name;
        const bool more = r.verdict == Verdict::Skip || (r.verdict == Verdict::Pass && !r.title.empty()) ||
                          r.detail.find('\n') == std::string::npos;
        if (more && name.size() < width) name.resize(width, ' ');
        out += " " + name;
        if (r.verdict == Verdict::Pass) {
            if (!r.title.empty()) out += "  " + r.title;
        } else if (r.verdict == Verdict::Skip) {
            out += "  skipped: " + r.reason;
        } else if (!r.detail.empty() && r.detail.find('\n') != std::string::npos) {
            out += "\n" + indent(r.detail, "      ");
            out.pop_back();
        } else {
            out += "  " + r.reason;  // unlocated: the name is already there
        }
        out += "\n";
    }
    out += std::to_string(run.passed) + " passed, " + std::to_string(run.failed) + " failed, " +
           std::to_string(run.skipped) + " skipped, " + std::to_string(run.errors) + " errors\n";
    return out;
}

std::string format_tap(const RunSummary& run) {
    std::string out = "TAP version 13\n1.." + std::to_string(run.results.size()) + "\n";
    int n = 0;
    for (const ScenarioResult& r : run.results) {
        ++n;
        const std::string num = std::to_string(n);
        switch (r.verdict) {
            case Verdict::Pass: out += "ok " + num + " " + r.name + "\n"; break;
            case Verdict::Skip: out += "ok " + num + " " + r.name + " # SKIP " + one_line(r.reason) + "\n"; break;
            case Verdict::Fail:
            case Verdict::Error:
                if (!r.detail.empty()) out += indent(r.detail, "# ");
                out += "not ok " + num + " " + r.name + " # " + (r.verdict == Verdict::Error ? "error: " : "") +
                       one_line(r.reason) + "\n";
                break;
        }
    }
    out += "# Totals: pass:" + std::to_string(run.passed) + " fail:" + std::to_string(run.failed) +
           " xfail:0 xpass:0 skip:" + std::to_string(run.skipped) + " error:" + std::to_string(run.errors) + "\n";
    return out;
}

}  // namespace pl::scenario
