// pinlab — the man page, generated from the same CLI11 definitions that
// print --help, so the two never disagree.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace pl::tools {

// troff (man(7)) text for `app`: NAME, SYNOPSIS, DESCRIPTION, one
// subsection per subcommand with its options, EXIT STATUS, FILES, SEE ALSO.
std::string render_manpage(const CLI::App& app, const std::string& version);

}  // namespace pl::tools
