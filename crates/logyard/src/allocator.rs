//! The process's memory allocator: mimalloc, without transparent huge pages, keeping freed
//! memory for reuse longer than mimalloc's own default.

/// mimalloc keeps freed pages for reuse; with the system allocator, every large request body
/// and batch buffer is a fresh mmap whose pages the kernel must clear.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long memory freed inside mimalloc's arenas stays with the process before it is handed
/// back to the kernel (mimalloc's `purge_delay`, 1 s by default in its version 3), in ms.
/// Memory handed back and asked for again costs a page fault and a cleared page per 4 KiB:
/// the Kinesis consumer frees a commit's rows and buffers and needs as much again for the next
/// one more than a second later, and that refaulting was a tenth of its CPU (BENCHMARKS.md,
/// "The Kinesis consumer"). Memory idle for longer still goes back.
pub const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// The environment variables through which mimalloc reads its purge delay itself (the second
/// is its older name); when either is set, the operator's value stands.
const PURGE_DELAY_VARS: [&str; 2] = ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"];

/// `mi_option_purge_delay` of mimalloc.h (version 3): the option after
/// `mi_option_deprecated_eager_commit_delay` (14), which libmimalloc-sys does not name.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets up the allocator for this process: transparent huge pages off, and freed memory kept
/// [`PURGE_DELAY_MS`] unless the environment (`env`: the process's variables) says otherwise.
pub fn configure(env: impl Fn(&str) -> Option<String>) {
    no_transparent_huge_pages();
    if PURGE_DELAY_VARS.iter().all(|name| env(name).is_none()) {
        set_purge_delay(PURGE_DELAY_MS);
    }
}

#[allow(unsafe_code)]
fn set_purge_delay(ms: std::ffi::c_long) {
    // SAFETY: mi_option_set only stores a value in mimalloc's option table, which it reads
    // atomically; the option number is a valid one of the linked mimalloc (see the test).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms) }
}

#[cfg(test)]
#[allow(unsafe_code)]
fn purge_delay() -> std::ffi::c_long {
    // SAFETY: reads an option of the linked mimalloc; any option number is accepted.
    unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
}

/// Transparent huge pages off for this process (the flag covers its whole address space), as
/// databases advise (Redis, MongoDB): mimalloc asks for them on its arenas, and then each fresh
/// page a new thread or a growing buffer touches costs a 2 MiB clear in the kernel; that
/// clearing was 40% of the Kinesis consumer's CPU (BENCHMARKS.md).
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("warning: cannot turn transparent huge pages off: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option number is mimalloc's purge delay: it holds mimalloc's default for it (no
    /// other option of version 3 defaults to 1000) until set, and the setting is what mimalloc
    /// then reads; an operator's variable keeps its value.
    #[test]
    fn freed_memory_is_kept_longer_unless_the_operator_says_otherwise() {
        assert!(
            PURGE_DELAY_VARS.iter().all(|name| std::env::var_os(name).is_none()),
            "run the tests without MIMALLOC_PURGE_DELAY or MIMALLOC_RESET_DELAY set"
        );
        assert_eq!(purge_delay(), 1000, "mimalloc 3's default purge delay");
        configure(|name| (name == "MIMALLOC_RESET_DELAY").then(|| "50".to_owned()));
        assert_eq!(purge_delay(), 1000, "the operator's setting stands");
        configure(|_| None);
        assert_eq!(purge_delay(), PURGE_DELAY_MS);
    }
}
