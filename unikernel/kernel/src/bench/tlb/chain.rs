//! Pointer chains written into a buffer: which slot (address) each step of a pattern
//! visits, and the cyclic order (Sattolo's algorithm for the random patterns).
use super::{LINE, PAGE};
use crate::rng::{mix, Rng};
use kmbench_protocol::AccessPattern;

/// Line offset (in lines) of page `i`'s slot: pseudo-random, fixed for the run.
fn line_of(i: u64, seed: u64) -> u64 {
    mix(i ^ seed.rotate_left(17)) & (PAGE / LINE - 1)
}

pub(super) fn slots(pattern: AccessPattern, bytes: u64) -> u64 {
    match pattern {
        AccessPattern::RandomLine | AccessPattern::Sequential => bytes / LINE,
        AccessPattern::Random | AccessPattern::PageStride => bytes / PAGE,
    }
}

fn slot_addr(base: u64, pattern: AccessPattern, i: u64, seed: u64) -> u64 {
    match pattern {
        AccessPattern::RandomLine | AccessPattern::Sequential => base + i * LINE,
        AccessPattern::Random | AccessPattern::PageStride => {
            base + i * PAGE + line_of(i, seed) * LINE
        }
    }
}

/// Write the pointer chain for `n` slots into the buffer; returns the start address.
pub(super) fn build_chain(base: u64, pattern: AccessPattern, n: u64, seed: u64) -> u64 {
    let at = |i: u64| slot_addr(base, pattern, i, seed) as *mut u64;
    // SAFETY: every slot lies inside the mapped buffer (n slots of the working set, which
    // is a prefix of the buffer) and nothing else uses the buffer.
    unsafe {
        match pattern {
            AccessPattern::PageStride | AccessPattern::Sequential => {
                for i in 0..n {
                    at(i).write(at((i + 1) % n) as u64);
                }
            }
            AccessPattern::Random | AccessPattern::RandomLine => {
                // Sattolo: a[i] = i, then swap a[i] with a[j], j < i: one n-cycle, i → a[i].
                for i in 0..n {
                    at(i).write(i);
                }
                let mut rng = Rng::new(seed);
                let mut i = n;
                while i > 1 {
                    i -= 1;
                    let j = rng.below(i);
                    let (pi, pj) = (at(i), at(j));
                    let t = pi.read();
                    pi.write(pj.read());
                    pj.write(t);
                }
                for i in 0..n {
                    let p = at(i);
                    p.write(at(p.read()) as u64);
                }
            }
        }
    }
    at(0) as u64
}
