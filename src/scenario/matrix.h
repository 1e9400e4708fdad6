// pinlab scenarios — `matrix NAME = a | b | c` lines and ${NAME} substitution.
//
// A file with matrix lines is expanded before it is parsed: once per element
// of the cross product of all matrix lines (in file order, the last line
// varying fastest), with every ${NAME} replaced textually by its value. Each
// expansion is named "file[NAME=value,...]". At most kMaxExpansions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "scenario/diagnostic.h"

namespace pl::scenario {

inline constexpr size_t kMaxExpansions = 256;
inline constexpr size_t kMaxLineLength = 4096;
inline constexpr size_t kMaxLines = 100000;
inline constexpr size_t kMaxExpandedBytes = 32u << 20;

struct Expansion {
    std::string suffix;               // "" or "[backing=shmem,era=v6.5]"
    std::vector<std::string> lines;   // the file's lines, substituted
};

// Splits `text` into lines (without '\n'; a trailing '\r' is dropped).
std::vector<std::string> split_lines(std::string_view text);

// True if the line's first word is `matrix`.
bool is_matrix_line(std::string_view line);

// The expansions of a file's lines; false with *diag set on a malformed
// matrix line, an unknown or unterminated ${...}, or too many expansions.
bool expand_matrix(const std::string& file, const std::vector<std::string>& lines, std::vector<Expansion>* out,
                   Diagnostic* diag);

}  // namespace pl::scenario
