// The scenario front end: lexer, matrix expansion and parser. Each malformed
// input class must be refused with the right line:col and an "expected ..."
// message (docs/SCENARIOS.md, "Errors").
#include <gtest/gtest.h>

#include "scenario/lexer.h"
#include "scenario_test_util.h"

namespace pl::scenario::test {
namespace {

std::vector<Token> lex(const std::string& line) {
    std::vector<Token> toks;
    LexError err;
    EXPECT_TRUE(lex_line(line, 1, &toks, &err)) << err.message;
    return toks;
}

TEST(ScenarioLexer, NumbersWithUnitsStringsAndOperators) {
    const std::string line = "x = 4K + 0x10 2M 1G \"a\\n\\x41\" -> == != <= >= | [ ] ( ) , : # comment";
    auto t = lex(line);
    ASSERT_GE(t.size(), 20u);
    EXPECT_EQ(t[0].kind, Tok::Ident);
    EXPECT_EQ(t[1].kind, Tok::Assign);
    EXPECT_EQ(t[2].value, 4096u);
    EXPECT_EQ(t[3].kind, Tok::Plus);
    EXPECT_EQ(t[4].value, 16u);
    EXPECT_EQ(t[5].value, 2u << 20);
    EXPECT_EQ(t[6].value, 1u << 30);
    EXPECT_EQ(t[7].kind, Tok::String);
    EXPECT_EQ(t[7].text, "a\nA");
    EXPECT_EQ(t[8].kind, Tok::Arrow);
    EXPECT_EQ(t[9].kind, Tok::Eq);
    EXPECT_EQ(t[10].kind, Tok::Ne);
    EXPECT_EQ(t[11].kind, Tok::Le);
    EXPECT_EQ(t[12].kind, Tok::Ge);
    EXPECT_EQ(t.back().kind, Tok::End);
    EXPECT_EQ(t.back().loc.col, static_cast<int>(line.find('#')) + 1);
}

TEST(ScenarioLexer, ColumnsAreOneBased) {
    auto t = lex("  fork A -> B");
    EXPECT_EQ(t[0].loc.col, 3);
    EXPECT_EQ(t[2].loc.col, 10);
}

struct BadLine {
    const char* text;
    int col;
    const char* message;  // substring
};

TEST(ScenarioLexer, MalformedTokensAreLocated) {
    const BadLine cases[] = {
        {"x = 4Kb", 7, "expected a number"},
        {"x = 0x", 5, "expected hex digits"},
        {"write a \"abc", 9, "unterminated string"},
        {"write a \"\\q\"", 10, "unknown escape"},
        {"x = 99999999999999999999", 5, "number too large"},
        {"x = 9T9", 7, "expected a number"},
        {"x ! y", 3, "expected '!='"},
        {"x = @", 5, "unexpected character '@'"},
        {"x = \x01", 5, "unexpected byte \\x01"},
    };
    for (const BadLine& c : cases) {
        std::vector<Token> toks;
        LexError err;
        EXPECT_FALSE(lex_line(c.text, 1, &toks, &err)) << c.text;
        EXPECT_EQ(err.loc.col, c.col) << c.text;
        EXPECT_NE(err.message.find(c.message), std::string::npos) << c.text << " -> " << err.message;
    }
}

TEST(ScenarioParser, EveryConstructParses) {
    Scenario s;
    const std::string text = R"(# a comment
scenario "every construct"
config era=current thp=never
config ram=512M
task A, C
A: buf = mmap 8K rw private anon
A: f = open "ext4" 16K
A: m2 = mmap 4K r shared file f off 4K
A: m3 = mmap 4K rw shared file ext4:8K populate
A: m4 = mmap 2M rw private hugetlb at 0x40000000 fixed
A: m5 = mmap 4K PROT_READ|PROT_WRITE shared memfd flags MAP_NORESERVE
write buf "hello"
write buf+4K fill 0x5a 4K
n = pin_user_pages_fast buf 1 FOLL_WRITE|FOLL_LONGTERM -> P
A: r = get_user_pages buf 2 0 -> G
fork A -> B
B: write buf "child"
expect n == 1
expect r != -EFAULT
expect A: read buf 5 == "hello"
expect page P[0] pincount == 1
expect page A:buf maybe_dma_pinned
expect not page B:buf+4K anon_exclusive
expect same_frame A:buf B:buf
expect not same_frame A:buf B:buf
expect vmstat nr_foll_pin_acquired >= 1
expect dmesg contains ""
expect pte A:buf contains "present"
expect pins "pin_user_pages_fast" == 1
expect invariants
expect (n + 1) * 1 == 2
unpin_user_pages P
put_page G
device_write P[0] 0 "dma"
x = device_read P[0] 0 3
expect reports leak == 0
expect reports == 0
allow reports warn
skip if n == 5 "never"
exit B
)";
    // One deliberate error at the end: '*' is no operator.
    EXPECT_NE(parse_error(text, &s).find("t.pin:31:"), std::string::npos);
    std::string fixed = text;
    fixed.replace(fixed.find("expect (n + 1) * 1 == 2"), 23, "expect (n + 1) - 1 == 1");
    ASSERT_EQ(parse_error(fixed, &s), "");
    EXPECT_EQ(s.title, "every construct");
    EXPECT_EQ(s.config, "era=current thp=never ram=512M");
    EXPECT_GT(s.stmts.size(), 30u);
}

TEST(ScenarioParser, MalformedInputIsLocated) {
    // Each class of bad input: "t.pin:LINE:COL: <message>" with the message
    // saying what was expected there.
    const struct {
        const char* text;
        const char* where;    // "LINE:COL"
        const char* message;  // substring
    } cases[] = {
        {"task A\nfork A B", "2:8", "expected '->' and the child's name, got 'B'"},
        {"fork A -> B", "1:6", "unknown task 'A'"},
        {"task A\nexit A\nA: write 0 \"x\"", "3:1", "task 'A' has exited (line 2)"},
        {"task A\nA: x = mmap 8K rq private anon", "2:16", "expected a protection"},
        {"task A\nA: x = mmap 8K rw privat anon", "2:19", "expected 'private' or 'shared', got 'privat'"},
        {"task A\nA: x = mmap 8K rw private anonn", "2:27", "expected a backing"},
        {"task A\nA: x = mmap 8K rw private file zfs", "2:32", "expected a file system"},
        {"task A\nA: x = mmap", "2:12", "expected argument 1 of mmap"},
        {"task A\nn = pin_user_pages_fast 0 1 FOLL_WRTE -> P", "2:29", "unknown constant 'FOLL_WRTE'"},
        {"task A\nexpect y == 1", "2:8", "unknown variable 'y'"},
        {"task A\nfrobnicate 1", "2:1", "unknown command 'frobnicate'"},
        {"task A\nexpect", "2:7", "expected a condition after 'expect'"},
        {"task A\nexpect 1 = 1", "2:10", "expected '==' to compare"},
        {"task A\nexpect \"a\" == 1", "2:12", "cannot compare a string with an integer"},
        {"task A\nexpect page 0 colour", "2:15", "expected a page property"},
        {"task A\nexpect reports leek == 0", "2:16", "expected a report kind"},
        {"task A\nconfig era=v6.5", "2:1", "`config` must come before the first operation"},
        {"config era=v9.9", "1:8", "unknown era 'v9.9'"},
        {"config bogus=1", "1:8", "unknown configuration key 'bogus'"},
        {"config era", "1:8", "expected key=value, got 'era'"},
        {"config ram=64M movable=64M", "1:1", "bad configuration"},
        {"task A\nx = 1 +", "2:8", "expected a value"},
        {"task A\nx = (1", "2:7", "expected ')'"},
        {"task A\ntask A", "2:6", "task 'A' already exists"},
        {"task mmap", "1:6", "'mmap' is a reserved word"},
        {"task A\nx = 1\nexpect x[0] == 1", "3:9", "not a page list"},
        {"task A\nread 0 1 extra", "2:10", "expected the end of read's arguments"},
        {"task A\nmunmap 0 4K -> P", "2:13", "munmap fills no pages[] array"},
        {"task A\nskip", "2:5", "expected 'if' or the reason"},
        {"scenario \"a\"\nscenario \"b\"", "2:1", "a second `scenario` line"},
        {"mmap 4K rw private anon", "1:1", "no task to run this as"},
        {"task A\nunpin_user_page 5", "2:17", "expected a page (P[i])"},
        {"task A\nB: write 0 \"x\"", "2:1", "unknown task 'B'"},
        {"task A\nx = 1 + \"s\"", "2:7", "'+' expects integers"},
        {"task A\nexpect 1 == 1 2", "2:15", "expected the end of the line"},
    };
    for (const auto& c : cases) {
        const std::string err = parse_error(c.text);
        EXPECT_EQ(err.rfind(std::string("t.pin:") + c.where + ": ", 0), 0u) << c.text << "\n -> " << err;
        EXPECT_NE(err.find(c.message), std::string::npos) << c.text << "\n -> " << err;
    }
}

TEST(ScenarioParser, DiagnosticShowsTheLineAndACaret) {
    Scenario s;
    Diagnostic d;
    ASSERT_FALSE(parse_scenario("f.pin", "f.pin", split_lines("task A\nfork A B\n"), &s, &d));
    EXPECT_EQ(d.format(),
              "f.pin:2:8: expected '->' and the child's name, got 'B'\n"
              "    2 | fork A B\n"
              "      |        ^");
}

TEST(ScenarioMatrix, CrossProductInFileOrderWithNames) {
    std::vector<Expansion> x;
    Diagnostic d;
    ASSERT_TRUE(expand_matrix("m.pin", split_lines("matrix a = 1 | 2\nmatrix b = x | \"y z\"\nv ${a}${b} # ${c}\n"), &x, &d))
        << d.format();
    ASSERT_EQ(x.size(), 4u);
    EXPECT_EQ(x[0].suffix, "[a=1,b=x]");
    EXPECT_EQ(x[1].suffix, "[a=1,b=y z]");
    EXPECT_EQ(x[3].suffix, "[a=2,b=y z]");
    EXPECT_EQ(x[1].lines[2], "v 1y z # ${c}");  // comments are not substituted
}

TEST(ScenarioMatrix, MalformedMatrixLinesAreLocated) {
    const struct {
        const char* text;
        int line, col;
        const char* message;
    } cases[] = {
        {"matrix = a", 1, 8, "expected a matrix variable name"},
        {"matrix a b", 1, 10, "expected '='"},
        {"matrix a = ", 1, 12, "expected a value"},
        {"matrix a = x y", 1, 14, "expected '|' between matrix values"},
        {"matrix a = x |", 1, 15, "expected a value"},
        {"matrix a = x\nmatrix a = y", 2, 8, "already defined on line 1"},
        {"matrix a = x\nv ${b}", 2, 3, "unknown matrix variable 'b'"},
        {"matrix a = x\nv ${a", 2, 3, "unterminated '${'"},
        {"v ${a}", 1, 3, "unknown matrix variable 'a'"},
        {"matrix a = 1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16\nmatrix b = 1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16|17",
         2, 8, "too many matrix expansions"},
    };
    for (const auto& c : cases) {
        std::vector<Expansion> x;
        Diagnostic d;
        EXPECT_FALSE(expand_matrix("m.pin", split_lines(c.text), &x, &d)) << c.text;
        EXPECT_EQ(d.loc.line, c.line) << c.text << " -> " << d.headline();
        EXPECT_EQ(d.loc.col, c.col) << c.text << " -> " << d.headline();
        EXPECT_NE(d.message.find(c.message), std::string::npos) << c.text << " -> " << d.headline();
    }
}

TEST(ScenarioMatrix, ExactlyTheLimitIsAllowed) {
    std::vector<Expansion> x;
    Diagnostic d;
    EXPECT_TRUE(expand_matrix("m.pin",
                              split_lines("matrix a = 1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16\n"
                                          "matrix b = 1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16"),
                              &x, &d));
    EXPECT_EQ(x.size(), kMaxExpansions);
}

}  // namespace
}  // namespace pl::scenario::test

namespace pl::scenario::test {
namespace {

TEST(ScenarioParser, DeepNestingIsRefusedNotAStackOverflow) {
    const std::string minus = "task A\nx = " + std::string(3000, '-') + "1";
    EXPECT_NE(parse_error(minus).find("expression nested too deeply"), std::string::npos);
    const std::string parens = "task A\nx = " + std::string(1000, '(') + "1" + std::string(1000, ')');
    EXPECT_NE(parse_error(parens).find("expression nested too deeply"), std::string::npos);
    std::string calls = "task A\nn = get_user_pages_fast 0 1 0 -> P\n";
    for (int i = 0; i < 500; ++i) calls += "put_page ";
    EXPECT_NE(parse_error(calls + "P").find("t.pin:3:"), std::string::npos);
    // Within the limit, nesting is fine.
    EXPECT_EQ(parse_error("task A\nx = ((((-(-1)))))"), "");
}

}  // namespace
}  // namespace pl::scenario::test

namespace pl::scenario::test {
namespace {

TEST(ScenarioParser, BlankMinusStartsANegativeArgument) {
    Scenario s;
    ASSERT_EQ(parse_error("task A\nn = get_user_pages 0 -1 0\nm = munmap 8K - 4K 4K\nx = 5 -1\n", &s), "");
    ASSERT_EQ(s.stmts.size(), 4u);
    const Call& gup = *s.stmts[1].expr->call;
    ASSERT_EQ(gup.args.size(), 3u);
    EXPECT_EQ(gup.args[1]->kind, Expr::Kind::Neg);
    const Call& unmap = *s.stmts[2].expr->call;
    ASSERT_EQ(unmap.args.size(), 2u);
    EXPECT_EQ(unmap.args[0]->kind, Expr::Kind::Sub);  // "8K - 4K": blanks on both sides subtract
    EXPECT_EQ(s.stmts[3].expr->kind, Expr::Kind::Sub);  // not an argument list
}

}  // namespace
}  // namespace pl::scenario::test
