//! The CPUID table given to each vCPU (KVM_SET_CPUID2): the host-supported leaves
//! (KVM_GET_SUPPORTED_CPUID) filtered like QEMU's `-cpu host,-arch-capabilities`, with the
//! per-vCPU APIC IDs Firecracker's normalisation writes, plus the KVM signature and timing
//! leaves.
//!
//! Hardware KVM vs kvm_pvm: on VMX/SVM the guest's CPUID exits to KVM and reads this
//! table; under kvm_pvm CPUID executes natively and the guest sees the outer hypervisor's
//! leaves, so there this table only matters to KVM's own checks. [`filter`] is a pure
//! function of the entries, unit-tested below.
use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::Kvm;

use super::error::{Result, VmmError};

/// Leaf 0x4000_0000: hypervisor signature and the highest hypervisor leaf.
pub const KVM_SIGNATURE_LEAF: u32 = 0x4000_0000;
/// Leaf 0x4000_0010: TSC and APIC-bus frequencies in kHz (the VMware/KVM timing leaf).
pub const KVM_TIMING_LEAF: u32 = 0x4000_0010;
/// APIC bus frequency reported in the timing leaf (kHz), as QEMU.
pub const APIC_BUS_KHZ: u32 = 1_000_000;

/// CPUID.1:ECX[31], "hypervisor present".
pub const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID.7.0:EDX[29], IA32_ARCH_CAPABILITIES (QEMU's `-arch-capabilities`).
pub const LEAF7_EDX_ARCH_CAPABILITIES: u32 = 1 << 29;

/// Rewrite host-supported `entries` for vCPU `index`: hypervisor bit on, initial APIC ID
/// and x2APIC ID = `index`, no IA32_ARCH_CAPABILITIES, the KVM signature leaf (max leaf
/// 0x40000010 when `tsc_khz` is known, else 0x40000001) and the timing leaf. Returns what
/// was changed, for `env.extra.vmm_cpuid`.
pub fn filter(
    entries: &mut Vec<kvm_cpuid_entry2>,
    index: u32,
    tsc_khz: Option<u32>,
) -> Vec<String> {
    let mut notes = vec!["host-supported (KVM_GET_SUPPORTED_CPUID)".to_string()];
    let hv_max: u32 = if tsc_khz.is_some() {
        KVM_TIMING_LEAF
    } else {
        KVM_SIGNATURE_LEAF + 1
    };
    let mut have_sig = false;
    let mut have_timing = false;
    for e in entries.iter_mut() {
        match (e.function, e.index) {
            (1, _) => {
                e.ecx |= LEAF1_ECX_HYPERVISOR;
                // EBX[31:24]: initial APIC ID.
                e.ebx = (e.ebx & 0x00ff_ffff) | (index << 24);
            }
            (7, 0) => e.edx &= !LEAF7_EDX_ARCH_CAPABILITIES,
            // EDX: x2APIC ID of this logical processor.
            (0xb, _) | (0x1f, _) => e.edx = index,
            (KVM_SIGNATURE_LEAF, _) => {
                have_sig = true;
                set_kvm_signature(e, hv_max);
            }
            (KVM_TIMING_LEAF, _) => {
                have_timing = true;
                e.eax = tsc_khz.unwrap_or(0);
                e.ebx = APIC_BUS_KHZ;
            }
            _ => {}
        }
    }
    notes.push("-arch-capabilities (7.0:EDX[29])".into());
    notes.push("+hypervisor (1:ECX[31])".into());
    if !have_sig {
        let mut e = kvm_cpuid_entry2 {
            function: KVM_SIGNATURE_LEAF,
            ..Default::default()
        };
        set_kvm_signature(&mut e, hv_max);
        entries.push(e);
    }
    if let Some(khz) = tsc_khz {
        if !have_timing {
            entries.push(kvm_cpuid_entry2 {
                function: KVM_TIMING_LEAF,
                eax: khz,
                ebx: APIC_BUS_KHZ,
                ..Default::default()
            });
        }
        notes.push(format!("KVMKVMKVM leaves up to 0x40000010 (TSC {khz} kHz)"));
    } else {
        notes.push(
            "KVMKVMKVM leaves up to 0x40000001 (no TSC kHz: guest calibrates against the PIT)"
                .into(),
        );
    }
    notes
}

/// The host-supported table, [`filter`]ed for vCPU `index`.
pub fn for_vcpu(kvm: &Kvm, index: u32, tsc_khz: Option<u32>) -> Result<(CpuId, Vec<String>)> {
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(VmmError::kvm("KVM_GET_SUPPORTED_CPUID"))?;
    let mut entries = supported.as_slice().to_vec();
    let notes = filter(&mut entries, index, tsc_khz);
    let cpuid = CpuId::from_entries(&entries).map_err(|_| VmmError::CpuidFull {
        entries: entries.len(),
    })?;
    Ok((cpuid, notes))
}

/// "KVMKVMKVM\0\0\0" in EBX:ECX:EDX, `max` in EAX.
fn set_kvm_signature(e: &mut kvm_cpuid_entry2, max: u32) {
    let sig = b"KVMKVMKVM\0\0\0";
    e.eax = max;
    e.ebx = u32::from_le_bytes(sig[0..4].try_into().unwrap());
    e.ecx = u32::from_le_bytes(sig[4..8].try_into().unwrap());
    e.edx = u32::from_le_bytes(sig[8..12].try_into().unwrap());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, index: u32, ebx: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ebx,
            ecx,
            edx,
            ..Default::default()
        }
    }

    fn find(e: &[kvm_cpuid_entry2], function: u32, index: u32) -> kvm_cpuid_entry2 {
        *e.iter()
            .find(|x| x.function == function && x.index == index)
            .unwrap_or_else(|| panic!("leaf {function:#x}.{index} missing"))
    }

    /// The filtering Firecracker's CPUID normalisation and QEMU's `-cpu host,-arch-capabilities`
    /// apply: hypervisor bit, APIC IDs per vCPU, arch-capabilities hidden, KVM leaves.
    #[test]
    fn filtered_like_firecracker_and_qemu() {
        let mut e = vec![
            leaf(1, 0, 0xff08_0800, 0x7ffa_3203, 0),
            leaf(7, 0, 0, 0, 0xffff_ffff),
            leaf(0xb, 0, 0, 0, 7),
            leaf(0xb, 1, 0, 0, 7),
            leaf(0x8000_0001, 0, 0, 0x1234, 0x5678),
        ];
        let notes = filter(&mut e, 2, Some(2_596_000));
        let l1 = find(&e, 1, 0);
        assert_eq!(l1.ecx & LEAF1_ECX_HYPERVISOR, LEAF1_ECX_HYPERVISOR);
        assert_eq!(
            l1.ecx & !LEAF1_ECX_HYPERVISOR,
            0x7ffa_3203,
            "other bits kept"
        );
        assert_eq!(l1.ebx >> 24, 2, "initial APIC ID = vCPU index");
        assert_eq!(
            l1.ebx & 0x00ff_ffff,
            0x08_0800,
            "CLFLUSH size, logical count kept"
        );
        assert_eq!(find(&e, 7, 0).edx, !LEAF7_EDX_ARCH_CAPABILITIES);
        assert_eq!(find(&e, 0xb, 0).edx, 2, "x2APIC ID = vCPU index");
        assert_eq!(find(&e, 0xb, 1).edx, 2);
        let ext = find(&e, 0x8000_0001, 0);
        assert_eq!((ext.ecx, ext.edx), (0x1234, 0x5678), "untouched");
        let sig = find(&e, KVM_SIGNATURE_LEAF, 0);
        assert_eq!(sig.eax, KVM_TIMING_LEAF);
        let mut s = Vec::new();
        for r in [sig.ebx, sig.ecx, sig.edx] {
            s.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&s, b"KVMKVMKVM\0\0\0");
        let t = find(&e, KVM_TIMING_LEAF, 0);
        assert_eq!((t.eax, t.ebx), (2_596_000, APIC_BUS_KHZ));
        assert!(
            notes.iter().any(|n| n.contains("TSC 2596000 kHz")),
            "{notes:?}"
        );
    }

    #[test]
    fn without_tsc_khz_no_timing_leaf() {
        let mut e = vec![leaf(1, 0, 0, 0, 0)];
        filter(&mut e, 0, None);
        assert_eq!(find(&e, KVM_SIGNATURE_LEAF, 0).eax, 0x4000_0001);
        assert!(!e.iter().any(|x| x.function == KVM_TIMING_LEAF));
        assert_eq!(find(&e, 1, 0).ebx >> 24, 0);
    }
}
