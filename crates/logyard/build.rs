//! Release links of the `logyard` binary pack their relative relocations (`-z
//! pack-relative-relocs`, DT_RELR): the binary is position-independent, and its 6 MB of
//! `.rela.dyn` entries, one per pointer in its tables, shrink to a few kilobytes of bitmaps.
//! The glibc that loads such a binary must be 2.36 or newer, so this is done only in native
//! release builds on a glibc that new (Debian 12 and 13, the image's builder); a build on an
//! older glibc (Amazon Linux 2023 has 2.34) links as before.

use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let native = var("HOST") == var("TARGET");
    let gnu_linux = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if var("PROFILE") == "release" && native && gnu_linux && glibc_at_least(2, 36) {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the build machine's glibc (`getconf GNU_LIBC_VERSION`: "glibc 2.36") is this new.
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut version = text.trim().trim_start_matches("glibc ").split('.').map(|p| p.parse::<u32>().ok());
    match (version.next().flatten(), version.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}
