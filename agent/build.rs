//! Link-time size for the release `outpost-agent` binary (2 MiB budget).
//!
//! Identical code folding: the linker keeps one copy of functions whose code
//! is byte-identical (generic instances over same-layout types, mostly),
//! 13,760 bytes of the agent. Rust promises no distinct function addresses,
//! so folding changes nothing the program can rely on. The flag is passed in
//! release builds, and only where the linker is known to be rust-lld (the
//! default of x86_64-unknown-linux-gnu): for another target, a linker set in
//! the cargo config (`RUSTC_LINKER`) or any link flag in RUSTFLAGS (`-C
//! linker`, `link-arg`, `link-self-contained`), the agent links without it,
//! as the GNU linker would refuse it.

fn main() {
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let var = |k| std::env::var(k).unwrap_or_default();
    let default_linker = std::env::var_os("RUSTC_LINKER").is_none()
        && !var("CARGO_ENCODED_RUSTFLAGS").contains("link")
        && var("TARGET") == "x86_64-unknown-linux-gnu";
    if default_linker && var("PROFILE") == "release" {
        println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
    }
}
