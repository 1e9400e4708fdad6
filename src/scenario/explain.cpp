#include "scenario/explain.h"

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>

#include "mm/mm_struct.h"
#include "pinlab/kapi.h"
#include "scenario/matrix.h"
#include "scenario/parser.h"
#include "scenario/runner.h"

namespace pl::scenario {
namespace {

// Installs a recorder for the duration of each step (and only then: the
// boot and the final teardown are not part of any step's story).
class Explainer : public StepObserver {
public:
    Explainer(ExplainedScenario* out, bool snapshots) : out_(out), snapshots_(snapshots) {}

    void before_step(const Stmt& st) override {
        cur_ = ExplainedStep{};
        cur_.line = st.loc.line;
        cur_.source = st.line_text;
        install_.emplace(&rec_);
    }
    void after_step(const Stmt&) override {
        cur_.events = rec_.take();
        install_.reset();
        out_->steps.push_back(std::move(cur_));
        cur_ = ExplainedStep{};
    }
    void state(const std::map<std::string, task_struct*>& tasks) override {
        if (!snapshots_ || out_->steps.empty()) return;
        std::vector<TaskSnap>& snaps = out_->steps.back().tasks;
        for (const auto& [name, t] : tasks) {
            TaskSnap ts;
            ts.name = name;
            mm_struct* mm = t ? pl_task_mm(t) : nullptr;
            ts.exited = mm == nullptr;
            if (mm) ts.vmas = trace::snapshot_mm(*reinterpret_cast<MmStruct*>(mm), kMaxLeavesPerVma);
            snaps.push_back(std::move(ts));
        }
    }
    void compared(const Stmt&, const std::string& lhs, const std::string& op, const std::string& rhs,
                  bool held) override {
        std::string what = op.empty() ? lhs : lhs + " " + op + " " + rhs;
        cur_.compared.push_back(what + (held ? "  (holds)" : "  (does NOT hold)"));
    }

private:
    static constexpr size_t kMaxLeavesPerVma = 64;  // a picture, not a dump
    ExplainedScenario* out_;
    bool snapshots_;
    trace::Recorder rec_;
    std::optional<trace::RecorderInstall> install_;
    ExplainedStep cur_;
};

struct Paint {
    bool on;
    std::string operator()(const char* code, const std::string& s) const {
        return on ? std::string("\033[") + code + "m" + s + "\033[0m" : s;
    }
};

const char* colour_of(const trace::Event& e) {
    using trace::Kind;
    switch (e.kind) {
        case Kind::Call: return "1;36";
        case Kind::Return: return e.after < 0 ? "1;31" : "1;36";
        case Kind::FastStop:
        case Kind::Decision:
        case Kind::Migrate:
        case Kind::Longterm: return "33";
        case Kind::CheckResult: return e.after ? "1;31" : "32";
        case Kind::Check: return e.after ? "31" : "2";
        case Kind::Follow: return e.after && e.after != -EMLINK ? "31" : "0";
        case Kind::Fault:
        case Kind::FaultDone: return "35";
        case Kind::Lock: return "34";
        case Kind::Ref: return "32";
        case Kind::Pte: return "2";
        default: return "0";
    }
}

std::string pad(std::string s, size_t w) {
    if (s.size() < w) s.append(w - s.size(), ' ');
    return s;
}

std::string verdict_line(const ExplainedScenario& s, const Paint& paint) {
    const std::string_view v = verdict_name(s.outcome.verdict);
    const char* code = s.outcome.verdict == Verdict::Pass ? "1;32" : s.outcome.verdict == Verdict::Skip ? "1;33" : "1;31";
    std::string out = paint(code, std::string(v)) + "  " + s.name;
    if (s.outcome.verdict != Verdict::Pass) {
        out += "\n      " + (s.outcome.diag.loc.line > 0 ? s.outcome.diag.format() : s.outcome.reason);
    }
    return out + "\n";
}

// The step line numbers of the file, for the bad-LINE message.
std::string list_lines(const Scenario& s) {
    std::set<int> lines;
    for (const Stmt& st : s.stmts) lines.insert(st.loc.line);
    std::string out;
    int shown = 0;
    for (int l : lines) {
        if (shown++ == 20) {
            out += ", ...";
            break;
        }
        out += (out.empty() ? "" : ", ") + std::to_string(l);
    }
    return out;
}

}  // namespace

std::string format_explained(const ExplainedScenario& s, int line, Colour colour) {
    const Paint paint{colour == Colour::on};
    std::string out = paint("1", "explain " + s.name) + (s.title.empty() ? "" : "  \"" + s.title + "\"") + "\n";
    if (!s.config.empty()) out += "  config " + s.config + "\n";
    for (const ExplainedStep& st : s.steps) {
        if (line > 0 && st.line != line) continue;
        const std::string num = std::to_string(st.line);
        out += "\n" + std::string(num.size() < 5 ? 5 - num.size() : 0, ' ') + num + " | " + paint("1", st.source) + "\n";
        for (const trace::Event& e : st.events) {
            std::string body = std::string(e.function) + ": " + e.message;
            if (e.kind == trace::Kind::Call || e.kind == trace::Kind::Return) body = e.message;
            if (e.kind == trace::Kind::Check) body += e.after ? "  → fires" : "  → passes";
            out += "        " + std::string(static_cast<size_t>(e.depth) * 2, ' ') +
                   paint(colour_of(e), pad(std::string(trace::kind_name(e.kind)), 13) + body) + "\n";
        }
        for (const std::string& c : st.compared)
            out += "        " + paint(c.find("does NOT") == std::string::npos ? "32" : "1;31", pad("expect", 13) + "compared " + c) + "\n";
        if (st.events.empty() && st.compared.empty()) out += "        " + paint("2", "(no GUP, fault or page-table activity)") + "\n";
    }
    out += "\n" + verdict_line(s, paint);
    return out;
}

ExplainResult explain_text(const std::string& file, const std::string& text, const ExplainOptions& opts) {
    ExplainResult res;
    auto bad = [&](const Diagnostic& d) {
        res.error = d.format() + "\n";
        res.exit_status = 2;
        return res;
    };
    if (text.size() > kMaxFileBytes) return bad(Diagnostic{file, {}, "input too large", ""});
    const std::vector<std::string> lines = split_lines(text);
    std::vector<Expansion> expansions;
    Diagnostic d;
    if (!expand_matrix(file, lines, &expansions, &d)) return bad(d);
    std::vector<Scenario> scenarios(expansions.size());
    for (size_t i = 0; i < expansions.size(); ++i) {
        if (!parse_scenario(file, file + expansions[i].suffix, expansions[i].lines, &scenarios[i], &d)) return bad(d);
    }
    if (opts.line > 0 && !scenarios.empty()) {
        bool found = false;
        for (const Stmt& st : scenarios[0].stmts) found |= st.loc.line == opts.line;
        if (!found) {
            const bool exists = opts.line <= static_cast<int>(lines.size());
            return bad(Diagnostic{file, {opts.line, 1},
                                  exists ? "no step at line " + std::to_string(opts.line) + " (steps are at lines " +
                                               list_lines(scenarios[0]) + ")"
                                         : "line " + std::to_string(opts.line) + " is past the end of the file (" +
                                               std::to_string(lines.size()) + " lines)",
                                  exists ? lines[static_cast<size_t>(opts.line - 1)] : ""});
        }
    }
    bool failed = false, error = false;
    for (const Scenario& s : scenarios) {
        ExplainedScenario ex;
        ex.name = s.name;
        ex.title = s.title;
        ex.config = s.config;
        {
            Explainer observer(&ex, opts.snapshots);
            ex.outcome = run_scenario(s, opts.extra_config, &observer);
        }
        failed |= ex.outcome.verdict == Verdict::Fail;
        error |= ex.outcome.verdict == Verdict::Error;
        res.text += (res.text.empty() ? "" : "\n") + format_explained(ex, opts.line, opts.colour);
        res.scenarios.push_back(std::move(ex));
    }
    res.exit_status = error ? 2 : failed ? 1 : 0;
    return res;
}

ExplainResult explain_path(const std::string& file_and_line, const ExplainOptions& opts) {
    std::string file = file_and_line;
    ExplainOptions o = opts;
    std::error_code ec;
    const size_t colon = file_and_line.rfind(':');
    if (!std::filesystem::exists(file_and_line, ec) && colon != std::string::npos && colon > 0) {
        const std::string num = file_and_line.substr(colon + 1);
        bool digits = !num.empty() && num.size() < 9;
        for (char c : num) digits &= c >= '0' && c <= '9';
        if (digits) {
            file = file_and_line.substr(0, colon);
            o.line = std::stoi(num);
            if (o.line == 0) {
                ExplainResult r;
                r.error = file + ": line numbers start at 1\n";
                r.exit_status = 2;
                return r;
            }
        }
    }
    ExplainResult r;
    if (std::filesystem::is_directory(file, ec)) {
        r.error = file + ": is a directory (explain takes one scenario file)\n";
        r.exit_status = 2;
        return r;
    }
    const auto size = std::filesystem::file_size(file, ec);
    if (ec) {
        r.error = file + ": cannot read: " + ec.message() + "\n";
        r.exit_status = 2;
        return r;
    }
    if (size > kMaxFileBytes) {
        r.error = file + ": file too large\n";
        r.exit_status = 2;
        return r;
    }
    std::ifstream in(file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return explain_text(file, text.str(), o);
}

}  // namespace pl::scenario
