// pinlab scenario tests — helpers: parse or run inline scenario text.
#pragma once

#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <vector>

#include "scenario/matrix.h"
#include "scenario/parser.h"
#include "scenario/runner.h"

namespace pl::scenario::test {

// Parses `text` (no matrix); returns the diagnostic's headline or "" if it parsed.
inline std::string parse_error(const std::string& text, Scenario* out = nullptr) {
    Scenario s;
    Diagnostic d;
    const bool ok = parse_scenario("t.pin", "t.pin", split_lines(text), out ? out : &s, &d);
    return ok ? "" : d.headline();
}

// Runs `text` as the file "t.pin".
inline RunSummary run(const std::string& text, const std::string& extra_config = "") {
    RunSummary r;
    RunOptions o;
    o.extra_config = extra_config;
    run_text("t.pin", text, o, &r);
    return r;
}

// Every result of a run, one "VERDICT name: reason" line (plus its detail)
// each: for failure messages.
inline std::string verdicts(const RunSummary& r) {
    std::string s;
    for (const ScenarioResult& x : r.results)
        s += std::string(verdict_name(x.verdict)) + " " + x.name + ": " + x.reason + "\n" + x.detail + "\n";
    return s;
}

// What a shell command printed (stdout and stderr) and its exit status.
struct Ran {
    int status = -1;
    std::string out;
};

inline Ran sh(const std::string& cmd) {
    Ran r;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return r;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    const int st = pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

#ifdef PINLAB_CLI
// Runs the built pinlab binary with `args` (after a shell `prefix`, e.g. an
// environment assignment).
inline Ran pinlab(const std::string& args, const std::string& prefix = "") {
    return sh(prefix + "'" + PINLAB_CLI + "' " + args + " 2>&1");
}
#endif

}  // namespace pl::scenario::test
