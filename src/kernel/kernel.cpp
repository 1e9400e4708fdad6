#include "kernel/kernel.h"

#include <algorithm>
#include <cstdio>

#include "base/sync/rcu.h"
#include "debug/pin_tracker.h"
#include "fs/inode.h"
#include "kernel/task.h"
#include "mm/internal.h"
#include "mm/mm_struct.h"

namespace pl {

void exit_task_mm(Task* t);  // kernel/exit.cpp

Kernel::Kernel(const Config& c) : cfg(c), config_text(c.to_string()) {}

Result<std::unique_ptr<Kernel>> Kernel::create(const Config& cfg) {
    std::unique_ptr<Kernel> k(new Kernel(cfg));
    PL_TRY_ASSIGN(k->mem, PhysMem::create(cfg));
    k->mem->set_free_hook(&Kernel::folio_freed, k.get());
    // Allocation failures may now compact memory (migrating movable folios).
    compaction_init(*k);
    // bad_page(): "BUG: Bad page state" in the kernel log.
    k->mem->set_bad_page_reporter(
        [](void* ctx, pfn_t pfn, const char* reason) {
            char buf[32];
            std::snprintf(buf, sizeof buf, "%#lx", static_cast<unsigned long>(pfn));
            static_cast<Kernel*>(ctx)->warn("bad_page", std::string("BUG: Bad page state: pfn ") + buf + ": " + reason +
                                                            "; the frame is taken out of circulation");
        },
        k.get());
    return k;
}

Kernel::~Kernel() {
    exit_all_tasks();
    // Frees deferred by RCU (page tables) must run before memory goes away.
    sync::rcu_barrier();
    pin_track_forget_kernel(*this);  // its records name this kernel
}

void Kernel::exit_all_tasks() {
    // Exit every task: their address spaces go, and with them the mappings'
    // references on files and frames; then their open rings and containers.
    while (true) {
        Task* t = nullptr;
        {
            std::lock_guard g(mu_);
            if (tasks_.empty()) break;
            t = tasks_.front().get();
        }
        exit_task_mm(t);
        exit_files(t);
        task_free(t);
    }
}

Result<Task*> Kernel::task_new() {
    auto* mm = new MmStruct(*this);
    std::lock_guard g(mu_);
    tasks_.push_back(std::make_unique<Task>(*this, next_pid_++, mm));
    Task* t = tasks_.back().get();
    mm->owner = t;
    return t;
}

Result<Task*> Kernel::task_new_on(MmStruct* mm, int tgid) {
    if (!mm) return Error(EINVAL);
    std::lock_guard g(mu_);
    tasks_.push_back(std::make_unique<Task>(*this, next_pid_++, mm));
    Task* t = tasks_.back().get();
    t->tgid = tgid;  // set before the task is published (mu_ orders it)
    return t;
}

Task* Kernel::task_sharing_mm(const Task* t, const MmStruct* mm) const {
    std::lock_guard g(mu_);
    for (auto& x : tasks_)
        if (x.get() != t && x->tgid == t->tgid && x->mm == mm) return x.get();
    return nullptr;
}

void Kernel::task_free(Task* t) {
    std::lock_guard g(mu_);
    tasks_.remove_if([t](const std::unique_ptr<Task>& p) { return p.get() == t; });
}

std::vector<Task*> Kernel::tasks() const {
    std::lock_guard g(mu_);
    std::vector<Task*> out;
    for (auto& t : tasks_) out.push_back(t.get());
    return out;
}

Inode* Kernel::inode_new(FsKind fs) {
    auto* i = new Inode(*this, fs, next_id());
    std::lock_guard g(mu_);
    inodes_.push_back(i);
    return i;
}

void Kernel::inode_forget(Inode* i) {
    std::lock_guard g(mu_);
    inodes_.erase(std::remove(inodes_.begin(), inodes_.end(), i), inodes_.end());
}

std::vector<Inode*> Kernel::inodes() const {
    std::lock_guard g(mu_);
    return inodes_;
}

void Kernel::mm_register(MmStruct* mm) {
    std::lock_guard g(mu_);
    mms_.push_back(mm);
}

void Kernel::mm_unregister(MmStruct* mm) {
    std::lock_guard g(mu_);
    mms_.erase(std::remove(mms_.begin(), mms_.end(), mm), mms_.end());
}

std::vector<MmStruct*> Kernel::mms() const {
    std::lock_guard g(mu_);
    return mms_;
}

long Kernel::ref_ledger(const Folio* f) { return ref_ledger_others(f) + pin_track_refcount_share(*this, f); }

std::vector<std::pair<const Folio*, long>> Kernel::ref_ledger_snapshot() {
    std::vector<std::pair<const Folio*, long>> out;
    for (const Folio* f : mem->folios_with_track())
        if (long n = ref_ledger(f)) out.emplace_back(f, n);
    return out;
}

std::vector<std::string> Kernel::ledger_anomalies() const {
    std::lock_guard g(anomalies_mu_);
    return anomalies_;
}

void Kernel::folio_freed(void* ctx, Folio* f) {
    auto* k = static_cast<Kernel*>(ctx);
    if (long n = k->ref_ledger_others(f)) {
        char buf[160];
        if (n < 0)
            std::snprintf(buf, sizeof buf, "ledger: negative count %ld for pfn %#lx (found as it was freed)", n,
                          static_cast<unsigned long>(k->mem->page_to_pfn(f->head())));
        else
            std::snprintf(buf, sizeof buf, "refcount: %ld ledger references on a freed frame: pfn %#lx", n,
                          static_cast<unsigned long>(k->mem->page_to_pfn(f->head())));
        std::lock_guard g(k->anomalies_mu_);
        if (k->anomalies_.size() < 64) k->anomalies_.push_back(buf);
        sync::store(f->head()->lru.track.ledger, int64_t{0}, sync::memory_order_relaxed);
    }
    pin_track_folio_freed(*k, f);
}

void Kernel::warn(const char* where, const std::string& what) {
    KernelReport r;
    r.kind = "warn";
    r.where = where;
    r.message = what;
    report(std::move(r));
}

void Kernel::report(KernelReport r) {
    if (r.kind == "warn" || r.kind == "dangling_vma") {
        r.text = "WARNING: " + r.where + ": " + r.message;
    } else {
        char buf[96];
        std::snprintf(buf, sizeof buf, " [pfn %#lx flags %#x step %llu]", r.pfn, r.flags,
                      static_cast<unsigned long long>(r.step));
        r.text = "WARNING: " + r.where + ": " + r.kind + ": " + r.message + " (owner " +
                 (r.owner.empty() ? std::string("?") : r.owner) + ")" + buf;
    }
    // Bounded: a runaway caller cannot grow the log without limit.
    constexpr size_t kMaxLines = 4096;
    std::lock_guard g(log_mu_);
    if (log_.size() < kMaxLines) {
        log_.push_back(std::move(r));
    } else if (log_.size() == kMaxLines) {
        KernelReport s;
        s.kind = "warn";
        s.text = "WARNING: further warnings suppressed";
        log_.push_back(std::move(s));
    }
}

std::string Kernel::dmesg() const {
    std::lock_guard g(log_mu_);
    std::string out;
    for (const auto& l : log_) out += l.text + "\n";
    return out;
}

size_t Kernel::nr_warnings() const {
    std::lock_guard g(log_mu_);
    return log_.size();
}

size_t Kernel::nr_reports(const char* kind) const {
    std::lock_guard g(log_mu_);
    if (!kind) return log_.size();
    size_t n = 0;
    for (const auto& l : log_) n += l.kind == kind;
    return n;
}

const char* Kernel::report_text(size_t i) const {
    std::lock_guard g(log_mu_);
    return i < log_.size() ? log_[i].text.c_str() : nullptr;
}

}  // namespace pl
