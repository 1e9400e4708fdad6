// pinlab — JSON string escaping for the CLI's hand-written JSON (the
// library has no JSON dependency; nlohmann-json, when packaged, is used by
// `pinlab run --format json` instead).
#pragma once

#include <cstdio>
#include <string>

namespace pl::tools {

// The characters of `s` as they stand inside a JSON string: quotes and
// backslashes escaped, control and non-ASCII bytes as \u00XX.
inline std::string json_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20 || u >= 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", u);
            out += buf;
        } else {
            out += c;
        }
    }
    return out;
}

// `s` as a JSON string literal.
inline std::string json_quote(const std::string& s) { return "\"" + json_escape(s) + "\""; }

}  // namespace pl::tools
