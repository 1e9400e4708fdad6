// pinlab conform — every scenario in the model and on the host kernel, step
// by step (src/oracle/conform.h); docs/CONFORMANCE.md.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace pl::tools {

struct ConformArgs {
    std::vector<std::string> paths;
    std::string format = "text";     // text | json | markdown
    std::vector<std::string> config;
    std::string era;
    std::vector<std::string> fs;     // TYPE=DIR
    long random = 0;                 // --random N
    uint64_t seed = 1;               // --seed S
    std::string out_dir = ".";       // where shrunk disagreements are written
    int shrink_tries = 300;
};

class ConformCommand {
public:
    explicit ConformCommand(CLI::App& app);
    bool parsed() const { return cmd_->parsed(); }
    int run() const;

private:
    CLI::App* cmd_;
    ConformArgs args_;
};

}  // namespace pl::tools
