// pinlab — workloads for the concurrency explorer shared by its unit tests
// (tests/unit/explore_test.cpp) and its benchmark (bench/explore_bench.cpp):
// the smallest races, and a pl_kernel GUP-fast-against-fork execution.
#pragma once

#include <sys/mman.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "base/sync/atomic.h"
#include "base/sync/spinlock.h"
#include "explore/explorer.h"
#include "gup/foll_flags.h"
#include "pinlab/kapi.h"

namespace pl::explore {

enum class Inc : uint8_t { LoadStore, FetchAdd, Spinlocked };

// Two threads each add 1 to a counter; afterwards it must be 2. With a load
// and a separate store the update can be lost (a preemption between them);
// fetch_add or a spinlock around the pair cannot lose it.
inline TestFn counter_test(Inc how) {
    return [how] {
        struct Shared {
            sync::Atomic<int> v{0};
            sync::Spinlock lock;
        };
        auto s = std::make_shared<Shared>();
        Execution e;
        for (int i = 0; i < 2; ++i)
            e.threads.push_back([s, how] {
                switch (how) {
                case Inc::LoadStore: s->v.store(s->v.load() + 1); break;
                case Inc::FetchAdd: s->v.fetch_add(1); break;
                case Inc::Spinlocked: {
                    sync::SpinGuard g(s->lock);
                    s->v.store(s->v.load() + 1);
                    break;
                }
                }
            });
        e.check = [s]() -> std::optional<std::string> {
            const int v = s->v.load();
            if (v != 2) return "lost update: the counter is " + std::to_string(v) + ", not 2";
            return std::nullopt;
        };
        return e;
    };
}

// Thread 0 pins two anonymous pages with pin_user_pages_fast(FOLL_WRITE) and
// unpins them, twice; thread 1 forks the process, writes the pages (COW
// breaks in the parent, since the child shares them), and the child exits.
// On the current kernel every pin succeeds, the pin counters balance (some
// schedules pin more than 4 times: see the check), the
// invariants hold and the kernel log stays empty (no tracker report) on
// every schedule (mm/gup.c: gup_fast() against copy_page_range()'s
// write_protect_seq; page_try_dup_anon_rmap() copies pinned pages at fork).
// `retried` (optional) counts the executions that took the fallback.
inline TestFn gup_fast_vs_fork_test(std::shared_ptr<int> retried = nullptr) {
    return [retried] {
        struct Shared {
            pl_kernel* k = nullptr;
            task_struct* t = nullptr;
            unsigned long addr = 0;
            std::string error;  // written by one model thread at a time (serialised)
        };
        auto s = std::make_shared<Shared>();
        s->k = pl_kernel_new("ram=64M");
        if (!s->k) throw std::runtime_error(pl_last_error());
        s->t = pl_task_new(s->k);
        long a = pl_mmap(s->t, 0, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0);
        if (a <= 0 || pl_memset(s->t, static_cast<unsigned long>(a), 0x5a, 2 * 4096) != 2 * 4096)
            throw std::runtime_error(std::string("set-up: ") + pl_last_error());
        s->addr = static_cast<unsigned long>(a);
        Execution e;
        e.kernel = s->k;
        e.threads.push_back([s] {
            pl_set_current(s->t);
            for (int i = 0; i < 2; ++i) {
                page* pages[2] = {};
                int n = ::pin_user_pages_fast(s->addr, 2, FOLL_WRITE, pages);
                if (n != 2) s->error += "pin_user_pages_fast returned " + std::to_string(n) + "; ";
                if (n > 0) unpin_user_pages(pages, static_cast<unsigned long>(n));
            }
        });
        e.threads.push_back([s] {
            pl_set_current(s->t);
            task_struct* c = pl_fork(s->t);
            if (!c) {
                s->error += std::string("fork: ") + pl_last_error() + "; ";
                return;
            }
            const uint64_t v = 0x1234;
            if (pl_write(s->t, s->addr + 8, &v, sizeof v) != 8) s->error += "parent write failed; ";
            pl_exit(c);
        });
        e.check = [s, retried]() -> std::optional<std::string> {
            if (!s->error.empty()) return s->error;
            const unsigned long acq = pl_vmstat(s->k, "nr_foll_pin_acquired");
            const unsigned long rel = pl_vmstat(s->k, "nr_foll_pin_released");
            // At least the 4 pins asked for; more where GUP-fast saw fork's
            // write_protect_seq move and undid its pins before retrying on
            // the slow path (gup_fast_fallback()). Every one is released.
            if (acq != rel || acq < 4)
                return "pins acquired " + std::to_string(acq) + ", released " + std::to_string(rel) +
                       " (want equal, >= 4)";
            if (acq > 4 && retried) ++*retried;
            return std::nullopt;
        };
        e.teardown = [s] { pl_kernel_free(s->k); };
        return e;
    };
}

}  // namespace pl::explore
