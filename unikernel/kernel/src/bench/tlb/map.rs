//! The `map` suite: mapping and unmapping physically contiguous memory in the benchmark
//! window with 4K, 2M (and 1G) leaves, per leaf, into live page tables.
use super::{available_bytes, is_pvm, leaf_label, size_label, G1_FAULTS, PAGE};
use crate::arch::privileged::run_cpl;
use crate::arch::{cpuid, tsc};
use crate::mm::window::{self, BenchWindow};
use crate::report::Bench;
use crate::timing;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use kmbench_protocol::PageSize;
use kmbench_protocol::{BenchStatus, MapSuite};

pub fn map_suite(cfg: &MapSuite) {
    let features = cpuid::features();
    let cpl = run_cpl();
    let ovh = timing::overhead();
    for &size in &cfg.sizes {
        let mut leaves = vec![PageSize::Size4K, PageSize::Size2M];
        if size >= 1 << 30 {
            leaves.push(PageSize::Size1G);
        }
        for leaf in leaves {
            let label = size_label(size);
            let names = [
                format!("map/{}/{label}", leaf_label(leaf)),
                format!("unmap/{}/{label}", leaf_label(leaf)),
            ];
            let status = |st: BenchStatus, msg: &str| {
                for n in &names {
                    Bench::new("map", n.clone())
                        .param("bytes", size)
                        .param("leaf", leaf_label(leaf))
                        .emit_status(st, msg);
                }
            };
            if leaf == PageSize::Size1G && !features.page_1g {
                status(
                    BenchStatus::Unsupported,
                    "1 GiB pages not offered: CPUID 0x80000001 EDX bit 26 (pdpe1gb) is 0",
                );
                continue;
            }
            if size % leaf.bytes() != 0 {
                status(
                    BenchStatus::Unsupported,
                    "size is not a multiple of the leaf size",
                );
                continue;
            }
            let order: u8 = if leaf == PageSize::Size1G {
                18
            } else {
                9.min(size.trailing_zeros() as u8 - 12)
            };
            if size > available_bytes() {
                status(BenchStatus::Oom, "not enough free RAM");
                continue;
            }
            let blocks = window::alloc_blocks(size, order);
            if (blocks.len() as u64) * (PAGE << order) < size {
                window::free_blocks(&blocks);
                status(
                    BenchStatus::Oom,
                    &format!("not enough free order-{order} blocks"),
                );
                continue;
            }
            let nleaves = size / leaf.bytes();
            let mut window = BenchWindow::open();
            let base = window.base();
            let mut map_s: Vec<f64> = Vec::new();
            let mut unmap_s: Vec<f64> = Vec::new();
            let mut tables = 0u64;
            let mut failed: Option<&'static str> = None;
            for _ in 0..cfg.samples.max(1) {
                let t0 = window::table_pages();
                let a = tsc::start();
                let r = window.map_blocks(&blocks, leaf);
                let z = tsc::stop();
                tables = window::table_pages() - t0;
                if let Err(e) = r {
                    failed = Some(e);
                    break;
                }
                if leaf == PageSize::Size1G
                    && map_s.is_empty()
                    && crate::arch::idt::probe_read(base).is_err()
                {
                    failed = Some(G1_FAULTS);
                    break;
                }
                map_s.push((z - a) as f64 - ovh);
                // Use the mapping the way a caller would: touch every leaf (untimed).
                let mut off = 0;
                while off < size {
                    // SAFETY: just mapped, writable, owned by this suite.
                    unsafe { ((base + off) as *mut u64).write_volatile(off) };
                    off += leaf.bytes();
                }
                let a = tsc::start();
                window.unmap_leaves(size, leaf);
                let z = tsc::stop();
                unmap_s.push((z - a) as f64 - ovh);
                window.clear();
            }
            drop(window);
            window::free_blocks(&blocks);
            if let Some(e) = failed {
                status(
                    if e == G1_FAULTS {
                        BenchStatus::Unsupported
                    } else {
                        BenchStatus::Error
                    },
                    e,
                );
                continue;
            }
            let per = |v: &[f64]| {
                let mut w = v.to_vec();
                w.sort_by(|a, b| a.total_cmp(b));
                w[w.len() / 2] / nleaves as f64
            };
            let (pm, pu) = (per(&map_s), per(&unmap_s));
            let note = if is_pvm() {
                "CPL3 under a shadow-paging hypervisor (CS reads 0x33, kvm_pvm): writes into live page tables trap (~6,500 cycles each); new tables are not yet shadowed"
            } else {
                "native PTE writes"
            };
            Bench::new("map", names[0].clone())
                .param("bytes", size)
                .param("leaf", leaf_label(leaf))
                .param("leaves", nleaves)
                .param("cpl", cpl)
                .extra("per_leaf_cycles", pm)
                .extra("table_pages_allocated", tables)
                .extra("what", "map_leaf per leaf into an empty benchmark window (new table pages from the buddy, zeroed by the mapper); no TLB flush (none needed for new entries)")
                .extra("hypervisor_note", note)
                .emit_cycles_f64(&mut map_s);
            Bench::new("map", names[1].clone())
                .param("bytes", size)
                .param("leaf", leaf_label(leaf))
                .param("leaves", nleaves)
                .param("cpl", cpl)
                .extra("per_leaf_cycles", pu)
                .extra("what", "unmap_leaf per leaf (after every leaf was touched) then one full TLB flush (CR3 reload; through the gate at CPL3); table pages are freed afterwards, untimed")
                .extra("flush", "cr3 reload")
                .extra("hypervisor_note", note)
                .emit_cycles_f64(&mut unmap_s);
        }
    }
}
