// Printing a run: text (aligned, coloured only when asked) and TAP 13 in
// kselftest's shape (tools/testing/selftests/kselftest.h: "ok N name",
// "not ok N name # reason", "# SKIP", "# Totals: pass:... fail:...").
#include <gtest/gtest.h>

#include "scenario/report.h"

namespace pl::scenario::test {
namespace {

RunSummary sample() {
    RunSummary run;
    ScenarioResult pass;
    pass.name = "a.pin";
    pass.title = "works";
    run.add(pass);
    ScenarioResult fail;
    fail.name = "b.pin[x=1]";
    fail.verdict = Verdict::Fail;
    fail.reason = "3:8: expectation failed: expected 1, got 0";
    fail.detail = "b.pin[x=1]:3:8: expectation failed: expected 1, got 0\n    3 | expect n == 1\n      |        ^";
    run.add(fail);
    ScenarioResult skip;
    skip.name = "c.pin";
    skip.verdict = Verdict::Skip;
    skip.reason = "needs hugetlb";
    run.add(skip);
    return run;
}

TEST(ScenarioReport, TextIsOneLinePerScenarioWithTheDiagnosticBelow) {
    const std::string out = format_text(sample(), Colour::off);
    EXPECT_EQ(out,
              "PASS  a.pin       works\n"
              "FAIL  b.pin[x=1]\n"
              "      b.pin[x=1]:3:8: expectation failed: expected 1, got 0\n"
              "          3 | expect n == 1\n"
              "            |        ^\n"
              "SKIP  c.pin       skipped: needs hugetlb\n"
              "1 passed, 1 failed, 1 skipped, 0 errors\n");
    EXPECT_EQ(out.find('\033'), std::string::npos);
    EXPECT_NE(format_text(sample(), Colour::on).find("\033[31mFAIL"), std::string::npos);
}

TEST(ScenarioReport, TapCountsAndMarks) {
    const std::string out = format_tap(sample());
    EXPECT_EQ(out.rfind("TAP version 13\n1..3\nok 1 a.pin\n", 0), 0u) << out;
    EXPECT_NE(out.find("# b.pin[x=1]:3:8: expectation failed: expected 1, got 0\n#     3 | expect n == 1\n"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("\nnot ok 2 b.pin[x=1] # 3:8: expectation failed: expected 1, got 0\n"), std::string::npos) << out;
    EXPECT_NE(out.find("\nok 3 c.pin # SKIP needs hugetlb\n"), std::string::npos) << out;
    EXPECT_NE(out.find("# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0\n"), std::string::npos) << out;
}

TEST(ScenarioReport, ExitStatusPrefersBadInput) {
    RunSummary run = sample();
    EXPECT_EQ(run.exit_status(), 1);
    ScenarioResult err;
    err.verdict = Verdict::Error;
    run.add(err);
    EXPECT_EQ(run.exit_status(), 2);
    RunSummary ok;
    ScenarioResult skip;
    skip.verdict = Verdict::Skip;
    ok.add(skip);
    EXPECT_EQ(ok.exit_status(), 0);
}

}  // namespace
}  // namespace pl::scenario::test
