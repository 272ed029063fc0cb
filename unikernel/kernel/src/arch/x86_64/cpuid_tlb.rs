//! Decoding the data-TLB geometry CPUID describes: AMD leaves 0x80000005/0x80000006/
//! 0x80000019, Intel's deterministic address translation leaf 0x18. Emitted as the
//! `tlb/cpuid` info record.
use super::cpuid;
use alloc::format;
use alloc::vec::Vec;
use serde_json::json;

fn amd_assoc(a: u32) -> serde_json::Value {
    match a {
        0 => json!("none"),
        0xff => json!("full"),
        n => json!(n),
    }
}

/// L2 associativity encoding (0x80000006, 4-bit).
fn amd_l2_assoc(a: u32) -> serde_json::Value {
    match a {
        0 => json!("none"),
        1 => json!(1),
        2 => json!(2),
        3 => json!(3),
        4 => json!(4),
        5 => json!(6),
        6 => json!(8),
        8 => json!(16),
        0xa => json!(32),
        0xb => json!(48),
        0xc => json!(64),
        0xd => json!(96),
        0xe => json!(128),
        0xf => json!("full"),
        9 => json!("see 0x8000001d"),
        n => json!(format!("code {n}")),
    }
}

/// Data-TLB entries per level and page size as CPUID reports them.
pub fn cpuid_tlb() -> serde_json::Value {
    let mut entries: Vec<serde_json::Value> = Vec::new();
    let source;
    if cpuid::is_amd() || cpuid::max_ext_leaf() >= 0x8000_0005 && cpuid::max_leaf() < 0x18 {
        source = "amd cpuid 0x80000005/0x80000006/0x80000019";
        if cpuid::max_ext_leaf() >= 0x8000_0005 {
            let r = cpuid::cpuid(0x8000_0005, 0);
            let e = |reg: u32| (reg >> 16) & 0xff;
            entries.push(json!({"level": "L1", "type": "data", "page_size": "4K", "entries": e(r.ebx), "assoc": amd_assoc(r.ebx >> 24)}));
            entries.push(json!({"level": "L1", "type": "data", "page_size": "2M", "entries": e(r.eax), "assoc": amd_assoc(r.eax >> 24), "note": "4M pages take two entries"}));
        }
        if cpuid::max_ext_leaf() >= 0x8000_0006 {
            let r = cpuid::cpuid(0x8000_0006, 0);
            let e = |reg: u32| (reg >> 16) & 0xfff;
            entries.push(json!({"level": "L2", "type": "data", "page_size": "4K", "entries": e(r.ebx), "assoc": amd_l2_assoc(r.ebx >> 28)}));
            entries.push(json!({"level": "L2", "type": "data", "page_size": "2M", "entries": e(r.eax), "assoc": amd_l2_assoc(r.eax >> 28)}));
        }
        if cpuid::max_ext_leaf() >= 0x8000_0019 {
            let r = cpuid::cpuid(0x8000_0019, 0);
            let e = |reg: u32| (reg >> 16) & 0xfff;
            if r.eax != 0 || r.ebx != 0 {
                entries.push(json!({"level": "L1", "type": "data", "page_size": "1G", "entries": e(r.eax), "assoc": amd_l2_assoc(r.eax >> 28)}));
                entries.push(json!({"level": "L2", "type": "data", "page_size": "1G", "entries": e(r.ebx), "assoc": amd_l2_assoc(r.ebx >> 28)}));
            }
        }
    } else if cpuid::max_leaf() >= 0x18 {
        source = "intel cpuid 0x18 (deterministic address translation)";
        let max_sub = cpuid::cpuid(0x18, 0).eax;
        for sub in 0..=max_sub.min(64) {
            let r = cpuid::cpuid(0x18, sub);
            let kind = r.edx & 0x1f;
            if kind == 0 {
                continue;
            }
            let kind_name = match kind {
                1 => "data",
                2 => "instruction",
                3 => "unified",
                4 => "load",
                5 => "store",
                _ => "other",
            };
            let level = (r.edx >> 5) & 7;
            let ways = (r.ebx >> 16) & 0xffff;
            let sets = r.ecx;
            let full = r.edx & (1 << 8) != 0;
            let mut sizes = Vec::new();
            for (bit, n) in [(0, "4K"), (1, "2M"), (2, "4M"), (3, "1G")] {
                if r.ebx & (1 << bit) != 0 {
                    sizes.push(n);
                }
            }
            for s in sizes {
                if s == "4M" {
                    continue;
                }
                entries.push(json!({"level": format!("L{level}"), "type": kind_name, "page_size": s,
                    "entries": ways as u64 * sets as u64, "assoc": if full { json!("full") } else { json!(ways) }}));
            }
        }
    } else {
        source = "none (no TLB leaf)";
    }
    json!({"source": source, "entries": entries})
}
