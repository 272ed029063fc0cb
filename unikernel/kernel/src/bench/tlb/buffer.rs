//! Buffers for the tlb suites, one per mapping kind: buddy frames or blocks mapped in the
//! benchmark window with 4K/2M/1G leaves, or vmalloc/vmalloc_huge areas.
use super::{available_bytes, leaf_label, size_label, G1_FAULTS, PAGE};
use crate::arch::privileged;
use crate::mm;
use crate::mm::window::{self, BenchWindow};
use crate::rng::Rng;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use kmbench_mm::Gfp;
use kmbench_protocol::PageSize;
use kmbench_protocol::{BenchStatus, Mapping};

pub(super) enum Backing {
    /// Order-0 frames (phys), mapped in this order in the window.
    Frames(Vec<u64>),
    /// Buddy blocks (phys, order), mapped in this order in the window.
    Blocks(Vec<(u64, u8)>),
    Vmalloc(*mut u8),
}

pub(super) struct Buffer {
    pub base: u64,
    pub bytes: u64,
    backing: Backing,
    /// The window the frames/blocks are mapped in (none for vmalloc buffers).
    window: Option<BenchWindow>,
    /// How it was built, for records.
    pub how: String,
}

impl Buffer {
    pub fn free(self) {
        // Unmap first (the window's drop tears its tables down), then free the frames.
        drop(self.window);
        match self.backing {
            Backing::Frames(f) => {
                let blocks: Vec<(u64, u8)> = f.into_iter().map(|p| (p, 0)).collect();
                window::free_blocks(&blocks);
            }
            Backing::Blocks(b) => window::free_blocks(&b),
            Backing::Vmalloc(p) => mm::vfree(p),
        }
    }
}

pub(super) fn leaf_of(m: Mapping) -> PageSize {
    match m {
        Mapping::Direct4K | Mapping::Vmalloc => PageSize::Size4K,
        Mapping::Direct2M | Mapping::VmallocHuge => PageSize::Size2M,
        Mapping::Direct1G => PageSize::Size1G,
    }
}

/// A buffer of up to `want` bytes of the given mapping kind.
pub(super) fn build_buffer(
    mapping: Mapping,
    want: u64,
    scatter_4k: bool,
    seed: u64,
) -> Result<Buffer, (BenchStatus, String)> {
    let leaf = leaf_of(mapping);
    let avail = available_bytes();
    let bytes = want.min(avail) / leaf.bytes() * leaf.bytes();
    if bytes == 0 {
        return Err((
            BenchStatus::Oom,
            format!(
                "{} needs at least {} of free RAM, {} available",
                mapping.label(),
                size_label(leaf.bytes()),
                size_label(avail)
            ),
        ));
    }
    match mapping {
        Mapping::Vmalloc | Mapping::VmallocHuge => {
            let mut b = bytes;
            while b >= leaf.bytes() {
                let p = if mapping == Mapping::Vmalloc {
                    mm::vmalloc(b as usize, Gfp(0))
                } else {
                    mm::vmalloc_huge(b as usize, Gfp(0))
                };
                if !p.is_null() {
                    if mapping == Mapping::VmallocHuge {
                        // The label must be what the page tables say: walk every leaf.
                        let small = (0..b / leaf.bytes())
                            .filter(|i| {
                                !matches!(
                                    mm::translate(p as u64 + i * leaf.bytes()),
                                    Some((_, PageSize::Size2M, _))
                                )
                            })
                            .count();
                        if small > 0 {
                            let why = mm::with(|m| m.vmalloc.stats().last_huge_fallback)
                                .map_or("unknown", |f| f.describe());
                            mm::vfree(p);
                            return Err((
                                BenchStatus::Error,
                                format!(
                                    "vmalloc_huge({}) is not mapped with 2M leaves ({small} of {} 2 MiB ranges are not, by a page-table walk): {why}",
                                    size_label(b),
                                    b / leaf.bytes()
                                ),
                            ));
                        }
                    }
                    let how = if mapping == Mapping::Vmalloc {
                        "vmalloc: 4K leaves over order-0 frames"
                    } else {
                        "vmalloc_huge: 2M leaves over order-9 blocks (every leaf checked by a page-table walk)"
                    };
                    return Ok(Buffer {
                        base: p as u64,
                        bytes: b,
                        backing: Backing::Vmalloc(p),
                        window: None,
                        how: how.to_string(),
                    });
                }
                b = b / 2 / leaf.bytes() * leaf.bytes();
            }
            Err((
                BenchStatus::Oom,
                format!("{} of {} failed", mapping.label(), size_label(bytes)),
            ))
        }
        _ => {
            let mut window = BenchWindow::open();
            let base = window.base();
            if mapping == Mapping::Direct4K && scatter_4k {
                let mut frames = window::alloc_frames(bytes / PAGE);
                let mut rng = Rng::new(seed ^ 0x5ca7_7e12);
                for i in (1..frames.len()).rev() {
                    let j = rng.below(i as u64 + 1) as usize;
                    frames.swap(i, j);
                }
                for (i, &f) in frames.iter().enumerate() {
                    if let Err(e) = window.map(i as u64 * PAGE, f, PageSize::Size4K) {
                        let b = Buffer {
                            base,
                            bytes: 0,
                            backing: Backing::Frames(frames),
                            window: Some(window),
                            how: String::new(),
                        };
                        b.free();
                        return Err((BenchStatus::Error, format!("mapping the 4K buffer: {e}")));
                    }
                }
                privileged::flush_tlb_all();
                let got = frames.len() as u64 * PAGE;
                Ok(Buffer {
                    base,
                    bytes: got,
                    backing: Backing::Frames(frames),
                    window: Some(window),
                    how: "order-0 frames in shuffled order, 4K leaves in the benchmark window (no physically adjacent neighbours)".to_string(),
                })
            } else {
                let order: u8 = match leaf {
                    PageSize::Size4K | PageSize::Size2M => 9.min(bytes.trailing_zeros() as u8 - 12),
                    PageSize::Size1G => 18,
                };
                let blocks = window::alloc_blocks(bytes, order);
                let got = blocks.len() as u64 * (PAGE << order);
                if got == 0 {
                    return Err((
                        BenchStatus::Oom,
                        format!(
                            "no free order-{order} block ({}) for {}",
                            size_label(PAGE << order),
                            mapping.label()
                        ),
                    ));
                }
                if let Err(e) = window.map_blocks(&blocks, leaf) {
                    drop(window);
                    window::free_blocks(&blocks);
                    return Err((
                        BenchStatus::Error,
                        format!("mapping the {} buffer: {e}", leaf_label(leaf)),
                    ));
                }
                privileged::flush_tlb_all();
                if leaf == PageSize::Size1G && crate::arch::idt::probe_read(base).is_err() {
                    drop(window);
                    window::free_blocks(&blocks);
                    return Err((BenchStatus::Unsupported, G1_FAULTS.to_string()));
                }
                Ok(Buffer {
                    base,
                    bytes: got,
                    backing: Backing::Blocks(blocks),
                    window: Some(window),
                    how: format!(
                        "order-{order} buddy blocks, {} leaves in the benchmark window",
                        leaf_label(leaf)
                    ),
                })
            }
        }
    }
}
