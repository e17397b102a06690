//! `tessera`: the server and the operator CLI.

fn main() -> std::process::ExitCode {
    tune_malloc();
    tessera::cli::run()
}

/// Keeps resident memory near what the server really uses, under glibc's malloc:
/// - busy threads otherwise get their own arenas (up to eight per core), and memory
///   freed in one arena is not reused by another: two arenas are enough;
/// - a password hash allocates its whole Argon2 memory (tens of MiB) at once. glibc
///   serves such blocks with `mmap` and returns them on free, but after the first
///   free it raises its threshold to the block's size, so every later hash is
///   carved from the heap and stays resident. A fixed threshold turns that
///   adjustment off: blocks of 1 MiB or more always go back to the system.
///
/// Set before any thread starts; no measurable cost in throughput.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
