// libFuzzer target: the scenario front end (matrix expansion, lexer, parser)
// on arbitrary bytes. It must return a Scenario or a located Diagnostic,
// never crash, hang or allocate without bound. Nothing is run.
//   cmake -S . -B build/fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_C_COMPILER=clang-14
//   cmake --build build/fuzz --target scenario_parser_fuzz
//   build/fuzz/tests/scenario_parser_fuzz -max_total_time=60 -max_len=4096
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "scenario/matrix.h"
#include "scenario/parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace pl::scenario;
    const std::string text(reinterpret_cast<const char*>(data), size);
    std::vector<Expansion> expansions;
    Diagnostic d;
    if (!expand_matrix("fuzz.pin", split_lines(text), &expansions, &d)) {
        (void)d.format();
        return 0;
    }
    for (const Expansion& x : expansions) {
        Scenario s;
        if (!parse_scenario("fuzz.pin", "fuzz.pin" + x.suffix, x.lines, &s, &d)) {
            // A located error must point inside the input.
            if (d.loc.line < 0 || static_cast<size_t>(d.loc.line) > x.lines.size() + 1) __builtin_trap();
            (void)d.format();
        }
    }
    return 0;
}
