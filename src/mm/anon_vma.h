// pinlab — anon_vma: the reverse map of anonymous folios.
//
// Upstream chains anon_vmas through anon_vma_chain so a parent's pages are
// found from its children's VMAs. The model keeps one anon_vma per fork
// family: every VMA that may map a folio of the family is on its list. An
// rmap walk may therefore visit VMAs that do not map the folio; each visit
// checks the page table, so the result is the same (see docs/FIDELITY.md).
#pragma once

#include <vector>

#include "base/sync/atomic.h"
#include "base/sync/rwsem.h"

namespace pl {

class Vma;

class AnonVma {
public:
    static AnonVma* create();
    void get() { refs_.fetch_add(1); }
    // A reference on an anon_vma found through a folio (atomic_inc_not_zero()):
    // false once the last VMA let go of it. Valid inside an RCU read section,
    // which keeps a dead anon_vma's memory around (put() frees via call_rcu).
    bool get_not_zero();
    void put();

    sync::Rwsem lock;
    // VMAs that may map this family's folios. Guarded by `lock`.
    std::vector<Vma*> vmas PL_GUARDED_BY(lock);

    void link(Vma* v);
    void unlink(Vma* v);

private:
    AnonVma() = default;
    sync::Atomic<int> refs_{1};
};

}  // namespace pl
