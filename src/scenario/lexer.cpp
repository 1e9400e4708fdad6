#include "scenario/lexer.h"

#include <cctype>
#include <limits>

namespace pl::scenario {
namespace {

bool ident_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'; }

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

std::string_view tok_name(Tok t) {
    switch (t) {
        case Tok::Ident: return "a name";
        case Tok::Int: return "a number";
        case Tok::String: return "a string";
        case Tok::Colon: return "':'";
        case Tok::Assign: return "'='";
        case Tok::Eq: return "'=='";
        case Tok::Ne: return "'!='";
        case Tok::Lt: return "'<'";
        case Tok::Le: return "'<='";
        case Tok::Gt: return "'>'";
        case Tok::Ge: return "'>='";
        case Tok::Arrow: return "'->'";
        case Tok::Plus: return "'+'";
        case Tok::Minus: return "'-'";
        case Tok::Pipe: return "'|'";
        case Tok::LBracket: return "'['";
        case Tok::RBracket: return "']'";
        case Tok::LParen: return "'('";
        case Tok::RParen: return "')'";
        case Tok::LBrace: return "'{'";
        case Tok::RBrace: return "'}'";
        case Tok::Comma: return "','";
        case Tok::End: return "the end of the line";
    }
    return "?";
}

std::string describe(const Token& t) {
    switch (t.kind) {
        case Tok::Ident: return "'" + t.text + "'";
        case Tok::Int: return "'" + t.text + "'";
        case Tok::String: return "a string";
        default: return std::string(tok_name(t.kind));
    }
}

size_t comment_start(std::string_view line) {
    bool in_str = false;
    for (size_t i = 0; i < line.size(); ++i) {
        char c = line[i];
        if (in_str) {
            if (c == '\\') ++i;
            else if (c == '"') in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '#') {
            return i;
        }
    }
    return std::string_view::npos;
}

bool lex_line(std::string_view line, int lineno, std::vector<Token>* out, LexError* err) {
    out->clear();
    size_t i = 0;
    auto fail = [&](size_t at, std::string msg) {
        err->loc = {lineno, static_cast<int>(at) + 1};
        err->message = std::move(msg);
        return false;
    };
    while (i < line.size()) {
        const char c = line[i];
        if (c == ' ' || c == '\t' || c == '\r') {
            ++i;
            continue;
        }
        if (c == '#') break;
        Token t;
        t.loc = {lineno, static_cast<int>(i) + 1};
        const size_t start = i;
        if (ident_start(c)) {
            while (i < line.size() && ident_char(line[i])) ++i;
            t.kind = Tok::Ident;
            t.text = std::string(line.substr(start, i - start));
        } else if (std::isdigit(static_cast<unsigned char>(c))) {
            // Digits, then an optional binary-unit suffix; anything else
            // glued on (4Kx, 0xfg) is an error rather than two tokens.
            uint64_t v = 0;
            int base = 10;
            if (c == '0' && i + 1 < line.size() && (line[i + 1] == 'x' || line[i + 1] == 'X')) {
                base = 16;
                i += 2;
                if (i >= line.size() || hex_digit(line[i]) < 0) return fail(start, "expected hex digits after '0x'");
            }
            bool overflow = false;
            while (i < line.size()) {
                int d = base == 16 ? hex_digit(line[i]) : (std::isdigit(static_cast<unsigned char>(line[i])) ? line[i] - '0' : -1);
                if (d < 0) break;
                if (v > (std::numeric_limits<uint64_t>::max() - static_cast<uint64_t>(d)) / static_cast<uint64_t>(base))
                    overflow = true;
                v = v * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
                ++i;
            }
            if (i < line.size()) {
                int shift = 0;
                switch (line[i]) {
                    case 'K': shift = 10; break;
                    case 'M': shift = 20; break;
                    case 'G': shift = 30; break;
                    case 'T': shift = 40; break;
                    default: break;
                }
                if (shift) {
                    if (v > (std::numeric_limits<uint64_t>::max() >> shift)) overflow = true;
                    v <<= shift;
                    ++i;
                }
            }
            if (i < line.size() && ident_char(line[i]))
                return fail(i, "expected a number (digits, 0x..., optional K/M/G/T suffix), got '" +
                                   std::string(line.substr(start, i + 1 - start)) + "'");
            if (overflow || v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                return fail(start, "number too large: '" + std::string(line.substr(start, i - start)) + "'");
            t.kind = Tok::Int;
            t.value = v;
            t.text = std::string(line.substr(start, i - start));
        } else if (c == '"') {
            ++i;
            std::string s;
            bool closed = false;
            while (i < line.size()) {
                char d = line[i];
                if (d == '"') {
                    closed = true;
                    ++i;
                    break;
                }
                if (d != '\\') {
                    s += d;
                    ++i;
                    continue;
                }
                if (i + 1 >= line.size()) break;
                const char e = line[i + 1];
                switch (e) {
                    case 'n': s += '\n'; i += 2; break;
                    case 't': s += '\t'; i += 2; break;
                    case '0': s += '\0'; i += 2; break;
                    case '\\': s += '\\'; i += 2; break;
                    case '"': s += '"'; i += 2; break;
                    case 'x': {
                        int h1 = i + 2 < line.size() ? hex_digit(line[i + 2]) : -1;
                        int h2 = i + 3 < line.size() ? hex_digit(line[i + 3]) : -1;
                        if (h1 < 0 || h2 < 0) return fail(i, "expected two hex digits after '\\x'");
                        s += static_cast<char>(h1 * 16 + h2);
                        i += 4;
                        break;
                    }
                    default:
                        return fail(i, std::string("unknown escape '\\") + e + "' (expected \\n \\t \\0 \\\\ \\\" \\xNN)");
                }
            }
            if (!closed) return fail(start, "unterminated string: expected a closing '\"'");
            t.kind = Tok::String;
            t.text = std::move(s);
        } else {
            auto two = [&](char second) { return i + 1 < line.size() && line[i + 1] == second; };
            switch (c) {
                case ':': t.kind = Tok::Colon; ++i; break;
                case '=': t.kind = two('=') ? Tok::Eq : Tok::Assign; i += two('=') ? 2 : 1; break;
                case '!':
                    if (!two('=')) return fail(i, "unexpected '!': expected '!=' (or 'not' after 'expect')");
                    t.kind = Tok::Ne; i += 2; break;
                case '<': t.kind = two('=') ? Tok::Le : Tok::Lt; i += two('=') ? 2 : 1; break;
                case '>': t.kind = two('=') ? Tok::Ge : Tok::Gt; i += two('=') ? 2 : 1; break;
                case '-': t.kind = two('>') ? Tok::Arrow : Tok::Minus; i += two('>') ? 2 : 1; break;
                case '+': t.kind = Tok::Plus; ++i; break;
                case '|': t.kind = Tok::Pipe; ++i; break;
                case '[': t.kind = Tok::LBracket; ++i; break;
                case ']': t.kind = Tok::RBracket; ++i; break;
                case '(': t.kind = Tok::LParen; ++i; break;
                case ')': t.kind = Tok::RParen; ++i; break;
                case '{': t.kind = Tok::LBrace; ++i; break;
                case '}': t.kind = Tok::RBrace; ++i; break;
                case ',': t.kind = Tok::Comma; ++i; break;
                default: {
                    const unsigned char uc = static_cast<unsigned char>(c);
                    if (uc < 0x20 || uc >= 0x7f) {
                        char hex[8];
                        static const char* digits = "0123456789abcdef";
                        hex[0] = '\\'; hex[1] = 'x'; hex[2] = digits[uc >> 4]; hex[3] = digits[uc & 15]; hex[4] = 0;
                        return fail(i, std::string("unexpected byte ") + hex + " (outside strings, scenarios are ASCII)");
                    }
                    return fail(i, std::string("unexpected character '") + c + "'");
                }
            }
            t.text = std::string(line.substr(start, i - start));
        }
        t.end_col = static_cast<int>(i) + 1;
        out->push_back(std::move(t));
    }
    Token end;
    end.kind = Tok::End;
    end.loc = {lineno, static_cast<int>(i) + 1};
    out->push_back(end);
    return true;
}

}  // namespace pl::scenario
