// pinlab — the man page (see manpage.h).
#include "manpage.h"

#include <CLI/CLI.hpp>

namespace pl::tools {

namespace {

// Escapes text for troff: backslashes, and a leading '.' or '\'' that would
// read as a request.
std::string roff(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == '\\') out += "\\e";
        else if (c == '-') out += "\\-";
        else out += c;
    }
    if (!out.empty() && (out[0] == '.' || out[0] == '\'')) out.insert(0, "\\&");
    return out;
}

std::string option_name(const CLI::Option* o) {
    if (o->get_positional()) return "\\fI" + roff(o->get_name()) + "\\fR";
    std::string n;
    for (const std::string& s : o->get_snames()) n += (n.empty() ? "\\fB\\-" : ", \\fB\\-") + roff(s) + "\\fR";
    for (const std::string& l : o->get_lnames()) n += (n.empty() ? "\\fB\\-\\-" : ", \\fB\\-\\-") + roff(l) + "\\fR";
    if (o->get_items_expected_max() != 0) n += " \\fI" + roff(o->get_type_name().empty() ? "VALUE" : o->get_type_name()) + "\\fR";
    return n;
}

void options(std::string& out, const CLI::App& app) {
    for (const CLI::Option* o : app.get_options()) {
        if (o->get_group().empty()) continue;  // hidden
        out += ".TP\n" + option_name(o) + "\n" + roff(o->get_description()) + "\n";
    }
}

}  // namespace

std::string render_manpage(const CLI::App& app, const std::string& version) {
    std::string out;
    out += ".TH PINLAB 1 \"\" \"pinlab " + roff(version) + "\" \"User Commands\"\n";
    out += ".SH NAME\npinlab \\- " + roff(app.get_description().substr(app.get_description().find(':') + 2)) + "\n";
    out += ".SH SYNOPSIS\n";
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App* s) { return !s->get_group().empty(); }))
        out += ".B pinlab\n.RI [ options ] \" " + roff(sub->get_name()) + "\" \" [ arguments ]\"\n.br\n";
    out += ".SH DESCRIPTION\n"
           "pinlab is an executable model of the Linux kernel's user-page pinning subsystem "
           "(get_user_pages(), pin_user_pages(), FOLL_LONGTERM, unpin_user_pages()) and of what it touches: "
           "frames and folios, page tables, VMAs, faults, COW and fork, the page cache, migration, and the "
           "drivers that pin. Scenarios (.pin files, see docs/SCENARIOS.md) say what happens, "
           "and why, in a second.\n";
    out += ".SH OPTIONS\n";
    options(out, app);
    out += ".SH COMMANDS\n";
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App* s) { return !s->get_group().empty(); })) {
        out += ".SS \"" + roff(sub->get_name()) + "\"\n" + roff(sub->get_description()) + "\n";
        options(out, *sub);
    }
    out += ".SH EXIT STATUS\n"
           ".TP\n0\nEvery scenario passed (or the command succeeded).\n"
           ".TP\n1\nAn expectation failed.\n"
           ".TP\n2\nBad input: a malformed scenario (reported as file:line:col), an unknown option or argument.\n";
    out += ".SH SEE ALSO\n"
           "docs/SCENARIOS.md (the scenario language), docs/FIDELITY.md (what the model simplifies), "
           "include/pinlab/kapi.h (the C API).\n";
    return out;
}

}  // namespace pl::tools
