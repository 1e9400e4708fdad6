// Race scenarios: `thread NAME { ... }` blocks (the parser's scoping rules and
// errors, the serial run of `pinlab run`) and their exploration through
// src/explore/scenario_race.h and `pinlab explore` (docs/EXPLORER.md).
#include <gtest/gtest.h>

#include <set>

#include "explore/explorer.h"
#include "explore/scenario_race.h"
#include "scenario_test_util.h"

namespace pl::scenario::test {
namespace {

constexpr const char* kHead =
    "config ram=64M hugetlb_2m=0 hugetlb_1g=0\n"
    "task A\n"
    "A: buf = mmap 8K rw private anon\n";

// Two threads store to one page; the after-part says the second wins, which
// holds only in the interleavings where the second thread's write comes last.
const std::string kLastWriterWins = std::string(kHead) +
                                    "thread first {\n"
                                    "    A: write buf \"AAAA\"\n"
                                    "}\n"
                                    "thread second {\n"
                                    "    A: write buf \"BBBB\"\n"
                                    "    A: got = read buf 4\n"
                                    "}\n"
                                    "expect got == \"BBBB\"\n";

// Two threads on two different pages: no interleaving can fail.
const std::string kDisjoint = std::string(kHead) +
                              "thread first {\n"
                              "    A: write buf \"AAAA\"\n"
                              "}\n"
                              "thread second {\n"
                              "    A: write buf+4K \"BBBB\"\n"
                              "}\n"
                              "expect A: read buf 4 == \"AAAA\"\n"
                              "expect A: read buf+4K 4 == \"BBBB\"\n";

TEST(RaceScenarioParse, BlocksFormOneGroupInOrder) {
    Scenario s;
    ASSERT_EQ(parse_error(kLastWriterWins, &s), "");
    ASSERT_EQ(s.threads, (std::vector<std::string>{"first", "second"}));
    EXPECT_EQ(s.thread_locs[1].line, 7);
    std::vector<int> owners;
    for (const Stmt& st : s.stmts) owners.push_back(st.thread);
    // task, mmap | write | write, read | expect
    EXPECT_EQ(owners, (std::vector<int>{-1, -1, 0, 1, 1, -1}));
}

TEST(RaceScenarioParse, NamesOfABlockAreItsOwnUntilTheGroupEnds) {
    // A sibling cannot use `got` (it may not exist yet in some interleaving) ...
    const std::string sibling = std::string(kHead) +
                                "thread a {\n    A: got = read buf 4\n}\n"
                                "thread b {\n    A: write buf got\n}\n";
    EXPECT_NE(parse_error(sibling).find("t.pin:8:"), std::string::npos) << parse_error(sibling);
    // ... the statements after the group can; so can a child forked in a block.
    const std::string after = std::string(kHead) +
                              "thread a {\n    A: got = read buf 4\n}\n"
                              "thread b {\n    fork A -> C\n}\n"
                              "expect got == C: read buf 4\n";
    EXPECT_EQ(parse_error(after), "");
}

TEST(RaceScenarioParse, MalformedGroupsAreLocated) {
    const struct {
        std::string text;
        const char* where;
        const char* message;
    } cases[] = {
        {std::string(kHead) + "thread a {\n    A: write buf \"x\"\n", "t.pin:4:1", "is not closed"},
        {std::string(kHead) + "}\n", "t.pin:4:1", "without an open thread block"},
        {std::string(kHead) + "thread a {\nthread b {\n", "t.pin:5:1", "do not nest"},
        {std::string(kHead) + "thread a {\n}\n", "t.pin:5:1", "is empty"},
        {std::string(kHead) + "thread a {\n    A: write buf \"x\"\n}\nA: write buf \"y\"\nthread b {\n    A: write buf \"z\"\n}\n",
         "t.pin:8:1", "one race group"},
        {std::string(kHead) + "thread a {\n    config ram=128M\n}\n", "t.pin:5:5", "outside the thread blocks"},
        {std::string(kHead) + "thread a {\n    skip \"no\"\n}\n", "t.pin:5:5", "outside the thread blocks"},
        {std::string(kHead) + "thread a {\n    A: write buf \"x\"\n}\nthread a {\n    A: write buf \"y\"\n}\n", "t.pin:7:8",
         "already exists"},
        {std::string(kHead) + "thread a {\n    fork A -> C\n}\nthread b {\n    fork A -> C\n}\n", "t.pin:9:1",
         "created by thread blocks 'a' and 'b'"},
        {std::string(kHead) + "if 1 == 1: thread a {\n", "t.pin:4:21", "cannot be guarded"},
        {std::string(kHead) + "explore expect=maybe\n", "t.pin:4:16", "one of violation, none"},
        {std::string(kHead) + "explore bound=9\n", "t.pin:4:15", "from 0 to 8"},
        {std::string(kHead) + "explore speed=1\n", "t.pin:4:9", "an explore key"},
    };
    for (const auto& c : cases) {
        const std::string err = parse_error(c.text);
        EXPECT_NE(err.find(c.where), std::string::npos) << c.text << "\n-> " << err;
        EXPECT_NE(err.find(c.message), std::string::npos) << c.text << "\n-> " << err;
    }
}

TEST(RaceScenarioRun, RunExecutesTheBlocksInOrder) {
    // pinlab run: first, then second -- the second writer wins.
    RunSummary r = run(kLastWriterWins);
    ASSERT_EQ(r.passed, 1) << verdicts(r);
    // A failure inside a block stops that block and fails the scenario at its line.
    const std::string failing = std::string(kHead) +
                                "thread a {\n    A: write buf \"x\"\n    expect A: read buf 1 == \"y\"\n}\n"
                                "thread b {\n    A: write buf+4K \"z\"\n}\n";
    r = run(failing);
    ASSERT_EQ(r.failed, 1) << verdicts(r);
    EXPECT_EQ(r.results[0].reason.rfind("6:", 0), 0u) << r.results[0].reason;
}

explore::ExploreOptions bounded(int bound) {
    explore::ExploreOptions o;
    o.strategy = explore::StrategyKind::Bounded;
    o.bound = bound;
    o.max_executions = 20000;
    return o;
}

TEST(RaceScenarioExplore, TheLosingOrderIsFoundShrunkAndReplayed) {
    Scenario s;
    ASSERT_EQ(parse_error(kLastWriterWins, &s), "");
    explore::ScenarioRace race(s, "");
    for (auto kind : {explore::StrategyKind::Bounded, explore::StrategyKind::Random, explore::StrategyKind::Pct}) {
        explore::ExploreOptions o = bounded(2);
        o.strategy = kind;
        const explore::ExploreResult r = explore::explore(o, race.test());
        const explore::RunRecord* f = r.failure();
        ASSERT_NE(f, nullptr) << explore::to_string(kind) << ": " << r.summary();
        EXPECT_EQ(f->violation.kind, explore::ViolationKind::Check);
        EXPECT_NE(f->violation.message.find("t.pin:11:"), std::string::npos) << f->violation.message;
        EXPECT_LE(f->preemptions, 1);
        const explore::RunRecord again = explore::replay(race.test(), explore::to_string(f->schedule));
        EXPECT_EQ(again.violation.kind, f->violation.kind) << again.violation.message;
        EXPECT_EQ(again.steps, f->steps);
    }
}

TEST(RaceScenarioExplore, DisjointWritersExhaustTheBoundWithoutViolation) {
    Scenario s;
    ASSERT_EQ(parse_error(kDisjoint, &s), "");
    explore::ScenarioRace race(s, "");
    const explore::ExploreResult r = explore::explore(bounded(1), race.test());
    EXPECT_FALSE(r.failure()) << r.summary();
    EXPECT_TRUE(r.exhausted);
    EXPECT_GT(r.executions, 2u);
}

TEST(RaceScenarioExplore, BoundedShardsCoverTheSpaceBetweenThem) {
    Scenario s;
    ASSERT_EQ(parse_error(kDisjoint, &s), "");
    explore::ScenarioRace race(s, "");
    const explore::ExploreResult whole = explore::explore(bounded(1), race.test());
    ASSERT_TRUE(whole.exhausted);
    uint64_t sum = 0;
    constexpr int kParts = 3;
    for (int i = 0; i < kParts; ++i) {
        explore::ExploreOptions o = bounded(1);
        o.shard_index = i;
        o.shard_count = kParts;
        const explore::ExploreResult part = explore::explore(o, race.test());
        EXPECT_TRUE(part.exhausted);
        EXPECT_LT(part.executions, whole.executions);
        sum += part.executions;
    }
    // Every schedule with a preemption runs in exactly one part; the
    // preemption-free ones (at most a handful) in each.
    EXPECT_GE(sum, whole.executions);
    EXPECT_LE(sum, whole.executions + (kParts - 1) * 4);
}

TEST(RaceScenarioExplore, ShardsOfTheLosingOrderFindItBetweenThem) {
    Scenario s;
    ASSERT_EQ(parse_error(kLastWriterWins, &s), "");
    explore::ScenarioRace race(s, "");
    int found = 0;
    for (int i = 0; i < 4; ++i) {
        explore::ExploreOptions o = bounded(1);
        o.shard_index = i;
        o.shard_count = 4;
        o.shrink = explore::ExploreOptions::Shrink::No;
        found += explore::explore(o, race.test()).failure() != nullptr;
    }
    EXPECT_GE(found, 1);
}

TEST(RaceScenarioExplore, SerialRunReportsTheExploreSettings) {
    Scenario s;
    const std::string text = std::string(kHead) + "if 1 == 1: explore expect=violation bound=1\nif 1 == 2: explore expect=none\n" +
                             "thread a {\n    A: write buf \"x\"\n}\n";
    ASSERT_EQ(parse_error(text, &s), "");
    explore::ScenarioRace race(s, "");
    explore::ScenarioSettings st;
    EXPECT_EQ(race.serial(&st).verdict, Verdict::Pass);
    EXPECT_EQ(st.expect, "violation");
    EXPECT_EQ(st.bound, 1);
}

// ---- the command --------------------------------------------------------------

std::string write_file(const std::string& name, const std::string& text) {
    const std::string path = std::string(::testing::TempDir()) + name;
    FILE* f = std::fopen(path.c_str(), "w");
    std::fputs(text.c_str(), f);
    std::fclose(f);
    return path;
}

TEST(RaceScenarioCli, ExitStatusesReplayAndMerge) {
    const std::string pinlab = PINLAB_CLI;
    const std::string lose = write_file("race_lose.pin", "explore expect=violation bound=1\n" + kLastWriterWins);
    const std::string ok = write_file("race_ok.pin", "explore expect=none bound=1\n" + kDisjoint);
    Ran r = sh(pinlab + " explore --quiet " + lose + " 2>&1");
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_NE(r.out.find("VIOLATION"), std::string::npos) << r.out;
    const size_t at = r.out.find("--replay '");
    ASSERT_NE(at, std::string::npos) << r.out;
    const std::string schedule = r.out.substr(at + 10, r.out.find('\'', at + 10) - at - 10);
    r = sh(pinlab + " explore " + lose + " --replay '" + schedule + "' 2>&1");
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_NE(r.out.find("interleaving"), std::string::npos) << r.out;
    r = sh(pinlab + " explore " + lose + " --replay '0*999' 2>&1");
    EXPECT_EQ(r.status, 2) << r.out;
    EXPECT_NE(r.out.find("diverged"), std::string::npos) << r.out;

    r = sh(pinlab + " explore --quiet " + ok + " 2>&1");
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("exhausted"), std::string::npos) << r.out;
    r = sh(pinlab + " explore --quiet --check-expected " + lose + " " + ok + " 2>&1");
    EXPECT_EQ(r.status, 0) << r.out;

    // Bad input: exit 2, naming the argument or the file.
    r = sh(pinlab + " explore " + ok + " --shard 3/3 2>&1");
    EXPECT_EQ(r.status, 2) << r.out;
    EXPECT_NE(r.out.find("--shard"), std::string::npos) << r.out;
    const std::string plain = write_file("race_plain.pin", kHead);
    r = sh(pinlab + " explore " + plain + " 2>&1");
    EXPECT_EQ(r.status, 2) << r.out;
    EXPECT_NE(r.out.find("no thread blocks"), std::string::npos) << r.out;

    // Shards, then their merge: one campaign's verdict.
    std::string parts;
    for (int i = 0; i < 2; ++i) {
        const std::string json = std::string(::testing::TempDir()) + "race_shard" + std::to_string(i) + ".json";
        r = sh(pinlab + " explore --format json --shard " + std::to_string(i) + "/2 " + ok + " > " + json);
        EXPECT_EQ(r.status, 0);
        parts += " " + json;
    }
    r = sh(pinlab + " explore --merge --check-expected" + parts + " 2>&1");
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("merged 2 of 2 shards"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("exhausted"), std::string::npos) << r.out;
}

TEST(RaceScenarioCli, InvariantsAreCheckedWheneverEveryThreadIsBetweenOperations) {
    // Thread a breaks the invariants (put_page() of a pin's reference, then
    // the unpin: a page-cache folio at refcount 0); the explorer checks them
    // as soon as both threads stand between operations, before the join.
    // The broken kernel is abandoned, not freed: no leak check here.
    const std::string f = write_file("race_broken.pin",
                                     "config ram=256M hugetlb_2m=0 hugetlb_1g=0\ntask A\n"
                                     "A: m = mmap 4K rw shared file ext4\nwrite m \"x\"\n"
                                     "A: b = mmap 4K rw private anon\n"
                                     "allow reports put_page_on_pinned\n"
                                     "thread a {\n    n = pin_user_pages m 1 0 -> P\n    put_page P\n    unpin_folio P[0]\n}\n"
                                     "thread b {\n    A: write b \"y\"\n}\n");
    const Ran r = sh("ASAN_OPTIONS=detect_leaks=0 timeout 120 " + std::string(PINLAB_CLI) +
                     " explore --quiet --strategy bounded --bound 0 " + f + " 2>&1");
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_NE(r.out.find("violation: invariant: "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("invariant broken between operations"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace pl::scenario::test
