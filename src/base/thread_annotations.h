// Clang thread-safety analysis attributes (-Wthread-safety), spelled as Abseil spells them.
// Under GCC they expand to nothing; the clang preset builds with -Wthread-safety -Werror so the
// contracts are checked by a compiler in CI.
#pragma once

#if defined(__clang__)
#define DPMM_TSA(x) __attribute__((x))
#else
#define DPMM_TSA(x)
#endif

#define CAPABILITY(x) DPMM_TSA(capability(x))
#define SCOPED_CAPABILITY DPMM_TSA(scoped_lockable)
#define GUARDED_BY(x) DPMM_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) DPMM_TSA(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) DPMM_TSA(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) DPMM_TSA(acquired_after(__VA_ARGS__))
#define REQUIRES(...) DPMM_TSA(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) DPMM_TSA(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) DPMM_TSA(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) DPMM_TSA(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) DPMM_TSA(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) DPMM_TSA(release_shared_capability(__VA_ARGS__))
#define RELEASE_GENERIC(...) DPMM_TSA(release_generic_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) DPMM_TSA(try_acquire_capability(__VA_ARGS__))
#define TRY_ACQUIRE_SHARED(...) DPMM_TSA(try_acquire_shared_capability(__VA_ARGS__))
#define EXCLUDES(...) DPMM_TSA(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) DPMM_TSA(assert_capability(x))
#define ASSERT_SHARED_CAPABILITY(x) DPMM_TSA(assert_shared_capability(x))
#define RETURN_CAPABILITY(x) DPMM_TSA(lock_returned(x))
// Every use carries a one-line comment saying why the analysis cannot see the protocol.
#define NO_THREAD_SAFETY_ANALYSIS DPMM_TSA(no_thread_safety_analysis)
