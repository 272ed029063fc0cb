//! Kernel memory management, hardware side: page tables, the direct map, vmalloc's
//! mappings, guarded stacks and the Rust heap. The allocator logic (buddy, slab/kmalloc,
//! vmalloc ranges, misuse checks) lives in the portable `kmbench-mm` crate.
//!
//! Virtual address layout (4-level paging, 48-bit):
//!
//! ```text
//! 0x0000_0000_0000_0000 ┬ null page — never mapped (NULL dereference faults)
//!                       │ unmapped
//! 0x0000_0000_0010_0000 ├ kernel image, identity-placed at 1 MiB, 4K leaves:
//!                       │   .text RX · .rodata R+NX · .data/.bss RW+NX
//! __kernel_end          ├ unmapped (the boot identity map of 0-4 GiB is gone)
//!                       ┆
//! 0xffff_8880_0000_0000 ├ direct map (PAGE_OFFSET): all RAM, virt = phys + PAGE_OFFSET,
//!                       │   leaf size per run: 4K | 2M | 1G   (kmalloc, alloc_pages)
//!                       ┆
//! 0xffff_c900_0000_0000 ├ vmalloc area (VMALLOC_START … +1 TiB): areas of 4K leaves
//!                       │   over scattered frames (2M leaves for vmalloc_huge),
//!                       │   each followed by an unmapped guard page
//!                       ┆
//! 0xffff_d000_0000_0000 ├ benchmark window (BENCH_MAP_START … +1 TiB): buffers mapped
//!                       │   again with a chosen leaf (4K/2M/1G) by the tlb/map suites
//! 0xffff_d100_0000_0000 ├ one 1 GiB probe mapping at boot (do 1G leaves really work?)
//!                       ┆
//! 0xffff_e000_0000_0000 ├ per-CPU vmap zones (VZONE_START, 128 MiB per CPU): small
//!                       │   vmallocs of the SMP suite, 8-page slots (≤ 4 used + guard)
//!                       ┆
//! 0xffff_e900_0000_0000 ├ kernel stacks: 16 KiB each, 16 KiB unmapped below each
//!                       ┆
//! 0xffff_ffff_ffff_ffff ┴
//! ```
//!
//! Construction happens at the run's CPL with the boot tables still live: the new tables
//! are written while no hardware (or shadow-paging hypervisor) walks them yet, then one
//! CR3 load switches over. Under kvm_pvm that keeps tens of thousands of PTE writes from
//! trapping. Only later changes (vmalloc, benchmark mappings) write live tables.
//!
//! Files: [`state`] (the one `KernelMm` and its scoped accessor), [`init`] (building the
//! tables, the buddy, kmalloc and vmalloc), [`api`] (the Linux-named memory API the
//! benchmarks call), [`paging`] (page-table writes through the `x86_64` crate),
//! [`window`] (the benchmark window), [`stacks`] (guarded stacks and their guard registry),
//! [`bootmem`] (the boot-time frame allocator), [`heap`] (the Rust heap), [`percpu`] (each
//! CPU's sheaves and page list), [`vzone`] (each CPU's vmap zone).
pub mod api;
pub mod bootmem;
pub mod heap;
pub mod init;
pub mod paging;
pub mod percpu;
pub mod stacks;
pub mod state;
pub mod vzone;
pub mod window;

pub use api::*;
pub use init::{init, InitReport};
pub use state::{enable_smp, is_initialized, smp_enabled, try_peek, with, KernelMm};

pub const PAGE_OFFSET: u64 = 0xffff_8880_0000_0000;
pub const VMALLOC_START: u64 = 0xffff_c900_0000_0000;
pub const VMALLOC_END: u64 = VMALLOC_START + (1 << 40);
/// Benchmark mapping window: buffers re-mapped with a chosen leaf size (tlb/map suites).
pub const BENCH_MAP_START: u64 = 0xffff_d000_0000_0000;
pub const BENCH_MAP_END: u64 = BENCH_MAP_START + (1 << 40);
/// Per-CPU vmap zones (`vzone`): `vzone::ZONE_BYTES` per CPU.
pub const VZONE_START: u64 = 0xffff_e000_0000_0000;
pub const STACKS_START: u64 = 0xffff_e900_0000_0000;
pub const STACKS_END: u64 = STACKS_START + (1 << 30);
