// pinlab scenarios — printing a run: text (one line per scenario, the
// located diagnostic under a failure) and TAP 13 as kselftest prints it.
// JSON is printed by the CLI (tools/pinlab.cpp) with nlohmann-json, which
// the library does not depend on.
#pragma once

#include <cstdint>
#include <string>

#include "scenario/runner.h"

namespace pl::scenario {

enum class Colour : uint8_t { off, on };  // on: ANSI colours (a terminal)

std::string format_text(const RunSummary& run, Colour colour);
std::string format_tap(const RunSummary& run);

}  // namespace pl::scenario
