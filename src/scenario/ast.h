// pinlab scenarios — the syntax tree of one scenario (one matrix expansion).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "scenario/commands.h"
#include "scenario/diagnostic.h"
#include "scenario/value.h"

namespace pl::scenario {

struct Call;

struct Expr {
    enum class Kind : uint8_t {
        Literal,    // value
        Var,        // name
        Index,      // name[kids[0]]: one page of a page list
        Neg,        // -kids[0]
        Add, Sub, Or,  // kids[0] op kids[1]
        Fill,       // `fill BYTE LEN` (write's data): kids[0], kids[1]
        Call,       // call
        Vmstat,     // vmstat NAME (name)
        Reports,    // reports [KIND] (name, empty: all)
        Dmesg,      // dmesg
        PinBalance, // pins [OWNER] (name)
        PageProp,   // page PAGEREF PROP: kids[0] is the page reference, name the property
        PageAt,     // TASK:ADDR as a page reference: task, kids[0] the address
        SameFrame,  // same_frame REF REF: kids[0], kids[1] (PageAt or page values)
        Pte,        // pte TASK:ADDR (kids[0] a PageAt)
        Invariants, // invariants: pl_kernel_check() == 0
        Compare,    // kids[0] cmp kids[1]
        Contains,   // kids[0] contains kids[1] (strings)
    };
    Kind kind = Kind::Literal;
    SourceLoc loc;
    Value value;              // Literal
    std::string name;         // Var, Index, Vmstat, Reports, PinBalance, PageProp
    std::string task;         // PageAt (resolved: never empty)
    std::string op;           // Compare: "==", "!=", "<", "<=", ">", ">="
    std::vector<std::unique_ptr<Expr>> kids;
    std::unique_ptr<Call> call;
    Type type = Type::Any;    // statically known type
};

using ExprPtr = std::unique_ptr<Expr>;

struct Call {
    const CommandSpec* spec = nullptr;
    SourceLoc loc;
    std::string task;             // the task it runs as (resolved; empty if !spec->uses_task)
    std::vector<ExprPtr> args;    // positional, as spec->args (missing optional ones absent)
    // Backing (mmap): "anon", "shmem", "memfd", "hugetlb", "file"; fs name
    // for file FS[:SIZE] (then backing_size may be set) or a File expression.
    std::string backing;
    std::string backing_fs;
    ExprPtr backing_size;
    ExprPtr backing_file;
    std::vector<std::pair<std::string, ExprPtr>> options;  // option name, value (may be null)
    std::string pages_out;        // `-> P`
    SourceLoc pages_out_loc;
};

// The value of option `name` of a call (null for a flag without one); with
// `present`, whether the option was given at all.
inline const Expr* call_option(const Call& c, std::string_view name, bool* present = nullptr) {
    for (const auto& [n, v] : c.options) {
        if (n == name) {
            if (present) *present = true;
            return v.get();
        }
    }
    if (present) *present = false;
    return nullptr;
}

struct Stmt {
    enum class Kind : uint8_t {
        Task,     // task NAME: names[0]
        Thread,   // thread names[0] of names[1]
        Fork,     // fork names[0] -> names[1]
        Exit,     // exit names[0]
        Do,       // [T:] [var =] expr  (var in name)
        Expect,   // expect [not] expr
        Skip,     // skip [if expr] "reason"
        Allow,    // allow reports KIND
        Explore,  // explore KEY=VALUE ...: `pinlab explore`'s settings (words)
    };
    Kind kind = Kind::Do;
    SourceLoc loc;
    std::vector<std::string> names;
    std::string name;      // Do: variable assigned (may be empty); Skip: reason; Allow: kind
    bool negate = false;   // Expect: `not`
    ExprPtr expr;          // Do, Expect, Skip (condition; may be null)
    // `if COND: STATEMENT`: run only when COND holds (evaluated when reached).
    // Shared: one guarded `task A, B` line yields several statements.
    std::shared_ptr<const Expr> guard;
    std::string line_text; // for diagnostics
    // The race thread (`thread NAME { ... }` block, numbered in file order)
    // the statement belongs to; -1 outside the blocks.
    int thread = -1;
    std::vector<std::pair<std::string, std::string>> words;  // Explore: key, value
};

struct Scenario {
    std::string file;                 // path as given
    std::string name;                 // file, or file[k=v,...] for a matrix expansion
    std::string title;                // from `scenario "..."`
    std::string config;               // the `config` words, space-separated
    std::vector<Stmt> stmts;
    // The race group: the names of its `thread NAME { ... }` blocks, in
    // order, and where each opens. Its statements are contiguous in stmts.
    std::vector<std::string> threads;
    std::vector<SourceLoc> thread_locs;
};

}  // namespace pl::scenario
