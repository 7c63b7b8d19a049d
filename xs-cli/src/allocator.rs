//! The process's allocator: mimalloc, with two options set before `main` to keep the daemon's
//! RSS down.
//!
//! Why mimalloc: the daemon allocates and frees small buffers on several threads (HTTP,
//! writer, fjall workers), where glibc's arena locks and chunk consolidation took a quarter
//! of its CPU; one A/B run: `append_32conn` +30%, `build_store` +40% (README, Benchmarks).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Set to 0 unless their variable is set: freed memory goes back to the OS at once
/// (`purge_delay`) and arenas are committed as they fill (`arena_eager_commit`). Peak RSS
/// building the 1M-frame store: 117 MiB with mimalloc's defaults, 63 MiB with these.
/// The numbers are indices in mimalloc v3's `mi_option_t`; libmimalloc-sys is pinned in
/// Cargo.toml and `tests::options_are_set` checks them against the variables' names.
#[cfg(target_os = "linux")]
const OPTIONS: [(libmimalloc_sys::mi_option_t, &std::ffi::CStr); 2] = [
    (4, c"MIMALLOC_ARENA_EAGER_COMMIT"),
    (15, c"MIMALLOC_PURGE_DELAY"),
];

/// Runs from `.init_array`, before `main` and the first allocation: that allocation reserves
/// mimalloc's first arena, which `arena_eager_commit` set any later would not apply to.
/// (Linux only; elsewhere mimalloc keeps its defaults.)
#[cfg(target_os = "linux")]
#[used]
#[allow(unsafe_code)]
#[unsafe(link_section = ".init_array")]
static TUNE: extern "C" fn() = tune;

#[cfg(target_os = "linux")]
extern "C" fn tune() {
    for (option, var) in OPTIONS {
        #[allow(unsafe_code)]
        // SAFETY: getenv only reads the environment (no other thread exists yet); nothing
        // here allocates; mi_option_set stores an integer.
        unsafe {
            if libc::getenv(var.as_ptr()).is_null() {
                libmimalloc_sys::mi_option_set(option, 0);
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::OPTIONS;

    /// Each option is 0, or the value of its variable when that is set: run once as is and
    /// once in a child with the variables set, so a wrong index fails.
    #[test]
    fn options_are_set() {
        for (option, var) in OPTIONS {
            let var = var.to_str().unwrap();
            let want = std::env::var(var).map_or(0, |v| v.parse().unwrap());
            #[allow(unsafe_code)]
            // SAFETY: reads an integer option.
            let got = unsafe { libmimalloc_sys::mi_option_get(option) };
            assert_eq!(got, want, "{var}");
        }
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "allocator::tests::options_are_set"])
                .env("MIMALLOC_ARENA_EAGER_COMMIT", "3")
                .env("MIMALLOC_PURGE_DELAY", "7")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{stdout}");
            assert!(stdout.contains("1 passed"), "{stdout}");
        }
    }
}
