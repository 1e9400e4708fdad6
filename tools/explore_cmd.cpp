// pinlab explore — see explore_cmd.h and docs/EXPLORER.md.
#include "explore_cmd.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "base/config.h"
#include "explore/explorer.h"
#include "explore/scenario_race.h"
#include "json_text.h"
#include "scenario/matrix.h"
#include "scenario/parser.h"
#include "scenario/runner.h"

#ifdef PINLAB_HAVE_NLOHMANN_JSON
#include <nlohmann/json.hpp>
#endif

namespace pl::tools {

namespace {

using explore::ExploreOptions;
using explore::ExploreResult;
using explore::RunRecord;
using explore::ScenarioRace;
using explore::ScenarioSettings;
using explore::StrategyKind;

constexpr int64_t kDefaultBudget = 100000;
constexpr int kDefaultBound = 2;

// One scenario (matrix expansion) to explore.
struct Target {
    std::string file;
    scenario::Scenario scenario;
};

// The outcome of exploring one expansion, as printed and as merged.
struct Report {
    std::string name, file, strategy;
    uint64_t seed = 0;
    int bound = 0;
    int shard_index = 0, shard_count = 1;
    uint64_t executions = 0;
    double seconds = 0;
    bool exhausted = false;
    std::string expect;      // the scenario's explore expect=, or ""
    std::string skipped;     // the reason, when the scenario skipped
    // The violation, if any.
    bool found = false;
    std::string kind, message, schedule;
    int preemptions = 0;
    uint64_t steps = 0;
    int found_preemptions = 0;
    uint64_t found_steps = 0;
    uint64_t shrink_executions = 0;

    std::string outcome() const { return found ? "violation" : "none"; }
    // Whether the result is what the scenario's `explore expect=` says: a
    // violation, or none in a search that covered its space (a bounded
    // search must have exhausted it).
    bool met() const {
        if (!skipped.empty() || expect.empty()) return true;
        if (expect == "violation") return found;
        return !found && (strategy != "bounded" || exhausted);
    }
};

bool read_text(const std::string& path, std::string* text) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    std::ostringstream ss;
    ss << in.rdbuf();
    *text = ss.str();
    return true;
}

std::string shell_quote(const std::string& s) {
    if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-=:") ==
                          std::string::npos)
        return s;
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

std::string with_commas(uint64_t n) {
    std::string s = std::to_string(n);
    for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
    return s;
}

std::string rate(uint64_t n, double s) { return s > 0 ? with_commas(static_cast<uint64_t>(std::llround(n / s))) + "/s" : "-"; }

std::string seconds_text(double s) {
    char buf[32];
    std::snprintf(buf, sizeof buf, s < 10 ? "%.3f s" : "%.1f s", s);
    return buf;
}

// Parses "I/N" (0 <= I < N <= 65536).
bool parse_shard(const std::string& text, int* index, int* count) {
    const size_t slash = text.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == text.size()) return false;
    try {
        size_t a = 0, b = 0;
        const long i = std::stol(text.substr(0, slash), &a);
        const long n = std::stol(text.substr(slash + 1), &b);
        if (a != slash || b != text.size() - slash - 1 || i < 0 || n < 1 || n > 65536 || i >= n) return false;
        *index = static_cast<int>(i);
        *count = static_cast<int>(n);
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

// The scenarios of one path: FILE, FILE[k=v,...] (one expansion) or a
// directory (every *.pin below it that has thread blocks).
bool collect(const std::string& target, std::vector<Target>* out, std::string* err) {
    std::string file = target, only;
    std::error_code ec;
    if (!std::filesystem::exists(file, ec) && target.back() == ']') {
        const size_t open = target.find('[');
        if (open != std::string::npos && open > 0) {
            file = target.substr(0, open);
            only = target.substr(open);
        }
    }
    std::vector<std::string> files;
    bool from_dir = false;
    if (std::filesystem::is_directory(file, ec)) {
        from_dir = true;
        if (!scenario::pin_files_below(file, &files, &ec)) {
            *err = file + ": cannot list: " + ec.message();
            return false;
        }
    } else if (std::filesystem::is_regular_file(file, ec)) {
        files.push_back(file);
    } else {
        *err = target + ": no such file or directory";
        return false;
    }
    for (const std::string& f : files) {
        std::string text;
        if (!read_text(f, &text)) {
            *err = f + ": cannot read";
            return false;
        }
        if (text.size() > scenario::kMaxFileBytes) {
            *err = f + ": input too large";
            return false;
        }
        std::vector<scenario::Expansion> expansions;
        scenario::Diagnostic d;
        if (!scenario::expand_matrix(f, scenario::split_lines(text), &expansions, &d)) {
            *err = d.format();
            return false;
        }
        bool matched = only.empty();
        std::string suffixes;
        for (const scenario::Expansion& x : expansions) {
            suffixes += (suffixes.empty() ? "" : " ") + (x.suffix.empty() ? std::string("(none)") : x.suffix);
            if (!only.empty() && x.suffix != only) continue;
            matched = true;
            Target t;
            t.file = f;
            if (!scenario::parse_scenario(f, f + x.suffix, x.lines, &t.scenario, &d)) {
                *err = d.format();
                return false;
            }
            if (t.scenario.threads.empty()) {
                if (from_dir) break;  // not a race scenario
                *err = f + ": no thread blocks (`thread NAME { ... }`): nothing to explore";
                return false;
            }
            out->push_back(std::move(t));
        }
        if (!matched) {
            *err = target + ": no such matrix expansion (" + f + " has " + suffixes + ")";
            return false;
        }
    }
    return true;
}

// The segments of an execution: which thread ran which lines, in order,
// from the decision points of a replay.
struct Segment {
    int thread = -1;
    int first_line = 0, last_line = 0;
    uint64_t first_step = 0;
    bool preempted_other = false;  // this segment began by preempting a thread that could go on
    int preempted = -1;
};

// The line of thread block t's first statement.
int first_line_of(const scenario::Scenario& sc, int t) {
    for (const scenario::Stmt& st : sc.stmts)
        if (st.thread == t) return st.loc.line;
    return 0;
}

class Interleaving {
public:
    explicit Interleaving(const explore::ThreadLines& lines) : lines_(lines) {}
    void decision(const explore::Choice& c, int chosen) {
        if (!segs_.empty()) segs_.back().last_line = lines_.at(static_cast<size_t>(segs_.back().thread));
        if (!segs_.empty() && segs_.back().thread == chosen) return;
        Segment s;
        s.thread = chosen;
        s.first_step = c.step;
        s.first_line = lines_.at(static_cast<size_t>(chosen));
        s.preempted_other = c.current >= 0 && c.current != chosen;
        s.preempted = c.current;
        segs_.push_back(s);
    }
    // After the execution: the last segment ran to the end.
    std::string text(const scenario::Scenario& sc) const {
        std::string out;
        auto line_text = [&](int line) -> std::string {
            for (const scenario::Stmt& st : sc.stmts)
                if (st.loc.line == line) {
                    std::string t = st.line_text;
                    const size_t b = t.find_first_not_of(" \t");
                    return b == std::string::npos ? "" : t.substr(b);
                }
            return "";
        };
        size_t width = 0;
        for (const std::string& n : sc.threads) width = std::max(width, n.size());
        int n = 0;
        for (size_t i = 0; i < segs_.size(); ++i) {
            Segment s = segs_[i];
            if (s.thread < 0 || static_cast<size_t>(s.thread) >= sc.threads.size()) continue;
            const bool last = i + 1 == segs_.size();
            if (last) s.last_line = lines_.at(static_cast<size_t>(s.thread));
            int from = s.first_line ? s.first_line : first_line_of(sc, s.thread);
            std::string name = sc.threads[static_cast<size_t>(s.thread)];
            name.resize(width, ' ');
            char head[96];
            std::snprintf(head, sizeof head, "    %2d. step %-6llu %s  ", ++n, static_cast<unsigned long long>(s.first_step),
                          name.c_str());
            std::string where = from == s.last_line || s.last_line == 0 ? "line " + std::to_string(from)
                                                                         : "lines " + std::to_string(from) + "-" +
                                                                               std::to_string(s.last_line);
            out += head + where + ": " + line_text(s.last_line ? s.last_line : from);
            if (s.preempted_other && s.preempted >= 0 && static_cast<size_t>(s.preempted) < sc.threads.size())
                out += "   <- preempts " + sc.threads[static_cast<size_t>(s.preempted)];
            out += last ? "   (to the end)\n" : "\n";
        }
        // A thread preempted with no later turn of its own went on once the
        // others had ended (no decision point was left to record).
        for (size_t i = 1; i < segs_.size(); ++i) {
            const int t = segs_[i].preempted;
            if (!segs_[i].preempted_other || t < 0 || static_cast<size_t>(t) >= sc.threads.size()) continue;
            bool later = false;
            for (size_t j = i; j < segs_.size(); ++j) later = later || segs_[j].thread == t;
            if (later) continue;
            std::string name = sc.threads[static_cast<size_t>(t)];
            name.resize(width, ' ');
            const int from = segs_[i - 1].last_line, to = lines_.at(static_cast<size_t>(t));
            char head[96];
            std::snprintf(head, sizeof head, "    %2d. then        %s  ", ++n, name.c_str());
            out += head + (from == to ? "line " + std::to_string(to) : "lines " + std::to_string(from) + "-" + std::to_string(to)) +
                   ": " + line_text(to) + "   (resumes, alone, to the end)\n";
        }
        return out;
    }

private:
    const explore::ThreadLines& lines_;
    std::vector<Segment> segs_;
};

std::string explain_run(const ScenarioRace& race, const std::string& schedule, explore::SchedulerLimits limits,
                        RunRecord* rec) {
    explore::ThreadLines lines;
    Interleaving il(lines);
    *rec = explore::replay(race.test(&lines), schedule, limits,
                           [&](const explore::Choice& c, int t) { il.decision(c, t); });
    return il.text(race.scenario());
}

class Progress {
public:
    Progress(bool on, std::string name) : on_(on), name_(std::move(name)) {}
    void show(const ExploreResult& r) {
        if (!on_) return;
        std::string line = "\r  " + name_ + ": " + with_commas(r.executions) + " executions, " +
                           rate(r.executions, r.seconds) + ", " + seconds_text(r.seconds);
        if (r.bound_reached > 0) line += ", bound " + std::to_string(r.bound_reached);
        std::fprintf(stderr, "%s\033[K", line.c_str());
        std::fflush(stderr);
        shown_ = true;
    }
    void clear() {
        if (shown_) std::fprintf(stderr, "\r\033[K");
        shown_ = false;
    }

private:
    bool on_;
    std::string name_;
    bool shown_ = false;
};

std::string report_json(const Report& r) {
    std::string s = "{\"name\": " + json_quote(r.name) + ", \"file\": " + json_quote(r.file) +
                    ", \"strategy\": " + json_quote(r.strategy) + ", \"seed\": " + std::to_string(r.seed) +
                    ", \"bound\": " + std::to_string(r.bound) + ", \"shard\": {\"index\": " +
                    std::to_string(r.shard_index) + ", \"count\": " + std::to_string(r.shard_count) +
                    "}, \"executions\": " + std::to_string(r.executions) + ", \"seconds\": " +
                    std::to_string(r.seconds) + ", \"exhausted\": " + (r.exhausted ? "true" : "false") +
                    ", \"expect\": " + json_quote(r.expect) + ", \"skipped\": " + json_quote(r.skipped) +
                    ", \"met\": " + (r.met() ? "true" : "false") + ", \"violation\": ";
    if (!r.found) return s + "null}";
    return s + "{\"kind\": " + json_quote(r.kind) + ", \"message\": " + json_quote(r.message) +
           ", \"schedule\": " + json_quote(r.schedule) + ", \"preemptions\": " + std::to_string(r.preemptions) +
           ", \"steps\": " + std::to_string(r.steps) + ", \"found_preemptions\": " +
           std::to_string(r.found_preemptions) + ", \"found_steps\": " + std::to_string(r.found_steps) +
           ", \"shrink_executions\": " + std::to_string(r.shrink_executions) + "}}";
}

// One row of `--format markdown` (docs/EXPLORER.md's corpus table).
std::string report_markdown(const Report& r) {
    auto cell = [](std::string x) {
        for (char& c : x)
            if (c == '|' || c == '\n') c = ' ';
        return x;
    };
    std::string name = r.name;
    if (name.rfind("examples/races/", 0) == 0) name = name.substr(15);
    std::string how = r.strategy + (r.strategy == "bounded" ? " K=" + std::to_string(r.bound) : "");
    std::string result = !r.skipped.empty() ? "skip" : r.found ? "violation (" + r.kind + ")"
                                                    : r.exhausted ? "none, exhausted" : "none, budget ran out";
    std::string shrunk = "-";
    if (r.found) {
        // The schedule's length: its choices, counted from the text form.
        uint64_t choices = 0;
        size_t i = 0;
        while (i < r.schedule.size()) {
            size_t j = r.schedule.find('.', i);
            if (j == std::string::npos) j = r.schedule.size();
            const std::string run = r.schedule.substr(i, j - i);
            const size_t star = run.find('*');
            choices += star == std::string::npos ? 1 : std::stoull(run.substr(star + 1));
            i = j + 1;
        }
        shrunk = std::to_string(r.preemptions) + " preemption" + (r.preemptions == 1 ? "" : "s") + ", " +
                 std::to_string(r.steps) + " steps, " + std::to_string(choices) + " choices";
    }
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.3f", r.seconds);
    return "| " + cell(name) + " | " + how + " | " + result + (r.met() ? "" : " **(expected " + r.expect + ")**") +
           " | " + with_commas(r.executions) + " | " + secs + " | " + rate(r.executions, r.seconds) + " | " + shrunk + " |";
}

void print_report(const Report& r, bool check_expected) {
    std::string line = r.name + ": ";
    if (!r.skipped.empty()) {
        std::printf("%sSKIP (%s)\n", line.c_str(), r.skipped.c_str());
        return;
    }
    const std::string how = r.strategy + (r.strategy == "bounded" ? " (bound " + std::to_string(r.bound) + ")"
                                                                  : " (seed " + std::to_string(r.seed) + ")") +
                            (r.shard_count > 1 ? ", shard " + std::to_string(r.shard_index) + "/" +
                                                     std::to_string(r.shard_count)
                                               : "");
    if (r.found) {
        line += "VIOLATION after " + with_commas(r.executions) + " executions in " + seconds_text(r.seconds) + " (" +
                rate(r.executions, r.seconds) + "), " + how;
    } else {
        line += "no violation in " + with_commas(r.executions) + " executions, " + seconds_text(r.seconds) + " (" +
                rate(r.executions, r.seconds) + "), " + how +
                (r.exhausted ? ": the bounded space is exhausted" : ": the budget ran out");
    }
    if (check_expected && !r.expect.empty())
        line += std::string("  [expected ") + r.expect + ": " + (r.met() ? "met" : "NOT MET") + "]";
    std::printf("%s\n", line.c_str());
}

Report base_report(const Target& t, const ExploreOptions& o, const ScenarioSettings& fs) {
    Report r;
    r.name = t.scenario.name;
    r.file = t.file;
    r.strategy = explore::to_string(o.strategy);
    r.seed = o.seed;
    r.bound = o.bound;
    r.shard_index = o.shard_index;
    r.shard_count = o.shard_count;
    r.expect = fs.expect;
    return r;
}

#ifdef PINLAB_HAVE_NLOHMANN_JSON
// --merge: the reports of the shards of one campaign, combined per scenario.
int merge(const ExploreArgs& a) {
    std::map<std::string, std::vector<Report>> by_name;
    std::vector<std::string> order;
    for (const std::string& path : a.targets) {
        std::string text;
        if (!read_text(path, &text)) {
            std::fprintf(stderr, "pinlab explore --merge: %s: cannot read\n", path.c_str());
            return 2;
        }
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(text);
            if (!j.is_array()) throw std::runtime_error("expected an array of results (pinlab explore --format json)");
            for (const auto& x : j) {
                Report r;
                r.name = x.at("name").get<std::string>();
                r.file = x.at("file").get<std::string>();
                r.strategy = x.at("strategy").get<std::string>();
                r.seed = x.at("seed").get<uint64_t>();
                r.bound = x.at("bound").get<int>();
                r.shard_index = x.at("shard").at("index").get<int>();
                r.shard_count = x.at("shard").at("count").get<int>();
                r.executions = x.at("executions").get<uint64_t>();
                r.seconds = x.at("seconds").get<double>();
                r.exhausted = x.at("exhausted").get<bool>();
                r.expect = x.at("expect").get<std::string>();
                r.skipped = x.at("skipped").get<std::string>();
                const auto& v = x.at("violation");
                if (!v.is_null()) {
                    r.found = true;
                    r.kind = v.at("kind").get<std::string>();
                    r.message = v.at("message").get<std::string>();
                    r.schedule = v.at("schedule").get<std::string>();
                    r.preemptions = v.at("preemptions").get<int>();
                    r.steps = v.at("steps").get<uint64_t>();
                }
                if (!by_name.count(r.name)) order.push_back(r.name);
                by_name[r.name].push_back(std::move(r));
            }
        } catch (const std::exception& e) {
            std::fprintf(stderr, "pinlab explore --merge: %s: %s\n", path.c_str(), e.what());
            return 2;
        }
    }
    int status = 0;
    bool all_met = true;
    for (const std::string& name : order) {
        std::vector<Report>& parts = by_name[name];
        std::sort(parts.begin(), parts.end(), [](const Report& x, const Report& y) { return x.shard_index < y.shard_index; });
        Report m = parts.front();
        m.executions = 0;
        m.seconds = 0;
        m.exhausted = true;
        m.found = false;
        std::vector<bool> seen(static_cast<size_t>(m.shard_count), false);
        for (const Report& p : parts) {
            if (p.shard_count != m.shard_count || p.strategy != m.strategy || p.bound != m.bound) {
                std::fprintf(stderr, "pinlab explore --merge: %s: shards of different campaigns (strategy, bound or shard count differ)\n",
                             name.c_str());
                return 2;
            }
            if (p.shard_index < 0 || p.shard_index >= m.shard_count || seen[static_cast<size_t>(p.shard_index)]) {
                std::fprintf(stderr, "pinlab explore --merge: %s: shard %d/%d is out of range or given twice\n",
                             name.c_str(), p.shard_index, p.shard_count);
                return 2;
            }
            seen[static_cast<size_t>(p.shard_index)] = true;
            m.executions += p.executions;
            m.seconds = std::max(m.seconds, p.seconds);
            m.exhausted = m.exhausted && p.exhausted;
            if (p.found && !m.found) {
                m.found = true;
                m.kind = p.kind;
                m.message = p.message;
                m.schedule = p.schedule;
                m.preemptions = p.preemptions;
                m.steps = p.steps;
            }
        }
        const auto missing = std::count(seen.begin(), seen.end(), false);
        if (missing) m.exhausted = false;
        m.shard_count = 1;
        print_report(m, a.check_expected);
        const std::string missing_text = missing ? " (" + std::to_string(missing) + " missing)" : "";
        std::printf("  merged %zu of %d shards%s\n", parts.size(), parts.front().shard_count, missing_text.c_str());
        if (m.found) {
            std::printf("  violation: %s: %s\n  schedule:  %s (%d preemptions, %llu steps)\n", m.kind.c_str(),
                        m.message.c_str(), m.schedule.c_str(), m.preemptions, static_cast<unsigned long long>(m.steps));
            status = 1;
        }
        all_met = all_met && m.met();
    }
    if (a.check_expected) return all_met ? 0 : 1;
    return status;
}
#endif

}  // namespace

ExploreCommand::ExploreCommand(CLI::App& app) {
    cmd_ = app.add_subcommand("explore",
                              "Explore the interleavings of race scenarios (thread blocks): find, shrink and replay violations");
    cmd_->add_option("targets", args_.targets,
                     "Scenario files (FILE[k=v,...] picks one matrix expansion) and directories; with --merge, "
                     "the JSON outputs of --shard runs")
        ->required();
    cmd_->add_option("--strategy", args_.strategy, "random, pct or bounded (default: the scenario's explore line, else bounded)")
        ->check(CLI::IsMember({"random", "pct", "bounded"}));
    cmd_->add_option("--bound", args_.bound, "bounded: the most preemptions per schedule (default 2)")->check(CLI::Range(0, 8));
    cmd_->add_option("--depth", args_.depth, "pct: the bug depth d (default 3)")->check(CLI::Range(1, 16));
    cmd_->add_option("--budget", args_.budget, "the most executions (default 100000)")->check(CLI::Range(int64_t{1}, int64_t{1000000000000}));
    cmd_->add_option("--seconds", args_.seconds, "the most seconds of exploring per scenario")->check(CLI::Range(0.001, 1e7));
    cmd_->add_option("--seed", args_.seed, "random, pct: the seed (default 1)")->check(CLI::NonNegativeNumber);
    cmd_->add_option("--replay", args_.replay, "Run one schedule (as printed: 0*12.1*3...) and explain it");
    cmd_->add_option("--shard", args_.shard,
                     "I/N: run part I (0-based) of a campaign split in N independent parts; merge the --format json "
                     "outputs with --merge");
    cmd_->add_flag("--check-expected", args_.check_expected,
                   "Exit 0 only if every scenario gave what its `explore expect=` line says");
    cmd_->add_flag("--merge", args_.merge, "Combine the JSON results of --shard runs");
    cmd_->add_flag("--quiet", args_.quiet, "No progress line");
    cmd_->add_option("--format", args_.format, "Output format (markdown: a table row per scenario)")
        ->check(CLI::IsMember({"text", "json", "markdown"}));
    cmd_->add_option("--config", args_.config, "key=value words applied after each scenario's own config (repeatable)")
        ->allow_extra_args(false);
    cmd_->add_option("--era", args_.era, "Kernel era (as --config era=E)");
}

int ExploreCommand::run() const {
    const ExploreArgs& a = args_;
    if (a.merge) {
#ifdef PINLAB_HAVE_NLOHMANN_JSON
        return merge(a);
#else
        std::fprintf(stderr, "pinlab explore --merge: this pinlab was built without nlohmann-json\n");
        return 2;
#endif
    }
    std::string extra;
    for (const std::string& c : a.config) extra += (extra.empty() ? "" : " ") + c;
    if (!a.era.empty()) extra += (extra.empty() ? "" : " ") + ("era=" + a.era);
    if (!extra.empty() && !Config::parse(extra).ok()) {
        std::fprintf(stderr, "pinlab explore: --config/--era: %s\n", Config::last_error().c_str());
        return 2;
    }
    int shard_index = 0, shard_count = 1;
    if (!a.shard.empty() && !parse_shard(a.shard, &shard_index, &shard_count)) {
        std::fprintf(stderr, "pinlab explore: --shard: expected I/N with 0 <= I < N <= 65536, got '%s'\n", a.shard.c_str());
        return 2;
    }
    std::vector<Target> targets;
    for (const std::string& t : a.targets) {
        std::string err;
        if (!collect(t, &targets, &err)) {
            std::fprintf(stderr, "pinlab explore: %s\n", err.c_str());
            return 2;
        }
    }
    if (targets.empty()) {
        std::fprintf(stderr, "pinlab explore: no race scenarios (thread blocks) in %s\n", a.targets.front().c_str());
        return 2;
    }
    if (!a.replay.empty() && targets.size() != 1) {
        std::fprintf(stderr, "pinlab explore: --replay needs exactly one scenario (name one expansion: FILE[k=v,...]), got %zu\n",
                     targets.size());
        return 2;
    }
    const bool json = a.format == "json";
    const bool markdown = a.format == "markdown";
    int rows = 0;
    const bool progress = !a.quiet && !json && !markdown && isatty(STDERR_FILENO);
    std::string config_args;
    for (const std::string& c : a.config) config_args += " --config " + shell_quote(c);
    if (!a.era.empty()) config_args += " --era " + shell_quote(a.era);

    int status = 0;
    bool all_met = true;
    std::vector<std::string> json_out;
    for (const Target& t : targets) {
        ScenarioRace race(t.scenario, extra);
        ScenarioSettings fs;
        const scenario::Outcome serial = race.serial(&fs);
        if (serial.verdict == scenario::Verdict::Error) {
            std::fprintf(stderr, "pinlab explore: %s\n", serial.diag.format().c_str());
            return 2;
        }
        ExploreOptions o;
        const std::string strategy = !a.strategy.empty() ? a.strategy : !fs.strategy.empty() ? fs.strategy : "bounded";
        o.strategy = strategy == "random" ? StrategyKind::Random : strategy == "pct" ? StrategyKind::Pct : StrategyKind::Bounded;
        o.bound = a.bound >= 0 ? a.bound : fs.bound >= 0 ? fs.bound : kDefaultBound;
        o.pct_depth = a.depth >= 0 ? a.depth : fs.depth >= 0 ? fs.depth : 3;
        o.seed = a.seed >= 0 ? static_cast<uint64_t>(a.seed) : fs.seed >= 0 ? static_cast<uint64_t>(fs.seed) : 1;
        if (a.budget >= 0 || a.seconds >= 0) {
            o.max_executions = a.budget >= 0 ? static_cast<uint64_t>(a.budget) : 0;
            o.max_seconds = a.seconds >= 0 ? a.seconds : 0;
        } else {
            o.max_executions = fs.budget >= 0 ? static_cast<uint64_t>(fs.budget) : fs.seconds >= 0 ? 0 : kDefaultBudget;
            o.max_seconds = fs.seconds >= 0 ? static_cast<double>(fs.seconds) : 0;
        }
        o.shard_index = shard_index;
        o.shard_count = shard_count;
        Report r = base_report(t, o, fs);
        if (serial.verdict == scenario::Verdict::Skip) {
            r.skipped = serial.reason;
            if (json) json_out.push_back(report_json(r));
            else if (markdown) std::printf("%s\n", report_markdown(r).c_str());
            else print_report(r, a.check_expected);
            continue;
        }

        if (!a.replay.empty()) {
            RunRecord rec;
            const std::string story = explain_run(race, a.replay, o.limits, &rec);
            if (rec.violation.kind == explore::ViolationKind::Diverged) {
                std::fprintf(stderr, "pinlab explore: --replay: %s\n", rec.violation.message.c_str());
                return 2;
            }
            std::printf("%s: replay of %s: %s (%d preemptions, %llu steps)\n", t.scenario.name.c_str(), a.replay.c_str(),
                        rec.violation ? "VIOLATION" : "no violation", rec.preemptions,
                        static_cast<unsigned long long>(rec.steps));
            if (rec.violation)
                std::printf("  violation: %s: %s\n", explore::to_string(rec.violation.kind), rec.violation.message.c_str());
            std::printf("  interleaving (a line per run of one thread):\n%s", story.c_str());
            return rec.violation ? 1 : 0;
        }

        Progress bar(progress, t.scenario.name);
        o.progress = [&bar](const ExploreResult& res) { bar.show(res); };
        const ExploreResult res = explore::explore(o, race.test());
        bar.clear();
        r.executions = res.executions;
        r.seconds = res.seconds;
        r.exhausted = res.exhausted;
        if (const RunRecord* f = res.failure()) {
            r.found = true;
            r.kind = explore::to_string(f->violation.kind);
            r.message = f->violation.message;
            r.schedule = explore::to_string(f->schedule);
            r.preemptions = f->preemptions;
            r.steps = f->steps;
            r.found_preemptions = res.found->preemptions;
            r.found_steps = res.found->steps;
            r.shrink_executions = res.shrink_executions;
            status = 1;
        }
        all_met = all_met && r.met();
        if (json) {
            json_out.push_back(report_json(r));
            continue;
        }
        if (markdown) {
            if (rows++ == 0)
                std::printf("| scenario | strategy | result | executions | seconds | executions/s | shrunk schedule |\n"
                            "|---|---|---|---|---|---|---|\n");
            std::printf("%s\n", report_markdown(r).c_str());
            std::fflush(stdout);
            continue;
        }
        print_report(r, a.check_expected);
        if (r.found) {
            std::printf("  violation: %s: %s\n", r.kind.c_str(), r.message.c_str());
            std::printf("  schedule:  %s  (%d preemption%s, %llu steps; found with %d and %llu, shrunk in %llu executions)\n",
                        r.schedule.c_str(), r.preemptions, r.preemptions == 1 ? "" : "s",
                        static_cast<unsigned long long>(r.steps), r.found_preemptions,
                        static_cast<unsigned long long>(r.found_steps), static_cast<unsigned long long>(r.shrink_executions));
            std::printf("  replay:    pinlab explore %s%s --replay '%s'\n", shell_quote(t.scenario.name).c_str(),
                        config_args.c_str(), r.schedule.c_str());
            RunRecord again;
            const std::string story = explain_run(race, r.schedule, o.limits, &again);
            std::printf("  interleaving (a line per run of one thread):\n%s", story.c_str());
            if (!again.violation || again.violation.kind != res.failure()->violation.kind)
                std::printf("  NOTE: the replay did not reproduce the violation (%s): the model is not deterministic here\n",
                            again.violation ? again.violation.message.c_str() : "it passed");
        }
        std::fflush(stdout);
    }
    if (json) {
        std::printf("[\n");
        for (size_t i = 0; i < json_out.size(); ++i) std::printf("  %s%s\n", json_out[i].c_str(), i + 1 < json_out.size() ? "," : "");
        std::printf("]\n");
    }
    if (a.check_expected) return all_met ? 0 : 1;
    return status;
}

}  // namespace pl::tools
