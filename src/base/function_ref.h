// pinlab — FunctionRef: a non-owning reference to a callable.
//
// Callbacks that are only called during the call that receives them (rmap
// walks, per-mapping visitors) take a FunctionRef instead of a
// std::function: a std::function copies its callable and, for a lambda that
// captures more than two words, allocates it on the heap — once per walk,
// which the migration path pays per 4 KiB page. A FunctionRef is two words
// and never allocates; the callable must outlive the call (it always does
// when a lambda is passed straight to the function).
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

namespace pl {

template <typename Fn>
class FunctionRef;

template <typename R, typename... Args>
class FunctionRef<R(Args...)> {
public:
    template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef> &&
                                                      std::is_invocable_r_v<R, F&, Args...>>>
    FunctionRef(F&& f)  // NOLINT(google-explicit-constructor): used like std::function
        : obj_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
          call_([](void* obj, Args... args) -> R {
              return (*static_cast<std::remove_reference_t<F>*>(obj))(std::forward<Args>(args)...);
          }) {}

    R operator()(Args... args) const { return call_(obj_, std::forward<Args>(args)...); }

private:
    void* obj_;
    R (*call_)(void*, Args...);
};

}  // namespace pl
