// Clang thread-safety annotations (no-ops on g++), in the manner of Zircon and abseil.
#pragma once

#if defined(__clang__)
#define PL_TSA(x) __attribute__((x))
#else
#define PL_TSA(x)
#endif

#define PL_CAPABILITY(name) PL_TSA(capability(name))
#define PL_SCOPED_CAPABILITY PL_TSA(scoped_lockable)
#define PL_GUARDED_BY(x) PL_TSA(guarded_by(x))
#define PL_PT_GUARDED_BY(x) PL_TSA(pt_guarded_by(x))
#define PL_REQUIRES(...) PL_TSA(requires_capability(__VA_ARGS__))
#define PL_REQUIRES_SHARED(...) PL_TSA(requires_shared_capability(__VA_ARGS__))
#define PL_ACQUIRE(...) PL_TSA(acquire_capability(__VA_ARGS__))
#define PL_ACQUIRE_SHARED(...) PL_TSA(acquire_shared_capability(__VA_ARGS__))
#define PL_RELEASE(...) PL_TSA(release_capability(__VA_ARGS__))
#define PL_RELEASE_SHARED(...) PL_TSA(release_shared_capability(__VA_ARGS__))
#define PL_RELEASE_GENERIC(...) PL_TSA(release_generic_capability(__VA_ARGS__))
#define PL_TRY_ACQUIRE(...) PL_TSA(try_acquire_capability(__VA_ARGS__))
#define PL_TRY_ACQUIRE_SHARED(...) PL_TSA(try_acquire_shared_capability(__VA_ARGS__))
#define PL_EXCLUDES(...) PL_TSA(locks_excluded(__VA_ARGS__))
#define PL_NO_TSA PL_TSA(no_thread_safety_analysis)
