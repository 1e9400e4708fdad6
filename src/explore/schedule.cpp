#include "explore/schedule.h"

#include <cctype>

namespace pl::explore {

namespace {

std::string runs(const std::vector<uint16_t>& v) {
    if (v.empty()) return "-";
    std::string out;
    for (size_t i = 0; i < v.size();) {
        size_t j = i;
        while (j < v.size() && v[j] == v[i]) ++j;
        if (!out.empty()) out += '.';
        out += std::to_string(v[i]);
        if (j - i > 1) out += '*' + std::to_string(j - i);
        i = j;
    }
    return out;
}

}  // namespace

std::string to_string(const Schedule& s) {
    if (s.values.empty()) return runs(s.choices);
    return runs(s.choices) + '|' + runs(s.values);
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

namespace {

// One run list ("-" or runs joined by '.') of text[begin, end) into *out;
// columns in errors count from the start of the whole text.
bool parse_runs(std::string_view text, size_t begin, size_t end, const char* what, std::vector<uint16_t>* out,
                std::string* error) {
    const std::string_view part = text.substr(begin, end - begin);
    if (part == "-") return true;
    if (part.empty()) {
        fail(error, begin, begin == 0 ? "empty (write '-' for the empty schedule)" : "expected '-' or a value after '|'");
        return false;
    }
    constexpr uint64_t kMaxValue = 0xffff;
    constexpr uint64_t kMaxRun = 1u << 24;  // keeps a typo from allocating gigabytes
    const std::string expected = std::string("expected a ") + what + " (0-65535)";
    size_t pos = begin;
    while (true) {
        uint64_t v = 0, run = 1;
        if (!read_number(text.substr(0, end), &pos, kMaxValue, &v)) {
            fail(error, pos, expected.c_str());
            return false;
        }
        if (pos < end && text[pos] == '*') {
            const size_t count_at = ++pos;
            if (!read_number(text.substr(0, end), &pos, kMaxRun, &run) || run == 0) {
                fail(error, count_at, "expected a repeat count (1-16777216) after '*'");
                return false;
            }
        }
        if (out->size() + run > kMaxRun) {
            fail(error, pos, "schedule too long");
            return false;
        }
        out->insert(out->end(), run, static_cast<uint16_t>(v));
        if (pos == end) return true;
        if (text[pos] != '.') {
            fail(error, pos, begin == 0 ? "expected '.' or '*' or '|' or the end" : "expected '.' or '*' or the end");
            return false;
        }
        ++pos;
    }
}

}  // namespace

std::optional<Schedule> parse_schedule(std::string_view text, std::string* error) {
    Schedule s;
    const size_t bar = text.find('|');
    const size_t threads_end = bar == std::string_view::npos ? text.size() : bar;
    if (!parse_runs(text, 0, threads_end, "thread number", &s.choices, error)) return std::nullopt;
    if (bar != std::string_view::npos &&
        !parse_runs(text, bar + 1, text.size(), "value", &s.values, error))
        return std::nullopt;
    return s;
}

}  // namespace pl::explore
