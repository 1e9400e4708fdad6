#include "scenario/diagnostic.h"

#include <string>

namespace pl::scenario {

std::string Diagnostic::headline() const {
    if (loc.line <= 0) return file + ": " + message;
    return file + ":" + std::to_string(loc.line) + ":" + std::to_string(loc.col) + ": " + message;
}

std::string Diagnostic::format() const {
    std::string out = headline();
    if (loc.line <= 0) return out;
    const std::string num = std::to_string(loc.line);
    // Tabs stay tabs under the caret so that it lines up in a terminal.
    std::string pad;
    for (int i = 0; i + 1 < loc.col && i < static_cast<int>(source_line.size()); ++i)
        pad += source_line[static_cast<size_t>(i)] == '\t' ? '\t' : ' ';
    out += "\n " + std::string(num.size() < 4 ? 4 - num.size() : 0, ' ') + num + " | " + source_line;
    out += "\n " + std::string(num.size() < 4 ? 4 : num.size(), ' ') + " | " + pad + "^";
    return out;
}

}  // namespace pl::scenario
