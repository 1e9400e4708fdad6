// pinlab scenarios — the driver commands: io_uring, vfio, vmsplice,
// process_vm_readv/writev, memlock limits, dma-buf heaps, TTM, videobuf2,
// O_DIRECT, RDMA umem, futex keys, frame vectors, pin owners, /dev devices
// and the era-v6.4 vmas[] GUP calls, each over its C API block in
// include/pinlab/kapi.h.
//
// Driver objects that are not files (rings, containers, pipes, queues, umems,
// in-flight dios, futex keys, frame vectors) are handles: a scenario variable
// holds a small positive id, minted here per scenario. A bad id, or the id of
// an object of another kind, fails the step with a located message; it never
// reaches the C API. Objects still open at the end are released (in reverse
// order) before the tasks exit, as a well-behaved program would.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "scenario/ast.h"

struct pl_kernel;
struct pl_file;
struct task_struct;

namespace pl::scenario {

// A failed step raised by driver code; the interpreter turns it into a FAIL
// located at `loc`.
struct DriverFail {
    SourceLoc loc;
    std::string message;
};

// What the driver commands need from the interpreter that runs them.
struct DriverHost {
    pl_kernel* k = nullptr;
    std::function<Value(const Expr&)> eval;
    std::function<task_struct*(const std::string&, SourceLoc)> task;  // a live task by name, or fails
    std::function<void(pl_file*)> own_file;      // closed with pl_file_put() at the end
    std::function<bool(pl_file*)> disown_file;  // false: not one of the scenario's files
    std::function<void(const std::string&, Value)> set_var;
};

bool is_driver_command(Cmd cmd);

class DriverCommands {
public:
    DriverCommands();
    ~DriverCommands();
    DriverCommands(const DriverCommands&) = delete;
    DriverCommands& operator=(const DriverCommands&) = delete;

    // Runs one driver command as task `t` (may be null for commands that run
    // as no task). Throws DriverFail.
    Value exec(const Call& c, task_struct* t, const DriverHost& host);
    // Releases every object still open (before the tasks exit).
    void release_all();

    struct State;  // the handles (driver_commands.cpp)

private:
    std::unique_ptr<State> s_;
};

}  // namespace pl::scenario
