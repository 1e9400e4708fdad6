// pinlab scenario tests — helpers: parse or run inline scenario text.
#pragma once

#include <gtest/gtest.h>

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

}  // namespace pl::scenario::test
