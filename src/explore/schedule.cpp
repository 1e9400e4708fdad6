#include "explore/schedule.h"

#include <cctype>

namespace pl::explore {

std::string to_string(const Schedule& s) {
    if (s.choices.empty()) return "-";
    std::string out;
    for (size_t i = 0; i < s.choices.size();) {
        size_t j = i;
        while (j < s.choices.size() && s.choices[j] == s.choices[i]) ++j;
        if (!out.empty()) out += '.';
        out += std::to_string(s.choices[i]);
        if (j - i > 1) out += '*' + std::to_string(j - i);
        i = j;
    }
    return out;
}

namespace {

// Reads a decimal number at text[*pos] (no sign, no leading '+'), at most `max`.
bool read_number(std::string_view text, size_t* pos, uint64_t max, uint64_t* out) {
    size_t p = *pos;
    uint64_t v = 0;
    while (p < text.size() && std::isdigit(static_cast<unsigned char>(text[p]))) {
        v = v * 10 + static_cast<uint64_t>(text[p] - '0');
        if (v > max) return false;
        ++p;
    }
    if (p == *pos) return false;
    *pos = p;
    *out = v;
    return true;
}

std::nullopt_t fail(std::string* error, size_t pos, const char* what) {
    if (error) *error = "schedule: column " + std::to_string(pos + 1) + ": " + what;
    return std::nullopt;
}

}  // namespace

std::optional<Schedule> parse_schedule(std::string_view text, std::string* error) {
    Schedule s;
    if (text == "-") return s;
    if (text.empty()) return fail(error, 0, "empty (write '-' for the empty schedule)");
    constexpr uint64_t kMaxThread = 0xffff;
    constexpr uint64_t kMaxRun = 1u << 24;  // keeps a typo from allocating gigabytes
    size_t pos = 0;
    while (true) {
        uint64_t thread = 0, run = 1;
        if (!read_number(text, &pos, kMaxThread, &thread)) return fail(error, pos, "expected a thread number (0-65535)");
        if (pos < text.size() && text[pos] == '*') {
            const size_t count_at = ++pos;
            if (!read_number(text, &pos, kMaxRun, &run) || run == 0)
                return fail(error, count_at, "expected a repeat count (1-16777216) after '*'");
        }
        if (s.choices.size() + run > kMaxRun) return fail(error, pos, "schedule too long");
        s.choices.insert(s.choices.end(), run, static_cast<uint16_t>(thread));
        if (pos == text.size()) return s;
        if (text[pos] != '.') return fail(error, pos, "expected '.' or '*' or the end");
        ++pos;
    }
}

}  // namespace pl::explore
