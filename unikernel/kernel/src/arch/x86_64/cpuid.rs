//! CPUID queries: features the benchmarks depend on, TSC and hypervisor leaves.
use core::arch::x86_64::{__cpuid_count, CpuidResult};
use kmbench_protocol::CpuFeatures;

pub fn cpuid(leaf: u32, sub: u32) -> CpuidResult {
    // CPUID exists on every x86_64 CPU and has no side effects (safe on this target).
    __cpuid_count(leaf, sub)
}

pub fn max_leaf() -> u32 {
    cpuid(0, 0).eax
}
pub fn max_ext_leaf() -> u32 {
    cpuid(0x8000_0000, 0).eax
}

pub fn vendor() -> [u8; 12] {
    let r = cpuid(0, 0);
    let mut v = [0u8; 12];
    v[0..4].copy_from_slice(&r.ebx.to_le_bytes());
    v[4..8].copy_from_slice(&r.edx.to_le_bytes());
    v[8..12].copy_from_slice(&r.ecx.to_le_bytes());
    v
}

pub fn brand() -> [u8; 48] {
    let mut b = [0u8; 48];
    if max_ext_leaf() >= 0x8000_0004 {
        for (i, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
            let r = cpuid(leaf, 0);
            for (j, reg) in [r.eax, r.ebx, r.ecx, r.edx].iter().enumerate() {
                b[i * 16 + j * 4..i * 16 + j * 4 + 4].copy_from_slice(&reg.to_le_bytes());
            }
        }
    }
    b
}

pub fn is_amd() -> bool {
    &vendor() == b"AuthenticAMD"
}

/// A leaf (subleaf 0), or all zeros when the CPU's maximum (basic or extended) leaf is lower.
pub fn leaf_if_present(leaf: u32) -> CpuidResult {
    let max = if leaf >= 0x8000_0000 {
        max_ext_leaf()
    } else {
        max_leaf()
    };
    if leaf <= max {
        cpuid(leaf, 0)
    } else {
        CpuidResult {
            eax: 0,
            ebx: 0,
            ecx: 0,
            edx: 0,
        }
    }
}

/// The CPU features kmbench reports and branches on.
pub fn features() -> CpuFeatures {
    let ext = leaf_if_present(0x8000_0001);
    let l1 = cpuid(1, 0);
    let l7 = leaf_if_present(7);
    let arch_pmu = max_leaf() >= 0xa
        && (cpuid(0xa, 0).eax & 0xff) != 0
        && ((cpuid(0xa, 0).eax >> 8) & 0xff) != 0;
    let amd_pmu = is_amd() && ext.ecx & (1 << 23) != 0;
    CpuFeatures {
        page_1g: ext.edx & (1 << 26) != 0,
        pcid: l1.ecx & (1 << 17) != 0,
        invpcid: l7.ebx & (1 << 10) != 0,
        pmu: arch_pmu || amd_pmu,
        nx: ext.edx & (1 << 20) != 0,
    }
}

pub fn invariant_tsc() -> bool {
    max_ext_leaf() >= 0x8000_0007 && cpuid(0x8000_0007, 0).edx & (1 << 8) != 0
}

/// KVM's paravirtual feature bits (leaf 0x4000_0001 EAX) when the hypervisor signature
/// is KVM's: bit 5 steal time, bit 9 PV TLB flush, …
pub fn kvm_features() -> Option<u32> {
    match hypervisor_signature() {
        Some(sig) if &sig == b"KVMKVMKVM\0\0\0" => Some(cpuid(0x4000_0001, 0).eax),
        _ => None,
    }
}

/// Hypervisor signature from leaf 0x40000000 ("KVMKVMKVM", "TCGTCGTCGTCG", …).
pub fn hypervisor_signature() -> Option<[u8; 12]> {
    if cpuid(1, 0).ecx & (1 << 31) == 0 {
        return None;
    }
    let r = cpuid(0x4000_0000, 0);
    let mut v = [0u8; 12];
    v[0..4].copy_from_slice(&r.ebx.to_le_bytes());
    v[4..8].copy_from_slice(&r.ecx.to_le_bytes());
    v[8..12].copy_from_slice(&r.edx.to_le_bytes());
    Some(v)
}

/// Max hypervisor leaf (eax of 0x40000000), when a hypervisor is present.
pub fn hypervisor_max_leaf() -> u32 {
    if hypervisor_signature().is_some() {
        cpuid(0x4000_0000, 0).eax
    } else {
        0
    }
}

pub fn bytes_to_str(b: &[u8]) -> &str {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    core::str::from_utf8(&b[..end]).unwrap_or("?").trim()
}
