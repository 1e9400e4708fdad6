// `pinlab explain`: the story of each step (src/scenario/explain.cpp over the
// recorder of src/debug/trace.h). Each test runs a small scenario with the
// recorder installed and checks the decisions upstream makes at that step:
// gup_fast() taking an exclusive writable anon page lockless, fork's
// copy_present_page() for a possibly pinned page (folio_try_dup_anon_rmap()
// -EBUSY), check_vma_flags() refusing VM_IO|VM_PFNMAP first, and
// __gup_longterm_locked() migrating a ZONE_MOVABLE folio before pinning it
// (check_and_migrate_movable_pages()).
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "debug/trace.h"
#include "scenario/explain.h"
#include "scenario_test_util.h"

namespace pl::scenario::test {
namespace {

using trace::Kind;

// Line numbers matter below: one statement per line, numbered in comments.
const std::string kPinFork =
    "config ram=256M hugetlb_2m=0 hugetlb_1g=0\n"                        // 1
    "task A\n"                                                           // 2
    "A: buf = mmap 8K rw private anon\n"                                 // 3
    "A: write buf \"hello\"\n"                                           // 4
    "A: n = pin_user_pages_fast buf 1 FOLL_WRITE|FOLL_LONGTERM -> P\n"  // 5
    "fork A -> B\n"                                                      // 6
    "# the pinned page was copied for the child\n"                       // 7
    "expect not same_frame A:buf B:buf\n"                                // 8
    "unpin_user_pages P\n";                                              // 9

const ExplainedStep* step_at(const ExplainedScenario& s, int line) {
    for (const ExplainedStep& st : s.steps)
        if (st.line == line) return &st;
    return nullptr;
}

int count(const ExplainedStep& st, Kind k) {
    int n = 0;
    for (const trace::Event& e : st.events) n += e.kind == k;
    return n;
}

const trace::Event* find(const ExplainedStep& st, Kind k, const std::string& fn = "") {
    for (const trace::Event& e : st.events)
        if (e.kind == k && (fn.empty() || fn == e.function)) return &e;
    return nullptr;
}

ExplainResult explain(const std::string& text, int line = 0) {
    ExplainOptions o;
    o.line = line;
    return explain_text("t.pin", text, o);
}

TEST(ScenarioExplain, PinThenForkTakesFastPathAndCopiesAtFork) {
    const ExplainResult r = explain(kPinFork);
    ASSERT_EQ(r.exit_status, 0) << r.text << r.error;
    ASSERT_EQ(r.scenarios.size(), 1u);
    const ExplainedScenario& s = r.scenarios[0];

    // The write fault mapped a fresh exclusive, writable anon page: gup_fast()
    // takes it without the mmap_lock (no entry rule fails).
    const ExplainedStep* pin = step_at(s, 5);
    ASSERT_NE(pin, nullptr) << r.text;
    const trace::Event* fast = find(*pin, Kind::FastPath);
    ASSERT_NE(fast, nullptr) << r.text;
    EXPECT_EQ(fast->before, 1);
    EXPECT_EQ(fast->after, 1) << "gup_fast() took the page";
    EXPECT_EQ(count(*pin, Kind::FastStop), 0) << r.text;
    EXPECT_EQ(count(*pin, Kind::Check), 0) << "no slow path: check_vma_flags() never ran\n" << r.text;
    // try_grab_folio(FOLL_PIN) on a small folio: +GUP_PIN_COUNTING_BIAS, one pin.
    const trace::Event* ref = find(*pin, Kind::Ref, "try_grab_folio");
    ASSERT_NE(ref, nullptr) << r.text;
    EXPECT_EQ(ref->after - ref->before, 1024);
    EXPECT_EQ(ref->pin_before, 0);
    EXPECT_EQ(ref->pin_after, 1);
    const trace::Event* ret = find(*pin, Kind::Return);
    ASSERT_NE(ret, nullptr);
    EXPECT_EQ(ret->after, 1);

    // fork(): the possibly pinned exclusive page is copied for the child.
    const ExplainedStep* fork = step_at(s, 6);
    ASSERT_NE(fork, nullptr) << r.text;
    const trace::Event* copy = find(*fork, Kind::Decision, "copy_present_page");
    ASSERT_NE(copy, nullptr) << r.text;
    EXPECT_EQ(copy->pin_before, 1) << "the copied page is the pinned one";

    // The expectation shows what it compared.
    const ExplainedStep* ex = step_at(s, 8);
    ASSERT_NE(ex, nullptr);
    ASSERT_EQ(ex->compared.size(), 1u);
    EXPECT_NE(ex->compared[0].find("false"), std::string::npos) << ex->compared[0];

    EXPECT_NE(r.text.find("fast path took all 1 page(s)"), std::string::npos) << r.text;
    EXPECT_NE(r.text.find("copy_present_page: fork:"), std::string::npos) << r.text;
    EXPECT_NE(r.text.find("    5 | A: n = pin_user_pages_fast"), std::string::npos) << r.text;
    EXPECT_NE(r.text.find("PASS"), std::string::npos) << r.text;
}

TEST(ScenarioExplain, PfnmapPinShowsTheDecidingCheck) {
    const std::string text =
        "config ram=256M hugetlb_2m=0 hugetlb_1g=0\n"           // 1
        "task A\n"                                              // 2
        "A: io = mmap 4K rw shared device pfnmap\n"             // 3
        "A: n = pin_user_pages_fast io 1 FOLL_WRITE -> P\n"     // 4
        "expect n == -EFAULT\n";                                // 5
    const ExplainResult r = explain(text);
    ASSERT_EQ(r.exit_status, 0) << r.text << r.error;
    const ExplainedStep* pin = step_at(r.scenarios[0], 4);
    ASSERT_NE(pin, nullptr) << r.text;
    // gup_fast_pte_range(): pte_special backs off to the slow path.
    const trace::Event* stop = find(*pin, Kind::FastStop);
    ASSERT_NE(stop, nullptr) << r.text;
    EXPECT_NE(stop->message.find("pte_special"), std::string::npos) << stop->message;
    // check_vma_flags(): VM_IO|VM_PFNMAP is the first rule, and it decides.
    const trace::Event* first = find(*pin, Kind::Check);
    ASSERT_NE(first, nullptr) << r.text;
    EXPECT_EQ(first->message, "VM_IO|VM_PFNMAP");
    EXPECT_EQ(first->after, 1);
    EXPECT_EQ(count(*pin, Kind::Check), 1) << "no rule after the deciding one is evaluated\n" << r.text;
    const trace::Event* verdict = find(*pin, Kind::CheckResult);
    ASSERT_NE(verdict, nullptr);
    EXPECT_EQ(verdict->after, -EFAULT);
    EXPECT_EQ(count(*pin, Kind::Ref), 0) << "nothing was grabbed";
    EXPECT_NE(r.text.find("check_vma_flags: VM_IO|VM_PFNMAP → -EFAULT"), std::string::npos) << r.text;
    EXPECT_NE(r.text.find("returned -EFAULT"), std::string::npos) << r.text;
}

TEST(ScenarioExplain, LongtermPinOfMovableMemoryShowsTheMigration) {
    const std::string text =
        "config ram=256M movable=128M hugetlb_2m=0 hugetlb_1g=0\n"      // 1
        "task A\n"                                                      // 2
        "A: buf = mmap 4K rw private anon\n"                            // 3
        "A: write buf \"hello\"\n"                                      // 4
        "expect not page A:buf longterm_pinnable\n"                     // 5
        "A: n = pin_user_pages_fast buf 1 FOLL_WRITE|FOLL_LONGTERM -> P\n"  // 6
        "expect page P[0] longterm_pinnable\n"                          // 7
        "unpin_user_pages P\n";                                         // 8
    const ExplainResult r = explain(text);
    ASSERT_EQ(r.exit_status, 0) << r.text << r.error;
    const ExplainedStep* pin = step_at(r.scenarios[0], 6);
    ASSERT_NE(pin, nullptr) << r.text;
    // GUP-fast refuses the unpinnable folio; the slow path pins, finds it
    // movable, migrates it and pins again: two rounds.
    const trace::Event* stop = find(*pin, Kind::FastStop);
    ASSERT_NE(stop, nullptr) << r.text;
    EXPECT_NE(stop->message.find("longterm-pinnable"), std::string::npos) << stop->message;
    std::vector<const trace::Event*> rounds;
    for (const trace::Event& e : pin->events)
        if (e.kind == Kind::Longterm) rounds.push_back(&e);
    ASSERT_EQ(rounds.size(), 2u) << r.text;
    EXPECT_EQ(rounds[0]->after, -EAGAIN);
    EXPECT_EQ(rounds[1]->after, 0);
    const trace::Event* isolated = find(*pin, Kind::Decision, "collect_longterm_unpinnable_folios");
    ASSERT_NE(isolated, nullptr) << r.text;
    EXPECT_NE(isolated->message.find("Movable"), std::string::npos) << isolated->message;
    const trace::Event* migrated = find(*pin, Kind::Migrate);
    ASSERT_NE(migrated, nullptr) << r.text;
    EXPECT_NE(migrated->message.find("migrated"), std::string::npos);
    // The PTE after the call maps the new page, outside ZONE_MOVABLE.
    const trace::Event* after = nullptr;
    for (const trace::Event& e : pin->events)
        if (e.kind == Kind::Pte && e.message.rfind("after", 0) == 0) after = &e;
    ASSERT_NE(after, nullptr) << r.text;
    EXPECT_NE(after->message.find("(Normal"), std::string::npos) << after->message;
    EXPECT_EQ(after->message.find("(Movable"), std::string::npos) << after->message;
}

// A FOLL_UNLOCKABLE pin of a cold file mapping: filemap's read fault drops
// the mmap_lock (VM_FAULT_RETRY) and __get_user_pages_locked() retakes it to
// retry that page with FOLL_TRIED.
TEST(ScenarioExplain, LockDroppedByAFaultAndRetaken) {
    const std::string text =
        "config ram=256M hugetlb_2m=0 hugetlb_1g=0\n"       // 1
        "task A\n"                                          // 2
        "f = open \"ext4\" 16K\n"                           // 3
        "pwrite f 0 \"disk\"\n"                             // 4
        "fsync f\n"                                         // 5
        "A: m = mmap 8K r private file f\n"                 // 6
        "A: n = pin_user_pages_unlocked m 2 0 -> P\n"       // 7
        "expect n == 2\n"                                   // 8
        "unpin_user_pages P\n";                             // 9
    const ExplainResult r = explain(text, 7);
    ASSERT_EQ(r.exit_status, 0) << r.text << r.error;
    const ExplainedStep* pin = step_at(r.scenarios[0], 7);
    ASSERT_NE(pin, nullptr) << r.text;
    int retry = 0, dropped = 0, retaken = 0, tried = 0;
    for (const trace::Event& e : pin->events) {
        retry += e.kind == Kind::FaultDone && e.message.find("RETRY") != std::string::npos;
        dropped += e.kind == Kind::Lock && e.message.find("dropped") != std::string::npos;
        retaken += e.kind == Kind::Lock && e.message.find("retaken") != std::string::npos;
        tried += e.kind == Kind::Fault && e.message.find("TRIED") != std::string::npos;
    }
    EXPECT_GE(retry, 1) << r.text;
    EXPECT_EQ(dropped, retry) << r.text;
    EXPECT_EQ(retaken, dropped) << r.text;
    EXPECT_GE(tried, 1) << "the retry faults with FAULT_FLAG_TRIED\n" << r.text;
    // Faults nest inside the call: deeper than the call's own events.
    const trace::Event* call = find(*pin, Kind::Call);
    const trace::Event* fault = find(*pin, Kind::Fault);
    ASSERT_TRUE(call && fault);
    EXPECT_GT(fault->depth, call->depth);
}

TEST(ScenarioExplain, LineSelectsOneStep) {
    const ExplainResult r = explain(kPinFork, 6);
    ASSERT_EQ(r.exit_status, 0) << r.text << r.error;
    EXPECT_NE(r.text.find("    6 | fork A -> B"), std::string::npos) << r.text;
    EXPECT_NE(r.text.find("copy_present_page"), std::string::npos) << r.text;
    EXPECT_EQ(r.text.find("pin_user_pages_fast"), std::string::npos) << "other steps are not printed\n" << r.text;
    EXPECT_EQ(r.text.find("    8 |"), std::string::npos) << r.text;
    // The whole scenario still ran: the verdict covers every step.
    EXPECT_NE(r.text.find("PASS"), std::string::npos) << r.text;
    EXPECT_GE(r.scenarios[0].steps.size(), 6u);
}

TEST(ScenarioExplain, BadLineIsALocatedError) {
    ExplainResult r = explain(kPinFork, 7);  // a comment
    EXPECT_EQ(r.exit_status, 2);
    EXPECT_TRUE(r.text.empty()) << r.text;
    EXPECT_NE(r.error.find("t.pin:7:1: no step at line 7"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("# the pinned page"), std::string::npos) << "the line is quoted\n" << r.error;
    r = explain(kPinFork, 1);  // config is not a step
    EXPECT_EQ(r.exit_status, 2);
    EXPECT_NE(r.error.find("no step at line 1"), std::string::npos) << r.error;
    r = explain(kPinFork, 99);
    EXPECT_EQ(r.exit_status, 2);
    EXPECT_NE(r.error.find("t.pin:99:1: line 99 is past the end"), std::string::npos) << r.error;
}

TEST(ScenarioExplain, ExitStatusFollowsTheVerdict) {
    const ExplainResult fail = explain(kPinFork + "expect n == 2\n");
    EXPECT_EQ(fail.exit_status, 1) << fail.text;
    EXPECT_NE(fail.text.find("does NOT hold"), std::string::npos) << fail.text;
    EXPECT_NE(fail.text.find("FAIL"), std::string::npos) << fail.text;
    const ExplainResult bad = explain("task A\nfork A B\n");
    EXPECT_EQ(bad.exit_status, 2);
    EXPECT_NE(bad.error.find("t.pin:2:"), std::string::npos) << bad.error;
}

// Tracing off costs nothing observable: a plain run creates no recorder and
// leaves none installed; explain installs one only around its steps.
TEST(ScenarioExplain, NoRecorderWithoutExplain) {
    const unsigned long before = trace::Recorder::created_on_this_thread();
    const RunSummary run_result = run(kPinFork);
    EXPECT_EQ(run_result.passed, 1);
    EXPECT_EQ(trace::Recorder::created_on_this_thread(), before) << "a plain run allocated a recorder";
    EXPECT_FALSE(trace::on());
    const ExplainResult r = explain(kPinFork);
    EXPECT_EQ(r.exit_status, 0);
    EXPECT_GT(trace::Recorder::created_on_this_thread(), before);
    EXPECT_FALSE(trace::on()) << "explain left its recorder installed";
}

// The CLI: FILE:LINE, --color, exit statuses.
Ran cli(const std::string& args) { return pinlab(args); }

TEST(ScenarioExplain, Cli) {
    const auto dir = std::filesystem::temp_directory_path() / ("pinlab_explain_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::string file = (dir / "pf.pin").string();
    std::ofstream(file) << kPinFork;

    Ran r = cli("explain " + file + ":6");
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("copy_present_page"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("\033["), std::string::npos) << "no colour into a pipe";
    r = cli("explain --color=always " + file);
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("\033["), std::string::npos) << r.out;
    r = cli("explain " + file + ":7");
    EXPECT_EQ(r.status, 2) << r.out;
    EXPECT_NE(r.out.find(":7:1: no step at line 7"), std::string::npos) << r.out;
    r = cli("explain " + (dir / "missing.pin").string());
    EXPECT_EQ(r.status, 2) << r.out;
    r = cli("explain --color=sometimes " + file);
    EXPECT_EQ(r.status, 2) << r.out;
    std::filesystem::remove_all(dir);
}

// The HTML page (explain --html) is self-contained and its data cannot end
// the <script> element, whatever the scenario's text holds.
TEST(ScenarioExplain, HtmlIsSelfContained) {
    ExplainOptions o;
    o.snapshots = true;
    const ExplainResult r = explain_text("t.pin", "scenario \"x</script><b>\"\n" + kPinFork, o);
    ASSERT_EQ(r.exit_status, 0) << r.text << r.error;
    // Snapshots after the fork (line 7 here): both tasks, the pinned page in A only.
    const ExplainedStep* fork = step_at(r.scenarios[0], 7);
    ASSERT_NE(fork, nullptr);
    ASSERT_EQ(fork->tasks.size(), 2u);
    int pinned_in_a = 0, pinned_in_b = 0;
    for (const TaskSnap& t : fork->tasks)
        for (const trace::VmaSnap& v : t.vmas)
            for (const trace::PteSnap& p : v.ptes) (t.name == "A" ? pinned_in_a : pinned_in_b) += p.pincount > 0;
    EXPECT_EQ(pinned_in_a, 1);
    EXPECT_EQ(pinned_in_b, 0) << "the child got a copy";
    const std::string html = format_html(r);
    size_t closes = 0;
    for (size_t at = html.find("</script>"); at != std::string::npos; at = html.find("</script>", at + 1)) ++closes;
    EXPECT_EQ(closes, 2u) << "only the page's own two script elements end";
    EXPECT_EQ(html.find("http://"), std::string::npos);
    EXPECT_EQ(html.find("https://"), std::string::npos);
    EXPECT_EQ(html.find(" src="), std::string::npos) << "nothing loaded from elsewhere";
}

// The page renders in headless Chromium (Debian's chromium package): its
// script draws the step chosen by #step=N, the tasks' page tables and the
// frames with their counts. Skipped where chromium is not installed.
TEST(ScenarioExplain, HtmlRendersInHeadlessChromium) {
    if (std::system("command -v chromium >/dev/null 2>&1") != 0) GTEST_SKIP() << "chromium is not installed";
    const auto dir = std::filesystem::temp_directory_path() / ("pinlab_explain_html_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::string file = (dir / "pf.pin").string();
    const std::string page = (dir / "pf.html").string();
    std::ofstream(file) << kPinFork;
    Ran r = cli("explain --html " + page + " " + file);
    ASSERT_EQ(r.status, 0) << r.out;
    // The fork is the 5th step (lines 2, 3, 4, 5, 6): index 4.
    r = sh("timeout 120 chromium --headless --no-sandbox --disable-gpu --dump-dom 'file://" + page +
           "#step=4' 2>/dev/null");
    std::filesystem::remove_all(dir);
    const std::string& dom = r.out;
    ASSERT_NE(dom.find("id=\"frames\""), std::string::npos) << dom.substr(0, 2000);
    EXPECT_NE(dom.find("6 | fork A -&gt; B"), std::string::npos) << "the slider's step is drawn\n" << dom.substr(0, 4000);
    EXPECT_NE(dom.find("copy_present_page: fork:"), std::string::npos) << dom.substr(0, 4000);
    EXPECT_NE(dom.find("<h3>task B</h3>"), std::string::npos) << dom.substr(0, 4000);
    EXPECT_NE(dom.find("<tr class=\"pinned\"><td class=\"mono\">0x"), std::string::npos)
        << "the pinned frame is drawn\n" << dom.substr(0, 4000);
    EXPECT_NE(dom.find("step 5 of"), std::string::npos) << dom.substr(0, 4000);
}

}  // namespace
}  // namespace pl::scenario::test
