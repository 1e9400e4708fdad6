// pinlab explore — race scenarios (`thread NAME { ... }` blocks) under the
// concurrency explorer (src/explore); docs/EXPLORER.md.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace pl::tools {

struct ExploreArgs {
    std::vector<std::string> targets;  // files, directories, FILE[k=v,...]; with --merge, JSON files
    std::string strategy;              // random | pct | bounded ("" : the scenario's, else bounded)
    int bound = -1;
    int depth = -1;
    int64_t budget = -1;
    double seconds = -1;
    int64_t seed = -1;
    std::string replay;
    std::string shard;                 // I/N
    bool check_expected = false;
    bool merge = false;
    bool quiet = false;
    std::string format = "text";       // text | json | markdown
    std::vector<std::string> config;
    std::string era;
};

class ExploreCommand {
public:
    explicit ExploreCommand(CLI::App& app);
    bool parsed() const { return cmd_->parsed(); }
    int run() const;

private:
    CLI::App* cmd_;
    ExploreArgs args_;
};

}  // namespace pl::tools
