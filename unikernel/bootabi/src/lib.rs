//! The boot ABI between kmbench's loaders (QEMU's PVH loader, the embedded VMM) and its
//! guest kernel, defined once: both sides use these types and constants, so nothing is
//! written at hand-counted byte offsets.
//!
//! * [`HvmStartInfo`], [`HvmMemmapEntry`], [`HvmModlistEntry`]: the PVH hand-over
//!   structures (Xen's `arch-x86/hvm/start_info.h`, version 1), `#[repr(C)]` with no
//!   padding, so [`AsBytes::as_bytes`] is their exact guest image.
//! * [`layout`]: where the embedded VMM puts the boot-time structures in guest-physical
//!   memory (all below 1 MiB, clear of the kernel image at [`layout::KERNEL_LOAD`]), and
//!   the plan area a plan blob larger than the command line can be delivered through.
//! * [`gdt`]: the boot GDT the VMM enters the kernel with (selectors and descriptors).
//!
//! `no_std`, no dependencies: the kernel builds it for `x86_64-unknown-none`, the harness
//! for the host, and its layout checks run as host unit tests.
#![no_std]

/// `hvm_start_info.magic` ("xEn3" with the high bit set).
pub const HVM_START_MAGIC: u32 = 0x336e_c578;
/// The `hvm_start_info.version` this ABI describes (it has `memmap_*`).
pub const HVM_START_VERSION: u32 = 1;
/// `hvm_memmap_table_entry.type` of usable RAM (the E820 type).
pub const E820_RAM: u32 = 1;
/// E820 reserved.
pub const E820_RESERVED: u32 = 2;

/// `struct hvm_start_info` (PVH), version 1: what `%ebx` (32-bit PVH entry) or `%rdi`
/// (the embedded VMM's 64-bit entry) points at.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmStartInfo {
    /// [`HVM_START_MAGIC`].
    pub magic: u32,
    pub version: u32,
    pub flags: u32,
    /// Number of [`HvmModlistEntry`] at `modlist_paddr`.
    pub nr_modules: u32,
    pub modlist_paddr: u64,
    /// Physical address of the NUL-terminated command line (0: none).
    pub cmdline_paddr: u64,
    pub rsdp_paddr: u64,
    /// Physical address of `memmap_entries` [`HvmMemmapEntry`] (version ≥ 1).
    pub memmap_paddr: u64,
    pub memmap_entries: u32,
    pub reserved: u32,
}

/// `struct hvm_memmap_table_entry`: one physical range. Loaders may list them unsorted and
/// end the table with an all-zero entry (QEMU microvm): readers sort and filter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmMemmapEntry {
    pub addr: u64,
    pub size: u64,
    /// [`E820_RAM`], [`E820_RESERVED`], …
    pub kind: u32,
    pub reserved: u32,
}

/// `struct hvm_modlist_entry`: one boot module (QEMU passes `-initrd` as module 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmModlistEntry {
    pub paddr: u64,
    pub size: u64,
    pub cmdline_paddr: u64,
    pub reserved: u64,
}

/// Plain-old-data boot structures: their in-memory bytes are their guest image.
///
/// # Safety
/// Implementors are `#[repr(C)]`, contain only integers and have no padding (checked
/// below at compile time for each implementor), so every byte is initialised.
pub unsafe trait AsBytes: Sized {
    /// The structure's bytes, as the guest reads them (x86 is little-endian).
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: `Self: AsBytes` has no padding and only integer fields (trait
        // contract), so all `size_of::<Self>()` bytes behind `self` are initialised.
        unsafe {
            core::slice::from_raw_parts(
                self as *const Self as *const u8,
                core::mem::size_of::<Self>(),
            )
        }
    }
}

// SAFETY: repr(C), integer fields only, no padding (sizes asserted below).
unsafe impl AsBytes for HvmStartInfo {}
// SAFETY: as above.
unsafe impl AsBytes for HvmMemmapEntry {}
// SAFETY: as above.
unsafe impl AsBytes for HvmModlistEntry {}

// The sizes of Xen's C definitions; equal to the sum of the fields, so no padding.
const _: () = assert!(core::mem::size_of::<HvmStartInfo>() == 56);
const _: () = assert!(core::mem::size_of::<HvmMemmapEntry>() == 24);
const _: () = assert!(core::mem::size_of::<HvmModlistEntry>() == 32);

impl HvmStartInfo {
    /// A version-1 start info pointing at a command line and a memory map.
    pub const fn new(cmdline_paddr: u64, memmap_paddr: u64, memmap_entries: u32) -> Self {
        HvmStartInfo {
            magic: HVM_START_MAGIC,
            version: HVM_START_VERSION,
            flags: 0,
            nr_modules: 0,
            modlist_paddr: 0,
            cmdline_paddr,
            rsdp_paddr: 0,
            memmap_paddr,
            memmap_entries,
            reserved: 0,
        }
    }
}

/// Guest-physical layout of the embedded VMM's boot-time structures.
///
/// ```text
/// 0x0000_0500  GDT_ADDR        boot GDT (null, code 0x08, data 0x10, TSS 0x18)
/// 0x0000_5000  BOOT_STACK      %rsp at entry (grows down; unused by the kernel)
/// 0x0000_6000  START_INFO_ADDR hvm_start_info
/// 0x0000_6100  MODLIST_ADDR    hvm_modlist_entry[MODLIST_MAX]
/// 0x0000_7000  MEMMAP_ADDR     hvm_memmap_table_entry[MEMMAP_MAX]
/// 0x0000_8000  CMDLINE_ADDR    command line, NUL-terminated (≤ CMDLINE_MAX bytes)
/// 0x0000_9000  PML4_ADDR       boot page tables: PML4, PDPT, 4 PDs = 4 GiB by 2 MiB
/// 0x0001_0000  PLAN_ADDR       plan area: a blob of up to PLAN_MAX bytes
/// 0x0009_fc00  LOW_RAM_END     end of conventional RAM (EBDA, VGA, BIOS above)
/// 0x0010_0000  KERNEL_LOAD     the kernel image (HIGH_RAM_START)
/// ```
/// Everything below [`LOW_RAM_END`] is reported as RAM: the kernel copies what it needs
/// (start info, command line, plan) before it reuses low memory.
pub mod layout {
    pub const GDT_ADDR: u64 = 0x500;
    /// Stack pointer at entry (the kernel loads its own stack before touching it).
    pub const BOOT_STACK: u64 = 0x5000;
    pub const START_INFO_ADDR: u64 = 0x6000;
    /// Boot-module list (`hvm_start_info.modlist_paddr`), after the start info.
    pub const MODLIST_ADDR: u64 = 0x6100;
    pub const MODLIST_MAX: usize = 8;
    pub const MEMMAP_ADDR: u64 = 0x7000;
    /// Memory-map entries that fit between [`MEMMAP_ADDR`] and [`CMDLINE_ADDR`].
    pub const MEMMAP_MAX: usize = 0x1000 / 24;
    pub const CMDLINE_ADDR: u64 = 0x8000;
    /// The guest copies at most 4096 bytes of command line (NUL excluded here).
    pub const CMDLINE_MAX: usize = 4095;
    /// The guest's command-line buffer (the line plus its NUL).
    pub const CMDLINE_BUF: usize = CMDLINE_MAX + 1;
    pub const PML4_ADDR: u64 = 0x9000;
    pub const PDPT_ADDR: u64 = 0xa000;
    /// Four page directories, 0xb000..0xf000: 4 × 512 × 2 MiB = 4 GiB identity map.
    pub const PD_ADDR: u64 = 0xb000;
    pub const PD_COUNT: u64 = 4;
    /// Bytes the boot page tables identity-map.
    pub const IDENTITY_MAPPED: u64 = PD_COUNT * 512 * (2 << 20);
    /// The plan area: a loader may place a plan blob (e.g. JSON) here, up to [`PLAN_MAX`]
    /// bytes, and pass it as boot module 0 (`paddr = PLAN_ADDR`, `size` = its length).
    pub const PLAN_ADDR: u64 = 0x1_0000;
    /// 512 KiB: room for plans far beyond the command line's 4 KiB.
    pub const PLAN_MAX: usize = 0x8_0000;
    /// End of conventional low RAM (like microvm / a PC: the EBDA starts here).
    pub const LOW_RAM_END: u64 = 0x9_fc00;
    /// Start of RAM above the legacy hole; the kernel image is linked here.
    pub const HIGH_RAM_START: u64 = 0x10_0000;
    pub const KERNEL_LOAD: u64 = HIGH_RAM_START;

    // The structures do not overlap one another, and all sit in low RAM.
    const _: () = {
        assert!(GDT_ADDR + 8 * super::gdt::ENTRIES as u64 <= BOOT_STACK - 0x1000);
        assert!(START_INFO_ADDR + 56 <= MODLIST_ADDR);
        assert!(MODLIST_ADDR + 32 * MODLIST_MAX as u64 <= MEMMAP_ADDR);
        assert!(MEMMAP_ADDR + 24 * MEMMAP_MAX as u64 <= CMDLINE_ADDR);
        assert!(CMDLINE_ADDR + CMDLINE_BUF as u64 <= PML4_ADDR);
        assert!(PML4_ADDR + 0x1000 <= PDPT_ADDR);
        assert!(PDPT_ADDR + 0x1000 <= PD_ADDR);
        assert!(PD_ADDR + PD_COUNT * 0x1000 <= PLAN_ADDR);
        assert!(PLAN_ADDR + PLAN_MAX as u64 <= LOW_RAM_END);
        assert!(LOW_RAM_END <= HIGH_RAM_START);
    };
}

/// The boot GDT the embedded VMM enters the kernel with (the same flat descriptors as
/// Firecracker's boot GDT and the kernel's own early GDT in `boot.rs`).
pub mod gdt {
    /// Null, 64-bit code, data, TSS.
    pub const ENTRIES: usize = 4;
    pub const CODE64_SELECTOR: u16 = 0x08;
    pub const DATA_SELECTOR: u16 = 0x10;
    pub const TSS_SELECTOR: u16 = 0x18;
    /// Ring-0 64-bit code: base 0, limit 0xfffff pages, P=1 DPL=0 S=1, type 0xb
    /// (execute/read, accessed), L=1 D=0 G=1.
    pub const CODE64: u64 = 0x00af_9b00_0000_ffff;
    /// Ring-0 data: base 0, limit 4 GiB, P=1 DPL=0 S=1, type 0x3 (read/write, accessed),
    /// D/B=1 G=1.
    pub const DATA: u64 = 0x00cf_9300_0000_ffff;
    /// A busy 64-bit TSS placeholder (type 0xb, S=0), as Firecracker's: VMX requires a
    /// usable TR at entry; the kernel loads its own TSS.
    pub const TSS: u64 = 0x008f_8b00_0000_ffff;
    pub const TABLE: [u64; ENTRIES] = [0, CODE64, DATA, TSS];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_info_image() {
        let s = HvmStartInfo::new(layout::CMDLINE_ADDR, layout::MEMMAP_ADDR, 2);
        let b = s.as_bytes();
        assert_eq!(b.len(), 56);
        assert_eq!(
            u32::from_le_bytes(b[0..4].try_into().unwrap()),
            HVM_START_MAGIC
        );
        assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 1);
        assert_eq!(
            u64::from_le_bytes(b[24..32].try_into().unwrap()),
            layout::CMDLINE_ADDR
        );
        assert_eq!(
            u64::from_le_bytes(b[40..48].try_into().unwrap()),
            layout::MEMMAP_ADDR
        );
        assert_eq!(u32::from_le_bytes(b[48..52].try_into().unwrap()), 2);
    }

    #[test]
    fn memmap_entry_image() {
        let e = HvmMemmapEntry {
            addr: 0x10_0000,
            size: 0x20_0000,
            kind: E820_RAM,
            reserved: 0,
        };
        let b = e.as_bytes();
        assert_eq!(b.len(), 24);
        assert_eq!(u64::from_le_bytes(b[0..8].try_into().unwrap()), 0x10_0000);
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 0x20_0000);
        assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 1);
    }

    #[test]
    fn plan_area_holds_64k_and_more() {
        const { assert!(layout::PLAN_MAX >= 64 * 1024) };
    }
}
