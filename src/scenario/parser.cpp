#include "scenario/parser.h"

#include <algorithm>
#include <map>
#include <utility>

#include "base/config.h"
#include "scenario/lexer.h"

namespace pl::scenario {
namespace {

constexpr std::string_view kReportKinds[] = {"warn",  "put_page_on_pinned", "unpin_not_pinned", "double_unpin",
                                             "leak",  "pinned_page_moved",  "dangling_vma",     "pfnmap_gup"};

struct PageProp {
    std::string_view name;
    Type type;
};
constexpr PageProp kPageProps[] = {
    {"refcount", Type::Int},        {"pincount", Type::Int},         {"mapcount", Type::Int},
    {"folio_refcount", Type::Int},  {"folio_mapcount", Type::Int},   {"folio_nr_pages", Type::Int},
    {"pfn", Type::Int},             {"maybe_dma_pinned", Type::Bool}, {"anon_exclusive", Type::Bool},
    {"exclusive", Type::Bool},
    {"anon", Type::Bool},           {"dirty", Type::Bool},           {"writeback", Type::Bool},
    {"huge", Type::Bool},           {"compound", Type::Bool},        {"zero", Type::Bool},
    {"reserved", Type::Bool},       {"longterm_pinnable", Type::Bool}, {"mapped", Type::Bool},
};

constexpr std::string_view kKeywords[] = {
    "scenario", "config", "matrix", "explore", "task", "thread", "fork", "exit", "expect", "skip", "allow", "not", "if",
    "vmstat", "reports", "dmesg", "pins", "page", "same_frame", "pte", "invariants", "contains", "fill",
    "dirty", "clean", "private", "shared", "anon", "shmem", "memfd", "hugetlb", "file", "device",
};

constexpr std::string_view kFileSystems[] = {"ext4",  "xfs",       "btrfs", "tmpfs",     "memfd",
                                             "memfd-hugetlb", "hugetlbfs", "fsdax", "secretmem"};

std::string join_list(std::span<const std::string_view> xs) {
    std::string s;
    for (std::string_view x : xs) s += (s.empty() ? "" : ", ") + std::string(x);
    return s;
}

// Thrown inside the parser only (never crosses its boundary): the first error
// of a line ends the parse.
struct ParseFail {
    SourceLoc loc;
    std::string message;
};

class Parser {
public:
    Parser(const std::vector<std::string>& lines, Scenario* out) : lines_(lines), out_(out) {}

    void run() {
        for (size_t n = 0; n < lines_.size(); ++n) {
            lineno_ = static_cast<int>(n) + 1;
            const std::string& line = lines_[n];
            if (is_matrix_line_text(line)) continue;
            LexError err;
            if (!lex_line(line, lineno_, &toks_, &err)) throw ParseFail{err.loc, err.message};
            pos_ = 0;
            if (peek().kind == Tok::End) continue;
            const size_t before = out_->stmts.size();
            if (peek().kind == Tok::RBrace) {
                close_block();
                continue;
            }
            const bool opens = at_ident("thread") && peek(2).kind == Tok::LBrace;
            if (!opens && block_ < 0 && group_started_ && !group_closed_) end_group();
            if (opens) {
                open_block(line);
                continue;
            }
            statement(line);
            for (size_t i = before; i < out_->stmts.size(); ++i) out_->stmts[i].thread = block_;
        }
        if (block_ >= 0)
            fail_msg(out_->thread_locs.back(), "thread block '" + out_->threads.back() + "' is not closed: expected a line '}'");
        if (group_started_ && !group_closed_) end_group();
        if (!config_words_.empty()) {
            // Cross-key checks (ram vs movable, ...) on the whole header.
            auto c = Config::parse(out_->config);
            if (!c.ok()) throw ParseFail{config_loc_, "bad configuration: " + Config::last_error()};
        }
    }

private:
    static bool is_matrix_line_text(const std::string& line) {
        size_t i = line.find_first_not_of(" \t");
        return i != std::string::npos && line.compare(i, 6, "matrix") == 0 &&
               (i + 6 == line.size() || line[i + 6] == ' ' || line[i + 6] == '\t');
    }

    const Token& peek(size_t ahead = 0) const { return toks_[std::min(pos_ + ahead, toks_.size() - 1)]; }
    const Token& next() {
        const Token& t = toks_[pos_];
        if (pos_ + 1 < toks_.size()) ++pos_;
        return t;
    }
    bool at_ident(std::string_view word, size_t ahead = 0) const {
        return peek(ahead).kind == Tok::Ident && peek(ahead).text == word;
    }
    [[noreturn]] void fail(const Token& at, const std::string& expected) const {
        throw ParseFail{at.loc, "expected " + expected + ", got " + describe(at)};
    }
    [[noreturn]] void fail_msg(SourceLoc at, const std::string& msg) const { throw ParseFail{at, msg}; }
    const Token& expect(Tok kind, const std::string& what) {
        if (peek().kind != kind) fail(peek(), what);
        return next();
    }
    void expect_end() {
        if (peek().kind != Tok::End) fail(peek(), "the end of the line");
    }

    bool is_task(std::string_view n) const { return tasks_.count(std::string(n)) != 0; }
    bool is_reserved(std::string_view n) const {
        return std::find(std::begin(kKeywords), std::end(kKeywords), n) != std::end(kKeywords) ||
               find_command(n) != nullptr || const_value(n).has_value() || looks_like_const(n);
    }
    std::string task_ref(const Token& t) {
        if (t.kind != Tok::Ident) fail(t, "a task name");
        auto it = tasks_.find(t.text);
        if (it == tasks_.end())
            fail_msg(t.loc, "unknown task '" + t.text + "' (expected a task declared with `task`, `thread ... of` or `fork ... ->`)");
        if (it->second > 0)
            fail_msg(t.loc, "task '" + t.text + "' has exited (line " + std::to_string(it->second) + ")");
        return t.text;
    }
    void new_name(const Token& t, const char* what) {
        if (t.kind != Tok::Ident) fail(t, std::string("a ") + what + " name");
        if (is_reserved(t.text)) fail_msg(t.loc, "'" + t.text + "' is a reserved word: expected a " + what + " name");
        if (t.text.find('.') != std::string::npos)
            fail_msg(t.loc, "expected a " + std::string(what) + " name without '.', got '" + t.text + "'");
    }
    std::string default_task(SourceLoc at) {
        if (!prefix_task_.empty()) return prefix_task_;
        if (default_task_.empty())
            fail_msg(at, "no task to run this as: expected `task NAME` before the first operation");
        if (tasks_[default_task_] > 0)
            fail_msg(at, "the default task '" + default_task_ + "' has exited: expected an explicit `TASK:` prefix");
        return default_task_;
    }
    void started() { started_ = true; }

    // ---- the race group: `thread NAME {` ... `}` blocks ----------------------
    // Names a block creates are its own until the group ends: a sibling block
    // cannot use them (in some interleavings they would not exist yet); after
    // the group, every block's names are visible.
    void open_block(const std::string& line) {
        const Token& kw = next();  // thread
        const Token& name = next();
        if (block_ >= 0)
            fail_msg(kw.loc, "thread blocks do not nest: close '" + out_->threads.back() + "' (line " +
                                 std::to_string(out_->thread_locs.back().line) + ") with '}' first");
        if (group_closed_)
            fail_msg(kw.loc, "a scenario has one race group: its thread blocks must follow one another (the group "
                             "ended before line " + std::to_string(group_end_line_) + ")");
        new_name(name, "thread");
        for (const std::string& t : out_->threads)
            if (t == name.text) fail_msg(name.loc, "thread '" + name.text + "' already exists");
        next();  // '{'
        expect_end();
        (void)line;
        started();
        if (!group_started_) {
            group_started_ = true;
            snap_tasks_ = tasks_;
            snap_vars_ = vars_;
            snap_default_ = default_task_;
        }
        block_ = static_cast<int>(out_->threads.size());
        block_stmts_ = out_->stmts.size();
        out_->threads.push_back(name.text);
        out_->thread_locs.push_back(kw.loc);
    }

    void close_block() {
        const Token& brace = next();
        if (block_ < 0) fail_msg(brace.loc, "'}' without an open thread block (`thread NAME {`)");
        expect_end();
        const std::string& me = out_->threads[static_cast<size_t>(block_)];
        if (out_->stmts.size() == block_stmts_) fail_msg(brace.loc, "thread block '" + me + "' is empty");
        for (const auto& [name, exited] : tasks_) {
            auto it = snap_tasks_.find(name);
            if (it != snap_tasks_.end() && it->second == exited) continue;
            if (it == snap_tasks_.end()) {
                auto owner = task_owner_.find(name);
                if (owner != task_owner_.end())
                    fail_msg(brace.loc, "task '" + name + "' is created by thread blocks '" + owner->second + "' and '" +
                                            me + "'");
                task_owner_[name] = me;
            }
            acc_tasks_[name] = exited;
        }
        for (const auto& [name, type] : vars_) {
            auto it = snap_vars_.find(name);
            if (it != snap_vars_.end() && it->second == type) continue;
            auto acc = acc_vars_.find(name);
            acc_vars_[name] = acc == acc_vars_.end() || acc->second == type ? type : Type::Any;
        }
        if (default_task_ != snap_default_ && acc_default_.empty()) acc_default_ = default_task_;
        tasks_ = snap_tasks_;
        vars_ = snap_vars_;
        default_task_ = snap_default_;
        block_ = -1;
    }

    void end_group() {
        group_closed_ = true;
        group_end_line_ = lineno_;
        for (const auto& [name, exited] : acc_tasks_) tasks_[name] = exited;
        for (const auto& [name, type] : acc_vars_) vars_[name] = type;
        if (default_task_.empty()) default_task_ = acc_default_;
    }

    // `explore KEY=VALUE ...`: pinlab explore's settings for this scenario.
    void explore_line(Stmt s) {
        next();
        if (block_ >= 0) fail_msg(s.loc, "'explore' belongs outside the thread blocks");
        s.kind = Stmt::Kind::Explore;
        if (peek().kind == Tok::End) fail(peek(), "KEY=VALUE words (expect, strategy, bound, depth, budget, seconds, seed)");
        while (peek().kind != Tok::End) {
            const Token& k = next();
            static constexpr std::string_view kKeys[] = {"expect", "strategy", "bound", "depth", "budget", "seconds", "seed"};
            if (k.kind != Tok::Ident || std::find(std::begin(kKeys), std::end(kKeys), k.text) == std::end(kKeys))
                fail(k, "an explore key (" + join_list(kKeys) + ")");
            expect(Tok::Assign, "'=' after '" + k.text + "'");
            const Token& v = next();
            auto ident_in = [&](std::initializer_list<std::string_view> xs) {
                if (v.kind != Tok::Ident || std::find(xs.begin(), xs.end(), v.text) == xs.end())
                    fail(v, "one of " + join_list(std::vector<std::string_view>(xs)) + " after '" + k.text + "='");
                s.words.emplace_back(k.text, v.text);
            };
            auto int_in = [&](uint64_t lo, uint64_t hi) {
                if (v.kind != Tok::Int || v.value < lo || v.value > hi)
                    fail(v, "an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + " after '" + k.text + "='");
                s.words.emplace_back(k.text, std::to_string(v.value));
            };
            if (k.text == "expect") ident_in({"violation", "none"});
            else if (k.text == "strategy") ident_in({"random", "pct", "bounded"});
            else if (k.text == "bound") int_in(0, 8);
            else if (k.text == "depth") int_in(1, 16);
            else if (k.text == "budget") int_in(1, 1000000000);
            else if (k.text == "seconds") int_in(1, 86400);
            else int_in(0, UINT64_MAX);
        }
        out_->stmts.push_back(std::move(s));
    }

    // ---- statements ----------------------------------------------------------
    // `if COND: STATEMENT` guards one statement (cow.c's memory setups differ
    // by a few steps per memory type; a matrix line picks the type).
    void statement(const std::string& line) {
        if (!at_ident("if")) return statement_body(line);
        next();
        started();
        if (peek().kind == Tok::End) fail(peek(), "a condition after 'if'");
        std::shared_ptr<const Expr> guard = condition();
        expect(Tok::Colon, "':' and a statement after the condition");
        if (peek().kind == Tok::End) fail(peek(), "a statement after 'if CONDITION:'");
        if (at_ident("if") || at_ident("scenario") || at_ident("config") || at_ident("matrix"))
            fail(peek(), "an operation (task, thread, fork, exit, expect, skip, allow, or a command)");
        const size_t before = out_->stmts.size();
        statement_body(line);
        for (size_t i = before; i < out_->stmts.size(); ++i) out_->stmts[i].guard = guard;
    }

    void statement_body(const std::string& line) {
        Stmt s;
        s.loc = peek().loc;
        s.line_text = line;
        prefix_task_.clear();
        const Token& first = peek();
        if (first.kind == Tok::Ident) {
            const std::string& w = first.text;
            if (w == "scenario") {
                if (block_ >= 0) fail_msg(first.loc, "'scenario' belongs outside the thread blocks");
                return scenario_title();
            }
            if (w == "config") {
                if (block_ >= 0) fail_msg(first.loc, "'config' belongs outside the thread blocks");
                return config_line(line);
            }
            if (w == "explore") return explore_line(std::move(s));
            if (w == "task") {
                next();
                started();
                for (;;) {
                    const Token& t = next();
                    new_name(t, "task");
                    if (tasks_.count(t.text)) fail_msg(t.loc, "task '" + t.text + "' already exists");
                    if (vars_.count(t.text)) fail_msg(t.loc, "'" + t.text + "' is already a variable");
                    tasks_[t.text] = 0;
                    if (default_task_.empty()) default_task_ = t.text;
                    Stmt ts = stmt_at(s, Stmt::Kind::Task);
                    ts.names = {t.text};
                    out_->stmts.push_back(std::move(ts));
                    if (peek().kind != Tok::Comma) break;
                    next();
                }
                return expect_end();
            }
            if (w == "thread") {
                // `thread T of A`: clone(CLONE_VM|CLONE_THREAD) of task A.
                next();
                started();
                s.kind = Stmt::Kind::Thread;
                const Token& th = next();
                new_name(th, "thread");
                if (tasks_.count(th.text)) fail_msg(th.loc, "task '" + th.text + "' already exists");
                if (vars_.count(th.text)) fail_msg(th.loc, "'" + th.text + "' is already a variable");
                if (peek().kind == Tok::LBrace) fail_msg(peek().loc, "a thread block cannot be guarded by 'if'");
                if (!at_ident("of")) fail(peek(), "'of' and the task whose thread it is (or '{' to open a thread block)");
                next();
                const std::string of = task_ref(next());
                expect_end();
                tasks_[th.text] = 0;
                s.names = {th.text, of};
                out_->stmts.push_back(std::move(s));
                return;
            }
            if (w == "fork") {
                next();
                started();
                s.kind = Stmt::Kind::Fork;
                s.names.push_back(task_ref(next()));
                expect(Tok::Arrow, "'->' and the child's name");
                const Token& c = next();
                new_name(c, "task");
                if (tasks_.count(c.text)) fail_msg(c.loc, "task '" + c.text + "' already exists");
                if (vars_.count(c.text)) fail_msg(c.loc, "'" + c.text + "' is already a variable");
                expect_end();
                tasks_[c.text] = 0;
                s.names.push_back(c.text);
                out_->stmts.push_back(std::move(s));
                return;
            }
            if (w == "exit") {
                next();
                started();
                s.kind = Stmt::Kind::Exit;
                s.names.push_back(task_ref(next()));
                expect_end();
                tasks_[s.names[0]] = lineno_;
                out_->stmts.push_back(std::move(s));
                return;
            }
            if (w == "expect") {
                next();
                started();
                s.kind = Stmt::Kind::Expect;
                if (at_ident("not")) {
                    next();
                    s.negate = true;
                }
                if (peek().kind == Tok::End) fail(peek(), "a condition after 'expect'");
                s.loc = peek().loc;
                s.expr = condition();
                expect_end();
                out_->stmts.push_back(std::move(s));
                return;
            }
            if (w == "skip") {
                if (block_ >= 0) fail_msg(first.loc, "'skip' belongs outside the thread blocks (a scenario is skipped as a whole)");
                next();
                s.kind = Stmt::Kind::Skip;
                if (at_ident("if")) {
                    next();
                    s.expr = condition();
                }
                s.name = expect(Tok::String, s.expr ? "the reason, a \"string\", after the condition"
                                                    : "'if' or the reason, a \"string\"").text;
                expect_end();
                out_->stmts.push_back(std::move(s));
                return;
            }
            if (w == "allow") {
                next();
                if (!at_ident("reports")) fail(peek(), "'reports' after 'allow'");
                next();
                const Token& k = next();
                if (k.kind != Tok::Ident || !is_report_kind(k.text))
                    fail(k, "a report kind (" + join_list(kReportKinds) + ")");
                expect_end();
                s.kind = Stmt::Kind::Allow;
                s.name = k.text;
                out_->stmts.push_back(std::move(s));
                return;
            }
            if (w == "matrix") return;  // handled by expand_matrix
            // [TASK:] [VAR =] call
            if (peek(1).kind == Tok::Colon) {
                if (!is_task(w)) fail_msg(first.loc, "unknown task '" + w + "' (expected a task declared with `task`)");
                prefix_task_ = task_ref(next());
                next();  // ':'
            }
        }
        started();
        s.kind = Stmt::Kind::Do;
        s.loc = peek().loc;
        std::string var;
        Token var_tok;
        if (peek().kind == Tok::Ident && peek(1).kind == Tok::Assign) {
            var_tok = next();
            new_name(var_tok, "variable");
            if (is_task(var_tok.text)) fail_msg(var_tok.loc, "'" + var_tok.text + "' is a task, not a variable");
            next();
            var = var_tok.text;
        }
        if (var.empty()) {
            if (peek().kind != Tok::Ident || !find_command(peek().text)) {
                if (peek().kind == Tok::Ident && !is_reserved(peek().text) && !vars_.count(peek().text) &&
                    !is_task(peek().text))
                    fail_msg(peek().loc, "unknown command '" + peek().text + "'");
                fail(peek(), "a statement (task, thread, fork, exit, expect, skip, allow, or a command such as mmap)");
            }
            s.expr = term();
        } else {
            s.expr = condition();
        }
        if (!var.empty()) {
            vars_[var] = s.expr->type;
            s.name = var;
        } else if (s.expr->kind != Expr::Kind::Call) {
            fail_msg(s.loc, "expected a command");
        }
        expect_end();
        out_->stmts.push_back(std::move(s));
    }

    Stmt stmt_at(const Stmt& like, Stmt::Kind kind) {
        Stmt s;
        s.kind = kind;
        s.loc = like.loc;
        s.line_text = like.line_text;
        return s;
    }

    void scenario_title() {
        const Token& kw = next();
        if (!out_->title.empty()) fail_msg(kw.loc, "a second `scenario` line: one scenario per file");
        if (started_) fail_msg(kw.loc, "`scenario` must come before the first operation");
        const Token& t = expect(Tok::String, "the scenario's title, a \"string\"");
        out_->title = t.text.empty() ? " " : t.text;
        expect_end();
    }

    // config key=value ...: the words are Config's own syntax, checked one by
    // one so that an error points at its word.
    void config_line(const std::string& line) {
        const Token& kw = next();
        if (started_) fail_msg(kw.loc, "`config` must come before the first operation");
        if (config_words_.empty()) config_loc_ = kw.loc;
        const size_t cut = std::min(line.size(), comment_start(line));
        size_t i = static_cast<size_t>(kw.loc.col - 1) + 6;
        bool any = false;
        while (i < cut) {
            while (i < cut && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
            if (i >= cut) break;
            size_t j = i;
            while (j < cut && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') ++j;
            const std::string word = line.substr(i, j - i);
            const SourceLoc at{lineno_, static_cast<int>(i) + 1};
            const size_t eq = word.find('=');
            if (eq == std::string::npos || eq == 0) fail_msg(at, "expected key=value, got '" + word + "'");
            Config c;
            std::string why;
            if (!c.set(std::string_view(word).substr(0, eq), std::string_view(word).substr(eq + 1), &why))
                fail_msg(at, why.empty() ? "bad configuration word '" + word + "'" : why);
            config_words_.push_back(word);
            out_->config += (out_->config.empty() ? "" : " ") + word;
            any = true;
            i = j;
        }
        if (!any) fail_msg({lineno_, static_cast<int>(cut) + 1}, "expected key=value words after 'config'");
    }

    // ---- expressions -------------------------------------------------------------
    static bool numeric(Type t) { return t == Type::Int || t == Type::Bool || t == Type::Any; }

    ExprPtr make(Expr::Kind k, SourceLoc loc, Type type) {
        auto e = std::make_unique<Expr>();
        e->kind = k;
        e->loc = loc;
        e->type = type;
        return e;
    }

    // condition := term [ (== != < <= > >= contains) term ]
    ExprPtr condition() {
        ExprPtr lhs = term();
        const Token& op = peek();
        std::string opname;
        switch (op.kind) {
            case Tok::Eq: opname = "=="; break;
            case Tok::Ne: opname = "!="; break;
            case Tok::Lt: opname = "<"; break;
            case Tok::Le: opname = "<="; break;
            case Tok::Gt: opname = ">"; break;
            case Tok::Ge: opname = ">="; break;
            case Tok::Assign: fail_msg(op.loc, "expected '==' to compare, got '='");
            default:
                if (op.kind == Tok::Ident && op.text == "contains") opname = "contains";
        }
        if (opname.empty()) return lhs;
        next();
        if (peek().kind == Tok::End) fail(peek(), "a value after '" + opname + "'");
        ExprPtr rhs = term();
        ExprPtr c = make(opname == "contains" ? Expr::Kind::Contains : Expr::Kind::Compare, op.loc, Type::Bool);
        c->op = opname;
        const Type a = lhs->type, b = rhs->type;
        if (opname == "contains") {
            if ((a != Type::Str && a != Type::Any) || (b != Type::Str && b != Type::Any))
                fail_msg(op.loc, "'contains' expects strings on both sides, got " + std::string(type_name(a)) +
                                     " and " + std::string(type_name(b)));
        } else if (opname != "==" && opname != "!=") {
            if (!numeric(a) || !numeric(b))
                fail_msg(op.loc, "'" + opname + "' compares integers, got " + std::string(type_name(a)) + " and " +
                                     std::string(type_name(b)));
        } else if (a != Type::Any && b != Type::Any) {
            const bool pagey_a = a == Type::Page || a == Type::Pages, pagey_b = b == Type::Page || b == Type::Pages;
            if (!(numeric(a) && numeric(b)) && !(pagey_a && pagey_b) && a != b)
                fail_msg(op.loc, "cannot compare " + std::string(type_name(a)) + " with " + std::string(type_name(b)));
        }
        c->kids.push_back(std::move(lhs));
        c->kids.push_back(std::move(rhs));
        return c;
    }

    // term := or_expr (calls and queries are primaries)
    ExprPtr term() { return or_expr(); }

    ExprPtr or_expr() {
        ExprPtr e = add_expr();
        while (peek().kind == Tok::Pipe) {
            const Token& op = next();
            ExprPtr r = add_expr();
            e = binary(Expr::Kind::Or, op, std::move(e), std::move(r));
        }
        return e;
    }
    // Among a command's arguments, "a -1" is two arguments: a '-' with a
    // blank before it and none after starts a negative one. Elsewhere (and
    // inside parentheses) it subtracts.
    bool starts_negative_argument() const {
        if (!in_args_ || peek().kind != Tok::Minus || pos_ == 0) return false;
        const Token& minus = peek();
        return toks_[pos_ - 1].end_col < minus.loc.col && peek(1).loc.col == minus.end_col;
    }

    ExprPtr add_expr() {
        ExprPtr e = unary();
        while (peek().kind == Tok::Plus || (peek().kind == Tok::Minus && !starts_negative_argument())) {
            const Token& op = next();
            ExprPtr r = unary();
            e = binary(op.kind == Tok::Plus ? Expr::Kind::Add : Expr::Kind::Sub, op, std::move(e), std::move(r));
        }
        return e;
    }
    ExprPtr binary(Expr::Kind k, const Token& op, ExprPtr a, ExprPtr b) {
        if (!numeric(a->type) || !numeric(b->type))
            fail_msg(op.loc, "'" + op.text + "' expects integers, got " + std::string(type_name(a->type)) + " and " +
                                 std::string(type_name(b->type)));
        ExprPtr e = make(k, op.loc, Type::Int);
        e->kids.push_back(std::move(a));
        e->kids.push_back(std::move(b));
        return e;
    }
    // Nesting (unary minus, parentheses, page references inside page
    // references) is bounded so that no input can exhaust the stack.
    struct Nest {
        Parser* p;
        Nest(Parser* parser, SourceLoc at) : p(parser) {
            if (++p->depth_ > kMaxDepth) p->fail_msg(at, "expression nested too deeply");
        }
        ~Nest() { --p->depth_; }
        Nest(const Nest&) = delete;
        Nest& operator=(const Nest&) = delete;
    };
    static constexpr int kMaxDepth = 200;

    ExprPtr unary() {
        Nest nest(this, peek().loc);
        if (peek().kind == Tok::Minus) {
            const Token& op = next();
            ExprPtr a = unary();
            if (!numeric(a->type)) fail_msg(op.loc, "'-' expects an integer, got " + std::string(type_name(a->type)));
            ExprPtr e = make(Expr::Kind::Neg, op.loc, Type::Int);
            e->kids.push_back(std::move(a));
            return e;
        }
        return primary();
    }

    ExprPtr primary() {
        Nest nest(this, peek().loc);
        const Token& t = peek();
        switch (t.kind) {
            case Tok::Int: {
                next();
                ExprPtr e = make(Expr::Kind::Literal, t.loc, Type::Int);
                e->value = Value::integer(static_cast<int64_t>(t.value));
                return e;
            }
            case Tok::String: {
                next();
                ExprPtr e = make(Expr::Kind::Literal, t.loc, Type::Str);
                e->value = Value::str(t.text);
                return e;
            }
            case Tok::LParen: {
                next();
                const bool saved = in_args_;
                in_args_ = false;
                ExprPtr e = condition();
                in_args_ = saved;
                expect(Tok::RParen, "')'");
                return e;
            }
            case Tok::Ident: break;
            default: fail(t, "a value (a number, a \"string\", a name or a command)");
        }
        const std::string& w = t.text;
        const SourceLoc loc = t.loc;
        if (const CommandSpec* spec = find_command(w)) return call(spec, prefix_task_);
        if (is_task(w) && peek(1).kind == Tok::Colon) {
            const std::string task = task_ref(next());
            next();
            const Token& c = peek();
            const CommandSpec* spec = c.kind == Tok::Ident ? find_command(c.text) : nullptr;
            if (!spec) fail(c, "a command after '" + task + ":'");
            return call(spec, task);
        }
        if (w == "vmstat") {
            next();
            const Token& n = expect(Tok::Ident, "a vmstat counter name (e.g. nr_foll_pin_acquired)");
            ExprPtr e = make(Expr::Kind::Vmstat, loc, Type::Int);
            e->name = n.text;
            return e;
        }
        if (w == "reports") {
            next();
            ExprPtr e = make(Expr::Kind::Reports, loc, Type::Int);
            if (peek().kind == Tok::Ident && !at_ident("contains")) {
                const Token& k = next();
                if (!is_report_kind(k.text)) fail(k, "a report kind (" + join_list(kReportKinds) + ")");
                e->name = k.text;
            }
            return e;
        }
        if (w == "dmesg") {
            next();
            return make(Expr::Kind::Dmesg, loc, Type::Str);
        }
        if (w == "invariants") {
            next();
            return make(Expr::Kind::Invariants, loc, Type::Bool);
        }
        if (w == "pins") {
            next();
            ExprPtr e = make(Expr::Kind::PinBalance, loc, Type::Int);
            if (peek().kind == Tok::String) e->name = next().text;
            return e;
        }
        if (w == "page") {
            next();
            ExprPtr ref = page_ref();
            const Token& p = peek();
            Type type = Type::Int;
            if (p.kind != Tok::Ident || !page_property_type(p.text, &type)) {
                std::string props;
                for (const PageProp& pp : kPageProps) props += (props.empty() ? "" : ", ") + std::string(pp.name);
                fail(p, "a page property (" + props + ")");
            }
            next();
            ExprPtr e = make(Expr::Kind::PageProp, loc, type);
            e->name = p.text;
            e->kids.push_back(std::move(ref));
            return e;
        }
        if (w == "same_frame") {
            next();
            ExprPtr e = make(Expr::Kind::SameFrame, loc, Type::Bool);
            e->kids.push_back(page_ref());
            e->kids.push_back(page_ref());
            return e;
        }
        if (w == "pte") {
            next();
            ExprPtr e = make(Expr::Kind::Pte, loc, Type::Str);
            ExprPtr ref = page_ref();
            if (ref->kind != Expr::Kind::PageAt) fail_msg(ref->loc, "expected an address (TASK:ADDR) after 'pte'");
            e->kids.push_back(std::move(ref));
            return e;
        }
        if (auto c = const_value(w)) {
            next();
            ExprPtr e = make(Expr::Kind::Literal, loc, (w == "true" || w == "false") ? Type::Bool : Type::Int);
            e->value = e->type == Type::Bool ? Value::boolean(*c != 0) : Value::integer(*c);
            return e;
        }
        auto v = vars_.find(w);
        if (v != vars_.end()) {
            next();
            if (peek().kind == Tok::LBracket) {
                if (v->second != Type::Pages && v->second != Type::Any)
                    fail_msg(peek().loc, "'" + w + "' is " + std::string(type_name(v->second)) +
                                             ", not a page list: it cannot be indexed");
                next();
                ExprPtr idx = or_expr();
                if (!numeric(idx->type)) fail_msg(idx->loc, "expected an integer index");
                expect(Tok::RBracket, "']'");
                ExprPtr e = make(Expr::Kind::Index, loc, Type::Page);
                e->name = w;
                e->kids.push_back(std::move(idx));
                return e;
            }
            ExprPtr e = make(Expr::Kind::Var, loc, v->second);
            e->name = w;
            return e;
        }
        if (is_task(w)) fail(peek(1), "':' after the task name '" + w + "'");
        if (looks_like_const(w)) fail_msg(loc, "unknown constant '" + w + "'");
        if (is_reserved(w)) fail(t, "a value");
        fail_msg(loc, "unknown variable '" + w + "' (not assigned before this line)");
    }

    // A page: P[i] or a page variable, or the page mapped at [TASK:]ADDR.
    ExprPtr page_ref() {
        const Token& t = peek();
        if (t.kind == Tok::Ident) {
            auto v = vars_.find(t.text);
            if (v != vars_.end() && (v->second == Type::Page || v->second == Type::Pages)) {
                ExprPtr e = primary();
                if (e->type == Type::Pages)
                    fail_msg(e->loc, "expected one page: index the page list, e.g. " + t.text + "[0]");
                return e;
            }
            if (is_task(t.text) && peek(1).kind == Tok::Colon) {
                const std::string task = task_ref(next());
                next();
                ExprPtr addr = add_expr();
                if (!numeric(addr->type)) fail_msg(addr->loc, "expected an address after '" + task + ":'");
                ExprPtr e = make(Expr::Kind::PageAt, t.loc, Type::Page);
                e->task = task;
                e->kids.push_back(std::move(addr));
                return e;
            }
        }
        if (t.kind == Tok::End) fail(t, "a page (P[i], TASK:ADDR or ADDR)");
        ExprPtr addr = add_expr();
        if (addr->type == Type::Page) return addr;
        if (!numeric(addr->type)) fail_msg(addr->loc, "expected a page (P[i], TASK:ADDR or ADDR)");
        ExprPtr e = make(Expr::Kind::PageAt, t.loc, Type::Page);
        e->task = default_task(t.loc);
        e->kids.push_back(std::move(addr));
        return e;
    }

    bool starts_value(const CommandSpec& spec) const {
        const Token& t = peek();
        switch (t.kind) {
            case Tok::Int:
            case Tok::String:
            case Tok::LParen:
            case Tok::Minus: return true;
            case Tok::Ident:
                if (t.text == "contains") return false;
                for (const Option& o : spec.options)
                    if (o.name == t.text) return false;
                return true;
            default: return false;
        }
    }

    ExprPtr typed(Type want, const char* what) {
        ExprPtr e = or_expr();
        const bool ok = want == Type::Int ? numeric(e->type)
                                          : (e->type == want || e->type == Type::Any ||
                                             (want == Type::Pages && e->type == Type::Page));
        if (!ok) fail_msg(e->loc, std::string("expected ") + what + ", got " + std::string(type_name(e->type)));
        return e;
    }

    ExprPtr call(const CommandSpec* spec, const std::string& task) {
        const Token& name = next();
        auto c = std::make_unique<Call>();
        c->spec = spec;
        c->loc = name.loc;
        if (spec->uses_task) c->task = task.empty() ? default_task(name.loc) : task;
        else c->task = task;
        for (size_t i = 0; i < spec->args.size(); ++i) {
            const bool required = static_cast<int>(i) < spec->required;
            if (!starts_value(*spec)) {
                if (required) fail(peek(), "argument " + std::to_string(i + 1) + " of " + std::string(spec->name) +
                                               " (usage: " + std::string(spec->usage) + ")");
                break;
            }
            const bool saved = in_args_;
            in_args_ = true;
            c->args.push_back(argument(spec->args[i], *c));
            in_args_ = saved;
        }
        // Options, in any order, each once.
        while (peek().kind == Tok::Ident) {
            const Option* opt = nullptr;
            for (const Option& o : spec->options)
                if (o.name == peek().text) opt = &o;
            if (!opt) break;
            const Token& o = next();
            for (auto& [n, v] : c->options)
                if (n == o.text) fail_msg(o.loc, "option '" + o.text + "' given twice");
            ExprPtr v;
            const bool saved = in_args_;
            in_args_ = true;
            if (opt->takes_value) v = typed(Type::Int, ("a value for '" + o.text + "'").c_str());
            in_args_ = saved;
            c->options.emplace_back(o.text, std::move(v));
            // `locked` (the *_remote calls): the interpreter stores *locked
            // after the call in the variable `locked`.
            if (o.text == "locked") vars_["locked"] = Type::Int;
        }
        if (peek().kind == Tok::Arrow) {
            const Token& arrow = next();
            if (!spec->pages_out)
                fail_msg(arrow.loc, std::string(spec->name) + " fills no pages[] array: '->' not expected");
            const Token& v = next();
            new_name(v, "page list");
            if (is_task(v.text)) fail_msg(v.loc, "'" + v.text + "' is a task, not a variable");
            c->pages_out = v.text;
            c->pages_out_loc = v.loc;
            vars_[v.text] = Type::Pages;
        }
        if (peek().kind == Tok::Ident && !at_ident("contains"))
            fail(peek(), "the end of " + std::string(spec->name) + "'s arguments (usage: " + std::string(spec->usage) + ")");
        ExprPtr e = make(Expr::Kind::Call, name.loc, spec->result);
        e->call = std::move(c);
        return e;
    }

    ExprPtr argument(Arg kind, Call& c) {
        const Token& t = peek();
        switch (kind) {
            case Arg::Int: return typed(Type::Int, "an integer");
            case Arg::Str: return typed(Type::Str, "a \"string\"");
            case Arg::File: return typed(Type::File, "a file (from `open`)");
            case Arg::Page: {
                ExprPtr e = primary();
                if (e->type != Type::Page && e->type != Type::Any)
                    fail_msg(e->loc, "expected a page (P[i]), got " + std::string(type_name(e->type)));
                return e;
            }
            case Arg::Pages: {
                ExprPtr e = primary();
                if (e->type != Type::Page && e->type != Type::Pages && e->type != Type::Any)
                    fail_msg(e->loc, "expected a page list or a page, got " + std::string(type_name(e->type)));
                return e;
            }
            case Arg::Bool: {
                if (at_ident("dirty") || at_ident("clean")) {
                    next();
                    ExprPtr e = make(Expr::Kind::Literal, t.loc, Type::Bool);
                    e->value = Value::boolean(t.text == "dirty");
                    return e;
                }
                return typed(Type::Int, "dirty, clean, true or false");
            }
            case Arg::Prot: {
                if (t.kind == Tok::Ident && (t.text == "none" || t.text.find_first_not_of("rwx") == std::string::npos)) {
                    int prot = 0;
                    if (t.text != "none") {
                        for (char ch : t.text) {
                            const int bit = ch == 'r' ? PROT_READ_ : ch == 'w' ? PROT_WRITE_ : PROT_EXEC_;
                            if (prot & bit) fail_msg(t.loc, "expected a protection (r, rw, rwx, none), got '" + t.text + "'");
                            prot |= bit;
                        }
                    }
                    next();
                    ExprPtr e = make(Expr::Kind::Literal, t.loc, Type::Int);
                    e->value = Value::integer(prot);
                    return e;
                }
                if (t.kind == Tok::Ident && !const_value(t.text) && !vars_.count(t.text))
                    fail(t, "a protection (r, rw, rwx, none, or PROT_* flags)");
                return typed(Type::Int, "a protection (r, rw, rwx, none, or PROT_* flags)");
            }
            case Arg::Share: {
                if (at_ident("private") || at_ident("shared")) {
                    next();
                    ExprPtr e = make(Expr::Kind::Literal, t.loc, Type::Int);
                    e->value = Value::integer(t.text == "shared" ? MAP_SHARED_ : MAP_PRIVATE_);
                    return e;
                }
                fail(t, "'private' or 'shared'");
            }
            case Arg::Backing: {
                if (t.kind != Tok::Ident) fail(t, "a backing (anon, shmem, memfd, hugetlb, file FS[:SIZE], device NAME)");
                if (t.text == "anon" || t.text == "shmem" || t.text == "memfd" || t.text == "hugetlb") {
                    next();
                    c.backing = t.text;
                    return nullptr;
                }
                if (t.text == "device") {
                    next();
                    const Token& d = peek();
                    if (d.kind != Tok::Ident || (d.text != "pfnmap" && d.text != "mixedmap"))
                        fail(d, "a device name (pfnmap, mixedmap)");
                    next();
                    c.backing = "device";
                    c.backing_fs = d.text;
                    return nullptr;
                }
                if (t.text != "file") fail(t, "a backing (anon, shmem, memfd, hugetlb, file FS[:SIZE], device NAME)");
                next();
                c.backing = "file";
                const Token& f = peek();
                auto v = f.kind == Tok::Ident ? vars_.find(f.text) : vars_.end();
                if (v != vars_.end()) {
                    c.backing_file = typed(Type::File, "a file (from `open`)");
                    return nullptr;
                }
                if (f.kind != Tok::Ident) fail(f, "a file system (" + join_list(kFileSystems) + ") or a file variable");
                std::string fs = next().text;
                // memfd-hugetlb: the lexer splits at '-'; join glued pieces.
                while (peek().kind == Tok::Minus && peek(1).kind == Tok::Ident &&
                       peek().loc.col == f.loc.col + static_cast<int>(fs.size()) &&
                       peek(1).loc.col == peek().loc.col + 1) {
                    next();
                    fs += "-" + next().text;
                }
                if (std::find(std::begin(kFileSystems), std::end(kFileSystems), fs) == std::end(kFileSystems))
                    fail_msg(f.loc, "expected a file system (" + join_list(kFileSystems) + ") or a file variable, got '" +
                                        fs + "'");
                c.backing_fs = fs;
                if (peek().kind == Tok::Colon) {
                    next();
                    c.backing_size = typed(Type::Int, "the file's size");
                }
                return nullptr;
            }
            case Arg::Data: {
                if (at_ident("fill")) {
                    next();
                    ExprPtr e = make(Expr::Kind::Fill, t.loc, Type::Int);
                    e->kids.push_back(typed(Type::Int, "the fill byte"));
                    e->kids.push_back(typed(Type::Int, "the fill length"));
                    return e;
                }
                return typed(Type::Str, "\"bytes\" or fill BYTE LEN");
            }
        }
        fail(t, "an argument");
    }

    // <sys/mman.h> values, spelled here to keep this file free of the C API.
    static constexpr int PROT_READ_ = 1, PROT_WRITE_ = 2, PROT_EXEC_ = 4;
    static constexpr int MAP_SHARED_ = 1, MAP_PRIVATE_ = 2;

    const std::vector<std::string>& lines_;
    Scenario* out_;
    std::vector<Token> toks_;
    size_t pos_ = 0;
    int lineno_ = 0;
    int depth_ = 0;
    bool in_args_ = false;
    bool started_ = false;
    std::map<std::string, int> tasks_;  // name -> line it exited on (0: alive)
    std::string default_task_;
    std::string prefix_task_;
    std::map<std::string, Type> vars_;
    std::vector<std::string> config_words_;
    SourceLoc config_loc_;
    // The race group (see open_block()).
    int block_ = -1;              // the open block's thread number, or -1
    size_t block_stmts_ = 0;      // statements before the open block
    bool group_started_ = false, group_closed_ = false;
    int group_end_line_ = 0;
    std::map<std::string, int> snap_tasks_, acc_tasks_;
    std::map<std::string, Type> snap_vars_, acc_vars_;
    std::map<std::string, std::string> task_owner_;  // task created in a block -> the block
    std::string snap_default_, acc_default_;
};

}  // namespace

bool is_report_kind(std::string_view kind) {
    return std::find(std::begin(kReportKinds), std::end(kReportKinds), kind) != std::end(kReportKinds);
}

bool page_property_type(std::string_view prop, Type* type) {
    for (const PageProp& p : kPageProps) {
        if (p.name == prop) {
            *type = p.type;
            return true;
        }
    }
    return false;
}

bool parse_scenario(const std::string& file, const std::string& name, const std::vector<std::string>& lines,
                    Scenario* out, Diagnostic* diag) {
    *out = Scenario{};
    out->file = file;
    out->name = name;
    try {
        Parser p(lines, out);
        p.run();
    } catch (const ParseFail& f) {
        diag->file = name;
        diag->loc = f.loc;
        diag->message = f.message;
        diag->source_line = f.loc.line > 0 && static_cast<size_t>(f.loc.line) <= lines.size()
                                ? lines[static_cast<size_t>(f.loc.line) - 1]
                                : "";
        return false;
    }
    return true;
}

}  // namespace pl::scenario
