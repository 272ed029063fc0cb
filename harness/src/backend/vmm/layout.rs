//! Guest-physical layout of the embedded VMM's guest: the boot ABI's layout
//! ([`kmbench_bootabi::layout`], shared with the kernel) plus the VMM-only addresses, and
//! the memory map the guest is told about.
pub use kmbench_bootabi::layout::*;
use kmbench_bootabi::{HvmMemmapEntry, E820_RAM};

/// TSS address for Intel VMX (KVM_SET_TSS_ADDR), as Firecracker/QEMU use: 3 pages below
/// 4 GiB. Hardware-KVM only: AMD SVM and kvm_pvm ignore it.
pub const TSS_ADDR: usize = 0xfffb_d000;

/// Guest RAM is at least this much (the kernel image and its early allocations).
pub const MIN_MEMORY: u64 = 8 << 20;

/// The PVH memory map: [0, 0x9fc00) and [1 MiB, mem_end), both RAM.
pub fn memmap(mem_bytes: u64) -> Vec<HvmMemmapEntry> {
    let ram = |addr: u64, size: u64| HvmMemmapEntry {
        addr,
        size,
        kind: E820_RAM,
        reserved: 0,
    };
    vec![
        ram(0, LOW_RAM_END),
        ram(HIGH_RAM_START, mem_bytes - HIGH_RAM_START),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_map_has_low_and_high_ram() {
        let m = memmap(64 << 20);
        assert_eq!((m[0].addr, m[0].size, m[0].kind), (0, LOW_RAM_END, 1));
        assert_eq!(
            (m[1].addr, m[1].size, m[1].kind),
            (HIGH_RAM_START, (64 << 20) - HIGH_RAM_START, 1)
        );
    }

    #[test]
    fn layout_stays_below_low_ram_end() {
        const {
            assert!(CMDLINE_ADDR + (CMDLINE_MAX as u64) < PML4_ADDR);
            assert!(PD_ADDR + 4 * 4096 <= LOW_RAM_END);
            assert!(GDT_ADDR + 24 <= BOOT_STACK - 0x1000);
        }
    }
}
