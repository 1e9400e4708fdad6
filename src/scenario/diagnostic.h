// pinlab scenarios — where in a .pin file something is, and a message about
// that place printed the way compilers print theirs:
//
//   tutorial/01_pin.pin:12:8: expectation failed: expected 1, got 0
//      12 | expect n == 1
//         |        ^
#pragma once

#include <string>

namespace pl::scenario {

// 1-based line and column (columns count bytes).
struct SourceLoc {
    int line = 0;
    int col = 0;
};

struct Diagnostic {
    std::string file;         // as the user named it (or "<input>")
    SourceLoc loc;
    std::string message;      // "expected a task name after 'fork', got '3'"
    std::string source_line;  // the line's text (after matrix substitution)

    // "file:line:col: message" plus the source line and a caret under col;
    // with loc.line == 0 only "file: message".
    std::string format() const;
    // The first line of format(): for one-line reports (TAP, JSON).
    std::string headline() const;
};

}  // namespace pl::scenario
