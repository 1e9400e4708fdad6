#include "scenario/matrix.h"

#include <cctype>
#include <utility>

#include "scenario/lexer.h"

namespace pl::scenario {
namespace {

struct MatrixVar {
    std::string name;
    std::vector<std::string> values;
    int line;
    size_t name_col0;
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

Diagnostic make_diag(const std::string& file, int line, size_t col0, std::string msg, const std::string& text) {
    return Diagnostic{file, {line, static_cast<int>(col0) + 1}, std::move(msg), text};
}

// `matrix NAME = v1 | v2 ...`; a value is a word (no blanks, '|' or '#') or a
// "string" whose bytes are substituted without the quotes.
bool parse_matrix_line(const std::string& file, int lineno, const std::string& line, MatrixVar* var, Diagnostic* d) {
    size_t i = 0;
    auto skip = [&] { while (i < line.size() && is_space(line[i])) ++i; };
    skip();
    i += 6;  // "matrix"
    skip();
    const size_t name_at = i;
    while (i < line.size() && (std::isalnum(static_cast<unsigned char>(line[i])) || line[i] == '_')) ++i;
    if (i == name_at || std::isdigit(static_cast<unsigned char>(line[name_at]))) {
        *d = make_diag(file, lineno, name_at, "expected a matrix variable name after 'matrix'", line);
        return false;
    }
    var->name = line.substr(name_at, i - name_at);
    var->line = lineno;
    var->name_col0 = name_at;
    skip();
    if (i >= line.size() || line[i] != '=') {
        *d = make_diag(file, lineno, i, "expected '=' after the matrix variable name", line);
        return false;
    }
    ++i;
    for (;;) {
        skip();
        if (i >= line.size() || line[i] == '#' || line[i] == '|') {
            *d = make_diag(file, lineno, i, "expected a value (a word or a \"string\")", line);
            return false;
        }
        std::string value;
        if (line[i] == '"') {
            // The literal's extent first, then the lexer's string rules on it.
            size_t j = i + 1;
            while (j < line.size() && line[j] != '"') j += line[j] == '\\' ? 2 : 1;
            std::vector<Token> toks;
            LexError err;
            if (!lex_line(std::string_view(line).substr(i, j + 1 - i), lineno, &toks, &err)) {
                *d = make_diag(file, lineno, i + static_cast<size_t>(err.loc.col) - 1, err.message, line);
                return false;
            }
            value = toks[0].text;
            i = j + 1;
        } else {
            const size_t at = i;
            while (i < line.size() && !is_space(line[i]) && line[i] != '|' && line[i] != '#') ++i;
            value = line.substr(at, i - at);
        }
        var->values.push_back(std::move(value));
        skip();
        if (i >= line.size() || line[i] == '#') break;
        if (line[i] != '|') {
            *d = make_diag(file, lineno, i, "expected '|' between matrix values", line);
            return false;
        }
        ++i;
    }
    return true;
}

}  // namespace

std::vector<std::string> split_lines(std::string_view text) {
    std::vector<std::string> lines;
    size_t start = 0;
    while (start <= text.size()) {
        size_t nl = text.find('\n', start);
        if (nl == std::string_view::npos) {
            if (start < text.size()) lines.emplace_back(text.substr(start));
            break;
        }
        std::string_view l = text.substr(start, nl - start);
        if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
        lines.emplace_back(l);
        start = nl + 1;
    }
    return lines;
}

bool is_matrix_line(std::string_view line) {
    size_t i = 0;
    while (i < line.size() && is_space(line[i])) ++i;
    if (line.substr(i, 6) != "matrix") return false;
    return i + 6 == line.size() || is_space(line[i + 6]);
}

bool expand_matrix(const std::string& file, const std::vector<std::string>& lines, std::vector<Expansion>* out,
                   Diagnostic* diag) {
    out->clear();
    if (lines.size() > kMaxLines) {
        *diag = Diagnostic{file, {static_cast<int>(kMaxLines) + 1, 1},
                           "too many lines (at most " + std::to_string(kMaxLines) + ")", ""};
        return false;
    }
    for (size_t n = 0; n < lines.size(); ++n) {
        if (lines[n].size() > kMaxLineLength) {
            *diag = Diagnostic{file, {static_cast<int>(n) + 1, static_cast<int>(kMaxLineLength) + 1},
                               "line too long (at most " + std::to_string(kMaxLineLength) + " bytes)",
                               lines[n].substr(0, 80)};
            return false;
        }
    }
    std::vector<MatrixVar> vars;
    size_t product = 1;
    for (size_t n = 0; n < lines.size(); ++n) {
        if (!is_matrix_line(lines[n])) continue;
        MatrixVar v;
        if (!parse_matrix_line(file, static_cast<int>(n) + 1, lines[n], &v, diag)) return false;
        for (const MatrixVar& o : vars) {
            if (o.name == v.name) {
                *diag = make_diag(file, v.line, v.name_col0, "matrix variable '" + v.name +
                                  "' already defined on line " + std::to_string(o.line), lines[n]);
                return false;
            }
        }
        product *= v.values.size();
        if (product > kMaxExpansions) {
            *diag = make_diag(file, v.line, v.name_col0,
                              "too many matrix expansions: more than " + std::to_string(kMaxExpansions), lines[n]);
            return false;
        }
        vars.push_back(std::move(v));
    }
    // Each expansion: pick values by a mixed-radix counter.
    size_t total = 0;
    for (size_t e = 0; e < product; ++e) {
        std::vector<size_t> pick(vars.size());
        size_t rest = e;
        for (size_t v = vars.size(); v-- > 0;) {
            pick[v] = rest % vars[v].values.size();
            rest /= vars[v].values.size();
        }
        Expansion x;
        if (!vars.empty()) {
            x.suffix = "[";
            for (size_t v = 0; v < vars.size(); ++v)
                x.suffix += (v ? "," : "") + vars[v].name + "=" + vars[v].values[pick[v]];
            x.suffix += "]";
        }
        for (size_t n = 0; n < lines.size(); ++n) {
            const std::string& l = lines[n];
            const size_t cut = comment_start(l);
            std::string s;
            for (size_t i = 0; i < l.size(); ++i) {
                if (i >= cut || l[i] != '$' || i + 1 >= l.size() || l[i + 1] != '{') {
                    s += l[i];
                    continue;
                }
                const size_t close = l.find('}', i + 2);
                if (close == std::string::npos) {
                    *diag = make_diag(file, static_cast<int>(n) + 1, i, "unterminated '${': expected '}'", l);
                    return false;
                }
                const std::string name = l.substr(i + 2, close - i - 2);
                const MatrixVar* var = nullptr;
                for (size_t v = 0; v < vars.size(); ++v)
                    if (vars[v].name == name) var = &vars[v];
                if (!var) {
                    *diag = make_diag(file, static_cast<int>(n) + 1, i,
                                      "unknown matrix variable '" + name + "' (expected one of the `matrix` lines' names)",
                                      l);
                    return false;
                }
                s += var->values[pick[static_cast<size_t>(var - vars.data())]];
                if (s.size() > kMaxLineLength * 4) {
                    *diag = make_diag(file, static_cast<int>(n) + 1, i, "line too long after substitution", l);
                    return false;
                }
                i = close;
            }
            x.lines.push_back(std::move(s));
        }
        for (const std::string& l : x.lines) total += l.size();
        if (total > kMaxExpandedBytes) {
            *diag = Diagnostic{file, {vars.empty() ? 0 : vars.back().line, 1},
                               "matrix expansion too large (over " + std::to_string(kMaxExpandedBytes >> 20) + " MiB)",
                               vars.empty() ? "" : lines[static_cast<size_t>(vars.back().line - 1)]};
            return false;
        }
        out->push_back(std::move(x));
    }
    return true;
}

}  // namespace pl::scenario
