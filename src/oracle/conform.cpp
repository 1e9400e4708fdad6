// pinlab conform — one scenario on both sides (conform.h).
#include "oracle/conform.h"

#include <chrono>
#include <sstream>

#include "base/config.h"
#include "oracle/conform_host_side.h"
#include "scenario/matrix.h"
#include "scenario/parser.h"

namespace pl::oracle {

using scenario::Scenario;
using scenario::Verdict;

std::string_view conform_status_name(ConformStatus s) {
    switch (s) {
        case ConformStatus::agree: return "agree";
        case ConformStatus::disagree: return "disagree";
        case ConformStatus::model_only: return "model-only";
        case ConformStatus::skipped: return "skipped";
        case ConformStatus::model_fail: return "model-fail";
        case ConformStatus::error: return "error";
    }
    return "?";
}

namespace {

// What a scenario's configuration asks of the host: the knobs it maps to,
// or why it has no host counterpart.
struct HostPlan {
    HostKnobs knobs;             // THP mode and zero page: set for the scenario
    unsigned long hugetlb_2m = 64, hugetlb_1g = 1;  // the model's defaults (pinlab config-keys)
    std::string model_only;      // non-empty: the reason
};

HostPlan plan_for(const std::string& config) {
    HostPlan plan;
    plan.knobs.thp = "always";  // the model's defaults
    plan.knobs.thp_use_zero_page = true;
    std::istringstream in(config);
    std::string word;
    while (in >> word) {
        const auto eq = word.find('=');
        if (eq == std::string::npos) continue;
        const std::string key = word.substr(0, eq), val = word.substr(eq + 1);
        auto onoff = [&](bool on) { return val == (on ? "on" : "off") || val == (on ? "1" : "0") || val == (on ? "true" : "false"); };
        if (key == "era") {
            if (val != "current") plan.model_only = "era " + val + " (the host runs one kernel: its own)";
        } else if (key == "thp") {
            plan.knobs.thp = val;
        } else if (key == "thp.use_zero_page") {
            plan.knobs.thp_use_zero_page = onoff(true);
        } else if (key == "hugetlb_2m" || key == "hugetlb_1g") {
            unsigned long n = 0;
            try {
                n = std::stoul(val);
            } catch (...) {
                n = 0;
            }
            (key == "hugetlb_2m" ? plan.hugetlb_2m : plan.hugetlb_1g) = n;
        } else if (key == "movable" || key == "cma") {
            if (val != "0") plan.model_only = key + "=" + val + " (a memory layout the host does not have)";
        } else if (key == "arch.pte_special" || key == "arch.gup_fast" || key == "arch.pmd_special") {
            if (!onoff(true)) plan.model_only = key + "=" + val + " (an architecture switch; the host is x86-64)";
        } else if (key == "arch.pte_devmap" || key == "gup.foll_same_file" || key == "dmabuf.require_pfnmap" ||
                   key == "dmabuf.refuse_private") {
            if (!onoff(false)) plan.model_only = key + "=" + val + " (not in the host kernel)";
        } else if (key == "fault_around_bytes") {
            // The host's debugfs knob is left alone: only its default compares.
            auto v = pl::parse_size(val);
            if (!v || *v != 65536) plan.model_only = key + "=" + val + " (the host keeps debugfs fault_around_bytes=65536)";
        } else if (key == "readahead_kb") {
            // The host's read_ahead_kb is per block device (often not the
            // 128 KiB default) and left alone: a scenario that names a window
            // size runs in the model only.
            plan.model_only = key + "=" + val + " (the host's read_ahead_kb is its devices' own)";
        }
        // ram, device_mem: sizes of the model's machine; the host has its own.
    }
    return plan;
}

ConformResult run_once(const Scenario& s, HostSession& host, const ConformOptions& opts) {
    ConformResult r;
    r.name = s.name;
    r.file = s.file;
    r.title = s.title;
    const auto t0 = std::chrono::steady_clock::now();
    std::string config = s.config;
    if (!opts.extra_config.empty()) config += (config.empty() ? "" : " ") + opts.extra_config;
    HostPlan plan = plan_for(config);

    std::optional<HostStop> pre_stop;
    if (!plan.model_only.empty()) {
        pre_stop = HostStop{ConformStatus::model_only, {}, "config " + plan.model_only};
    } else {
        std::string why;
        auto ok = host.apply_knobs(plan.knobs, &why);
        if (!ok.ok() || !ok.value()) pre_stop = HostStop{ConformStatus::skipped, {}, why.empty() ? "host knobs" : why};
    }

    scenario::Outcome model;
    ConformHostSide side(s, host, plan.hugetlb_2m, plan.hugetlb_1g);
    if (pre_stop) side.stop_before_start(*pre_stop);
    model = scenario::run_scenario(s, opts.extra_config, &side);
    side.finish();

    r.model_verdict = model.verdict;
    r.model_reason = model.reason;
    r.compared = side.compared_count();
    r.model_only_checks = side.model_only_checks();
    r.host_steps = side.host_steps();
    if (side.disagreement()) {
        r.status = ConformStatus::disagree;
        r.first_difference = *side.disagreement();
        r.source_line = side.disagreement_line();
        const auto& d = r.first_difference;
        r.reason = "line " + std::to_string(d.loc.line) + ": " + d.what + ": model " + d.model + ", kernel " + d.kernel;
        r.kernel_outcome = "differs at line " + std::to_string(d.loc.line);
    } else if (model.verdict == Verdict::Fail || model.verdict == Verdict::Error) {
        r.status = model.verdict == Verdict::Fail ? ConformStatus::model_fail : ConformStatus::error;
        r.reason = model.reason;
        r.kernel_outcome = side.kernel_failure().empty() ? "-" : "FAIL: " + side.kernel_failure();
    } else if (side.stopped()) {
        const HostStop& st = *side.stopped();
        r.status = st.status;
        r.reason = (st.loc.line ? "line " + std::to_string(st.loc.line) + ": " : std::string()) + st.reason;
        r.source_line = side.disagreement_line();
        if (st.status == ConformStatus::skipped) r.kernel_outcome = "SKIP: " + st.reason;
        else if (st.status == ConformStatus::model_only)
            r.kernel_outcome = side.any_step() ? "agrees up to line " + std::to_string(st.loc.line) : "-";
        else r.kernel_outcome = "ERROR: " + st.reason;
        if (st.status == ConformStatus::skipped && model.verdict == Verdict::Skip) r.reason = model.reason;
    } else if (model.verdict == Verdict::Skip) {
        r.status = ConformStatus::skipped;
        r.reason = model.reason;
        r.kernel_outcome = "SKIP";
    } else {
        r.status = ConformStatus::agree;
        r.kernel_outcome = side.kernel_failure().empty() ? "PASS" : "FAIL: " + side.kernel_failure();
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace

ConformResult conform_scenario(const Scenario& s, HostSession& host, const ConformOptions& opts) {
    ConformResult r = run_once(s, host, opts);
    // A difference is run again before it counts. /proc/vmstat is global
    // (another process pinning at the same moment moves it), and a few of
    // the kernel's choices depend on timing (fault-around skips a page
    // cache folio someone else holds locked at that instant). The model is
    // deterministic: a scenario whose reruns agree is reported as agreeing,
    // with the difference seen kept in `unstable`.
    int attempts = 1;
    std::string first_reason;
    while (r.status == ConformStatus::disagree && attempts <= opts.retries) {
        if (first_reason.empty()) first_reason = r.reason;
        ++attempts;
        r = run_once(s, host, opts);
    }
    if (r.status != ConformStatus::disagree && !first_reason.empty()) r.unstable = first_reason;
    r.attempts = attempts;
    return r;
}

std::vector<ConformResult> conform_text(const std::string& name, const std::string& text, HostSession& host,
                                        const ConformOptions& opts) {
    std::vector<ConformResult> out;
    const auto lines = scenario::split_lines(text);
    std::vector<scenario::Expansion> expansions;
    scenario::Diagnostic diag;
    auto error = [&](const std::string& nm, const scenario::Diagnostic& d) {
        ConformResult r;
        r.name = nm;
        r.file = name;
        r.status = ConformStatus::error;
        r.model_verdict = Verdict::Error;  // bad input: nothing ran
        r.reason = d.headline();
        r.source_line = d.format();
        out.push_back(std::move(r));
    };
    if (!scenario::expand_matrix(name, lines, &expansions, &diag)) {
        error(name, diag);
        return out;
    }
    for (const auto& ex : expansions) {
        Scenario s;
        scenario::Diagnostic d;
        if (!scenario::parse_scenario(name, name + ex.suffix, ex.lines, &s, &d)) {
            error(name + ex.suffix, d);
            continue;
        }
        out.push_back(conform_scenario(s, host, opts));
    }
    return out;
}

}  // namespace pl::oracle
