// pinlab conform — the host side of one lock-step run: a StepObserver of
// the model's interpreter that, after each statement the model ran, runs the
// same statement on the host kernel (HostProcess per task) and compares
// every observation both can make (see conform.h for what is compared).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "oracle/conform.h"
#include "oracle/host_process.h"
#include "scenario/ast.h"
#include "scenario/interpreter.h"

namespace pl::oracle {

// How a host step ended the host side early.
struct HostStop {
    ConformStatus status;  // model_only, skipped or error
    scenario::SourceLoc loc;
    std::string reason;
};

class ConformHostSide final : public scenario::StepObserver {
public:
    // `hugetlb_2m`/`hugetlb_1g`: the model's pool sizes (config), reserved
    // on the host when a scenario first uses that size.
    ConformHostSide(const scenario::Scenario& s, HostSession& host, unsigned long hugetlb_2m, unsigned long hugetlb_1g);
    ~ConformHostSide() override;

    // Stop the host side before the first step (a config with no host counterpart).
    void stop_before_start(HostStop why) { stopped_ = std::move(why); active_ = false; }

    void before_step(const scenario::Stmt&) override;
    void after_step(const scenario::Stmt& st) override;
    void compared(const scenario::Stmt&, const std::string&, const std::string&, const std::string&, bool held) override;
    void evaluated(const scenario::Expr& node, const scenario::Value& value) override;

    // Kill the processes (end of the scenario).
    void finish();

    const std::optional<ConformObservation>& disagreement() const { return disagreement_; }
    const std::optional<HostStop>& stopped() const { return stopped_; }
    std::string disagreement_line() const { return disagreement_line_; }
    int compared_count() const { return compared_; }
    int model_only_checks() const { return model_only_checks_; }
    int host_steps() const { return host_steps_; }
    bool any_step() const { return host_steps_ > 0; }
    // The first expectation that did not hold on the host ("line 12: ..."), or empty.
    const std::string& kernel_failure() const { return kernel_failure_; }

private:
    struct HostVal;
    struct Disagree {};
    class Eval;

    void step(const scenario::Stmt& st);
    HostProcess& proc(const std::string& task, scenario::SourceLoc loc);

    HostSession& host_;
    unsigned long hugetlb_2m_, hugetlb_1g_;
    bool active_ = true;
    std::optional<bool> model_held_;
    std::unordered_map<const scenario::Expr*, scenario::Value> model_vals_;

    std::map<std::string, std::unique_ptr<HostProcess>> procs_;  // live tasks
    std::vector<std::string> order_;
    std::map<std::string, std::unique_ptr<HostVal>> vars_;
    // Handles (rings, pipes): a conform-wide id -> the process-local handle
    // in each process holding it (inherited over fork).
    struct HandleEntry {
        std::string kind;
        std::map<std::string, int64_t> local;  // task -> handle in its process
    };
    std::vector<HandleEntry> handles_;
    // Device mappings per task: [start, end) whose bytes are the device's
    // own (a perf ring's metadata page): not compared.
    std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>> device_ranges_;
    bool hugetlb_2m_ready_ = false, hugetlb_1g_ready_ = false;
    bool settle_needed_ = false;
    std::optional<uint64_t> base_acquired_, base_released_;

    std::optional<ConformObservation> disagreement_;
    std::string disagreement_line_;
    std::optional<HostStop> stopped_;
    std::string kernel_failure_;
    int compared_ = 0, model_only_checks_ = 0, host_steps_ = 0;
};

}  // namespace pl::oracle
