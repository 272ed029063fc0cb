//! PVH `hvm_start_info`: the boot loader's hand-over (memory map, command line).
//!
//! The memory map arrives unsorted (and, on microvm, with a trailing all-zero entry);
//! [`BootInfo::usable`] sorts it, keeps only type-1 RAM and merges neighbours. Nothing
//! here trusts the order the loader used. The structures are the boot ABI's
//! (`kmbench-bootabi`), the same types the embedded VMM writes.

use kmbench_bootabi::{
    layout::CMDLINE_BUF, HvmMemmapEntry, HvmModlistEntry, HvmStartInfo, E820_RAM, HVM_START_MAGIC,
};

pub const MAX_REGIONS: usize = 64;

/// A physical range [start, end).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
}

impl Region {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
}

/// What the kernel keeps from the start info (copied out: the loader's memory is
/// reclaimed as RAM later).
pub struct BootInfo {
    pub start_info_paddr: u64,
    regions: [Region; MAX_REGIONS],
    nr_regions: usize,
    cmdline: [u8; CMDLINE_BUF],
    cmdline_len: usize,
    /// Boot module 0 (physical address, size): the plan blob when the command line says
    /// `kmbench=module` (QEMU's `-initrd`, the embedded VMM's plan area).
    module0: Option<(u64, u64)>,
}

#[derive(Debug)]
pub enum PvhError {
    BadMagic(u32),
    NoMemory,
}

impl BootInfo {
    /// Read the start info at `paddr` (identity-mapped by the boot page tables).
    pub fn parse(paddr: u64) -> Result<BootInfo, PvhError> {
        // SAFETY: the PVH loader passes the physical address of a valid hvm_start_info,
        // which lies in the low 4 GiB identity-mapped by the boot page tables.
        let info = unsafe { &*(paddr as *const HvmStartInfo) };
        if info.magic != HVM_START_MAGIC {
            return Err(PvhError::BadMagic(info.magic));
        }
        let mut boot = BootInfo {
            start_info_paddr: paddr,
            regions: [Region::default(); MAX_REGIONS],
            nr_regions: 0,
            cmdline: [0; CMDLINE_BUF],
            cmdline_len: 0,
            module0: None,
        };
        if info.nr_modules > 0 && info.modlist_paddr != 0 {
            // SAFETY: modlist_paddr points at nr_modules entries in identity-mapped memory.
            let m = unsafe { *(info.modlist_paddr as *const HvmModlistEntry) };
            boot.module0 = Some((m.paddr, m.size));
        }
        if info.cmdline_paddr != 0 {
            let p = info.cmdline_paddr as *const u8;
            let mut n = 0;
            // SAFETY: the command line is a NUL-terminated string the loader placed in
            // identity-mapped low memory; we stop at NUL or at our buffer's size.
            unsafe {
                while n < boot.cmdline.len() && *p.add(n) != 0 {
                    boot.cmdline[n] = *p.add(n);
                    n += 1;
                }
            }
            boot.cmdline_len = n;
        }
        let entries = info.memmap_entries as usize;
        for i in 0..entries {
            // SAFETY: memmap_paddr points at memmap_entries entries in identity-mapped memory.
            let e = unsafe { *(info.memmap_paddr as *const HvmMemmapEntry).add(i) };
            if e.kind == E820_RAM && e.size != 0 && boot.nr_regions < MAX_REGIONS {
                boot.regions[boot.nr_regions] = Region {
                    start: e.addr,
                    end: e.addr + e.size,
                };
                boot.nr_regions += 1;
            }
        }
        if boot.nr_regions == 0 {
            return Err(PvhError::NoMemory);
        }
        boot.sort_and_merge();
        Ok(boot)
    }

    fn sort_and_merge(&mut self) {
        let regions = &mut self.regions[..self.nr_regions];
        regions.sort_unstable_by_key(|r| r.start);
        let mut out = 0;
        for i in 0..regions.len() {
            let r = regions[i];
            if out > 0 && r.start <= regions[out - 1].end {
                regions[out - 1].end = regions[out - 1].end.max(r.end);
            } else {
                regions[out] = r;
                out += 1;
            }
        }
        self.nr_regions = out;
    }

    /// Usable RAM, sorted, merged.
    pub fn usable(&self) -> &[Region] {
        &self.regions[..self.nr_regions]
    }

    /// Copy boot module 0 out of loader memory (at most `max` bytes; `Err(size)` when it
    /// is larger).
    pub fn module0(&self, max: usize) -> Option<Result<alloc::vec::Vec<u8>, u64>> {
        let (paddr, size) = self.module0?;
        if size > max as u64 {
            return Some(Err(size));
        }
        // SAFETY: the loader placed a module of `size` bytes at `paddr` in the low 4 GiB,
        // identity-mapped by the boot page tables, and nothing has reused it yet (the plan
        // is read before memory management takes over RAM).
        let bytes = unsafe { core::slice::from_raw_parts(paddr as *const u8, size as usize) };
        Some(Ok(bytes.to_vec()))
    }

    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    pub fn total_ram(&self) -> u64 {
        self.usable().iter().map(|r| r.len()).sum()
    }
}
