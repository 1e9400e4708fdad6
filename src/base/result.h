// pinlab — Result<T>: a value or an Error, in the manner of LLVM's Expected
// and SerenityOS's ErrorOr. [[nodiscard]] so that no error is dropped.
#pragma once

#include <cassert>
#include <type_traits>
#include <utility>
#include <variant>

#include "base/error.h"

namespace pl {

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
    Result(Error e) : v_(e) {}                  // NOLINT

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & { assert(ok()); return std::get<0>(v_); }
    const T& value() const& { assert(ok()); return std::get<0>(v_); }
    T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }

    Error error() const { assert(!ok()); return std::get<1>(v_); }
    // Negative errno as the kernel boundary reports it; 0 on success.
    int negative_errno() const { return ok() ? 0 : error().negative(); }

private:
    std::variant<T, Error> v_;
};

// Result<void>.
class [[nodiscard]] Status {
public:
    Status() = default;
    Status(Error e) : err_(e.errnum) {}  // NOLINT
    static Status success() { return {}; }

    bool ok() const { return err_ == 0; }
    explicit operator bool() const { return ok(); }
    Error error() const { assert(!ok()); return Error(err_); }
    int negative_errno() const { return -err_; }

private:
    int err_ = 0;
};

inline Status ok_status() { return {}; }

}  // namespace pl

// PL_TRY(expr): return the error of a failed Result/Status from the current function.
#define PL_TRY(expr)                                  \
    do {                                              \
        auto&& pl_try_result_ = (expr);               \
        if (!pl_try_result_.ok()) return pl_try_result_.error(); \
    } while (0)

#define PL_CONCAT_INNER(a, b) a##b
#define PL_CONCAT(a, b) PL_CONCAT_INNER(a, b)
// PL_TRY_ASSIGN(auto x, expr): declare/assign x from a Result or return its error.
#define PL_TRY_ASSIGN(lhs, expr) PL_TRY_ASSIGN_IMPL(PL_CONCAT(pl_try_tmp_, __LINE__), lhs, expr)
#define PL_TRY_ASSIGN_IMPL(tmp, lhs, expr)            \
    auto tmp = (expr);                                \
    if (!tmp.ok()) return tmp.error();                \
    lhs = std::move(tmp).value()
