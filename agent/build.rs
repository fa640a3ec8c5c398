//! Link-time size for the release `outpost-agent` binary (2 MiB budget).
//!
//! Identical code folding: the linker keeps one copy of functions whose code
//! is byte-identical (generic instances over same-layout types, mostly),
//! 13,760 bytes of the agent. Rust promises no distinct function addresses,
//! so folding changes nothing the program can rely on.
//!
//! No unwind tables: the release profile aborts on panic (`panic = "abort"`),
//! so nothing unwinds, and the tables (`.eh_frame`, its index
//! `.eh_frame_hdr`, `.gcc_except_table`) serve only the frame addresses a
//! panic prints under `RUST_BACKTRACE=full`, which a stripped binary cannot
//! name anyway (`RUST_BACKTRACE=1` prints the same, no frame, with or without
//! them): 225,384 bytes of the agent. A panic still prints its message and
//! location, and aborts. The tables are dropped by a linker script that
//! `INSERT`s a `/DISCARD/` rule into the linker's default layout.
//!
//! Both are passed in release builds, and only where the linker is known to
//! be rust-lld (the default of x86_64-unknown-linux-gnu): for another target,
//! a linker set in the cargo config (`RUSTC_LINKER`) or any link flag in
//! RUSTFLAGS (`-C linker`, `link-arg`, `link-self-contained`), the agent
//! links without them, as the GNU linker would refuse `--icf`.

fn main() {
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let var = |k| std::env::var(k).unwrap_or_default();
    let default_linker = std::env::var_os("RUSTC_LINKER").is_none()
        && !var("CARGO_ENCODED_RUSTFLAGS").contains("link")
        && var("TARGET") == "x86_64-unknown-linux-gnu";
    if default_linker && var("PROFILE") == "release" {
        println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
        let script = std::path::Path::new(&var("OUT_DIR")).join("no-unwind-tables.ld");
        std::fs::write(&script, NO_UNWIND_TABLES).expect("write the linker script to OUT_DIR");
        println!("cargo:rustc-link-arg-bins=-Wl,--no-eh-frame-hdr");
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
    }
}

/// Drops the unwind and landing-pad tables; `INSERT` keeps the rest of the
/// default layout.
const NO_UNWIND_TABLES: &str =
    "SECTIONS { /DISCARD/ : { *(.eh_frame) *(.gcc_except_table .gcc_except_table.*) } } INSERT AFTER .text;\n";
