// pinlab — the set of live objects behind a C API's opaque handles, so that a
// stale, foreign or already-closed handle is refused instead of dereferenced.
// Model bookkeeping, not a lock of the modelled kernel.
#pragma once

#include <unordered_set>

#include "base/sync/spinlock.h"

namespace pl {

template <typename T>
class HandleRegistry {
public:
    void add(const T* obj) {
        sync::SpinGuard g(lock_);
        live_.insert(obj);
    }
    // True if `obj` was live (and is now gone): the caller may free it.
    bool remove(const T* obj) {
        sync::SpinGuard g(lock_);
        return live_.erase(obj) != 0;
    }
    bool contains(const T* obj) const {
        if (!obj) return false;
        sync::SpinGuard g(lock_);
        return live_.count(obj) != 0;
    }

private:
    mutable sync::Spinlock lock_;
    std::unordered_set<const T*> live_ PL_GUARDED_BY(lock_);
};

}  // namespace pl
