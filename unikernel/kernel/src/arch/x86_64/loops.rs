//! The measured inner loops of the tlb suites, in assembly so the compiler cannot change
//! what is timed: a dependent pointer chase (one load per step) and a streaming read
//! (one load per 64-byte line); and the alu suite's dependent add chain.
use core::arch::asm;

/// Follow the chain `n` steps (n ≥ 1); returns where it stopped.
#[inline(never)]
pub fn chase(mut p: u64, n: u64) -> u64 {
    // SAFETY: p starts on a chain slot and every slot holds the address of another slot.
    unsafe {
        asm!("2:", "mov {p}, [{p}]", "dec {n}", "jnz 2b",
             p = inout(reg) p, n = inout(reg) n.max(1) => _, options(nostack, readonly));
    }
    p
}

/// Read one word per line, `lines` lines, streaming over [base, base+bytes) and wrapping.
#[inline(never)]
pub fn stream(base: u64, bytes: u64, lines: u64) -> u64 {
    let end = base + bytes;
    let mut acc: u64 = 0;
    // SAFETY: reads only addresses inside [base, end), which is mapped.
    unsafe {
        asm!("mov {p}, {base}",
             "2:", "add {acc}, [{p}]", "add {p}, 64", "cmp {p}, {end}", "jb 3f", "mov {p}, {base}",
             "3:", "dec {n}", "jnz 2b",
             base = in(reg) base, end = in(reg) end, p = out(reg) _, acc = inout(reg) acc,
             n = inout(reg) lines.max(1) => _, options(nostack, readonly));
    }
    acc
}

/// A dependent chain: each `add` needs the previous result, so one iteration costs the
/// add's latency plus loop overhead (~1-1.5 cycles on modern cores).
#[inline(never)]
pub fn dependent_adds(iterations: u64) -> u64 {
    let mut x: u64 = 1;
    // SAFETY: register-only arithmetic loop.
    unsafe {
        asm!("2:", "add {x}, {x}", "add {x}, 1", "dec {n}", "jnz 2b",
             x = inout(reg) x, n = inout(reg) iterations => _, options(nomem, nostack));
    }
    x
}
