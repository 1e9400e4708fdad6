// pinlab — a schedule of the concurrency explorer (issue 8): the sequence of
// choices, one per decision point (a point where more than one model thread
// could run next), each the index of the thread that ran.
//
// Text form, compact enough to paste into a command line or a bug report:
// runs of the same choice joined by '.', each run "T" or "T*N" (thread T, N
// times in a row), e.g. "0*12.1*3.0*5"; "-" is the empty schedule. Thread
// numbers are the order of the thread bodies given to the scheduler.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pl::explore {

struct Schedule {
    Schedule() = default;
    explicit Schedule(std::vector<uint16_t> c, std::vector<uint16_t> v = {})
        : choices(std::move(c)), values(std::move(v)) {}

    std::vector<uint16_t> choices;  // the thread that ran, per decision point
    std::vector<uint16_t> values;   // the value picked, per sync::choose() call

    bool operator==(const Schedule&) const = default;
};

std::string to_string(const Schedule& s);

// The schedule `text` spells, or nullopt with *error naming the 1-based
// column of the first bad character and what was expected there.
std::optional<Schedule> parse_schedule(std::string_view text, std::string* error);

}  // namespace pl::explore
