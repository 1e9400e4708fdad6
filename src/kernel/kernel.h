// pinlab — one simulated machine: its configuration, physical memory, tasks,
// files and counters. The C API's struct pl_kernel.
#pragma once

#include <array>
#include <deque>
#include <list>
#include <unordered_map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/config.h"
#include "base/result.h"
#include "base/sync/atomic.h"
#include "fs/fs_type.h"
#include "mm/physmem.h"
#include "mm/vmstat.h"

namespace pl {

class Task;
class Inode;
class File;
class MmStruct;

// One structured report of the kernel log: a WARN of the model (kind "warn")
// or a pin tracker finding (src/debug/pin_tracker.h; kinds documented in
// include/pinlab/kapi.h). `text` is the dmesg line.
struct KernelReport {
    std::string kind;
    std::string where;  // the kernel function that reported
    unsigned long pfn = 0;
    std::string owner;
    unsigned flags = 0;
    uint64_t step = 0;
    std::string message;
    std::string text;
};

class Kernel {
public:
    static Result<std::unique_ptr<Kernel>> create(const Config& cfg);
    ~Kernel();
    Kernel(const Kernel&) = delete;
    Kernel& operator=(const Kernel&) = delete;

    const Config cfg;
    const std::string config_text;
    std::unique_ptr<PhysMem> mem;
    VmstatCounters vmstat;

    // --- tasks ----------------------------------------------------------------
    Result<Task*> task_new();
    // A task on an existing mm, in thread group `tgid` (copy_process() with
    // CLONE_VM|CLONE_THREAD; do_clone_thread() took the mm_users reference).
    Result<Task*> task_new_on(MmStruct* mm, int tgid);
    // Another live task of t's thread group still using mm, or null (the
    // search of mm_update_next_owner()); under the registry lock, so tasks
    // freed concurrently are never looked at.
    Task* task_sharing_mm(const Task* t, const MmStruct* mm) const;
    // do_exit() of every task (exit_mm(), then exit_files()).
    void exit_all_tasks();
    // Unlinks and frees an exited task (its mm already released).
    void task_free(Task* t);
    std::vector<Task*> tasks() const;

    // --- inodes (for the page-cache walk of the invariant checker) ------------
    Inode* inode_new(FsKind fs);
    void inode_forget(Inode* i);
    std::vector<Inode*> inodes() const;
    // Every live mm (tasks' and those kept alive by remote users).
    void mm_register(MmStruct* mm);
    void mm_unregister(MmStruct* mm);
    std::vector<MmStruct*> mms() const;

    uint64_t next_id() { return ids_.fetch_add(1) + 1; }

    // --- the reference ledger ---------------------------------------------------
    // Every reference on a folio that is neither a page-table mapping's nor
    // the page cache's (a driver's own, a get_page() caller's, GUP's GET and
    // PIN references) is accounted, so the invariant checker can demand that
    // each folio's _refcount is exactly mappings + cache + ledger. GUP's own
    // are the pin tracker's (pin_track_refcount_share()); the others are
    // noted here with the refcount change they made, in a word on the
    // folio's head (Page::lru.track.ledger): one atomic add, no lock.
    void ref_note(const Folio* f, long refcount_delta) {
        sync::fetch_add(const_cast<Page*>(f->head())->lru.track.ledger, refcount_delta, sync::memory_order_relaxed);
    }
    long ref_ledger_others(const Folio* f) const {
        return static_cast<long>(sync::load(f->head()->lru.track.ledger, sync::memory_order_relaxed));
    }
    // All of it: the others and GUP's share.
    long ref_ledger(const Folio* f);
    // Every folio with a ledger count (for the invariant checker).
    std::vector<std::pair<const Folio*, long>> ref_ledger_snapshot();
    // Ledger counts found on frames as they were freed (references dropped
    // that nobody had taken, or never dropped): kept for the checker.
    std::vector<std::string> ledger_anomalies() const;

    // --- the kernel log -----------------------------------------------------------
    // WARN_ON_ONCE()/pr_warn() of the model: misuse that upstream reports in
    // dmesg (invalid GUP flags, a VMA used after the mmap_lock was dropped, an
    // API called in an era that lacks it) is logged here, one line each, and
    // read back with pl_dmesg(). `where` names the kernel function that warned.
    void warn(const char* where, const std::string& what);
    // Any report (warn() is report() of kind "warn"); fills r.text.
    void report(KernelReport r);
    std::string dmesg() const;
    size_t nr_warnings() const;
    // Reports of `kind` (nullptr: all).
    size_t nr_reports(const char* kind) const;
    // The dmesg line of report `i`, stable while the kernel lives; null past the end.
    const char* report_text(size_t i) const;

    // The step of the pin tracker: GUP entry calls made so far (GupCallScope).
    uint64_t next_gup_step() { return gup_steps_.fetch_add(1) + 1; }

private:
    explicit Kernel(const Config& cfg);
    // PhysMem's free hook: the ledger and the pin tracker's words go back to
    // the buddy allocator with the frame.
    static void folio_freed(void* ctx, Folio* f);
    mutable std::mutex anomalies_mu_;  // not a model lock
    std::vector<std::string> anomalies_;
    mutable std::mutex log_mu_;  // guards log_ (not a model lock)
    std::deque<KernelReport> log_;  // a deque: report_text() pointers stay valid
    mutable std::mutex mu_;  // guards the registries below (not a model lock)
    std::list<std::unique_ptr<Task>> tasks_;
    std::vector<Inode*> inodes_;
    std::vector<MmStruct*> mms_;
    int next_pid_ = 1;
    sync::Atomic<uint64_t> ids_{0};
    sync::Atomic<uint64_t> gup_steps_{0};
};

}  // namespace pl
