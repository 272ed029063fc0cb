//! kmbench guest kernel: boots via PVH, sets up CPU tables, drops to the run's CPL,
//! builds its memory management and runs the planned benchmark suites, reporting
//! records to the host. Boot order (one step per module):
//!
//! `arch::boot` (32-bit entry → long mode) → `kmain` at CPL0: GDT/TSS/IDT only →
//! `run_main` at the run's CPL: log, plan, TSC, hello → `mm::init` → suites → exit.
//!
//! The kernel only exists for `x86_64-unknown-none` (`kmbench run` builds it); built for
//! the host (e.g. `cargo build --workspace`) this crate is a stub that says so: every
//! module below is declared for the kernel target only.
//!
//! Assembly lives in `arch` (boot entry, exception and gate stubs, privileged
//! instructions, the timed loops), with one exception: `fault`/`exception` never need
//! any, and nothing outside `arch` writes `asm!`.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
#[path = "arch/x86_64/mod.rs"]
pub mod arch;
#[cfg(target_os = "none")]
pub mod bench;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod exception;
#[cfg(target_os = "none")]
pub mod fault;
#[cfg(target_os = "none")]
mod kmain;
#[cfg(target_os = "none")]
pub mod mm;
#[cfg(target_os = "none")]
pub mod report;
#[cfg(target_os = "none")]
pub mod rng;
#[cfg(target_os = "none")]
pub mod selftest;
#[cfg(target_os = "none")]
pub mod serve;
#[cfg(target_os = "none")]
pub mod smp;
#[cfg(target_os = "none")]
pub mod timing;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "kmbench-kernel is a unikernel: build it with `cargo build --release -p kmbench-kernel \
         --target x86_64-unknown-none` (`kmbench run` does that for you)"
    );
    std::process::exit(2);
}
