// pinlab scenarios — the lexer: one source line into tokens.
//
// The language is line-oriented, so the lexer works a line at a time and a
// token never spans lines. '#' starts a comment outside strings.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "scenario/diagnostic.h"

namespace pl::scenario {

enum class Tok : uint8_t {
    Ident,   // [A-Za-z_][A-Za-z0-9_.]*   (dots: config keys, eras such as v6.5)
    Int,     // 42, 0x2a, 4K, 2M, 1G, 1T (binary units)
    String,  // "..." with \n \t \0 \\ \" \xNN escapes
    Colon, Assign, Eq, Ne, Lt, Le, Gt, Ge, Arrow, Plus, Minus, Pipe, LBracket, RBracket, LParen, RParen, LBrace, RBrace, Comma,
    End,     // end of line (or the start of a comment)
};

struct Token {
    Tok kind = Tok::End;
    SourceLoc loc;
    int end_col = 0;    // column just past the token
    std::string text;   // the token's source text; for strings, the decoded bytes
    uint64_t value = 0; // Int
};

// What a token kind is called in "expected X, got Y" messages.
std::string_view tok_name(Tok t);
// "'fork'", "the string \"abc\"", "the end of the line" ...
std::string describe(const Token& t);

struct LexError {
    SourceLoc loc;
    std::string message;
};

// Tokens of `line` (number `lineno`), always ending with Tok::End; or the
// first lexical error.
bool lex_line(std::string_view line, int lineno, std::vector<Token>* out, LexError* err);

// Index of the '#' that starts a comment in `line`, or npos.
size_t comment_start(std::string_view line);

}  // namespace pl::scenario
