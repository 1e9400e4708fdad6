// pinlab scenarios — the parser: the (matrix-expanded) lines of one .pin file
// into a Scenario, with static checks (tasks and variables declared before
// use, argument types, constant names, configuration keys) so that a bad
// scenario is refused, located, before anything runs.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "scenario/ast.h"
#include "scenario/diagnostic.h"

namespace pl::scenario {

// `lines` must not contain matrix references any more (see matrix.h); matrix
// lines themselves are skipped. False with *diag on the first error.
bool parse_scenario(const std::string& file, const std::string& name, const std::vector<std::string>& lines,
                    Scenario* out, Diagnostic* diag);

// The report kinds of the pin tracker (include/pinlab/kapi.h).
bool is_report_kind(std::string_view kind);
// Page properties `page REF PROP` knows, with their types.
bool page_property_type(std::string_view prop, Type* type);

}  // namespace pl::scenario
