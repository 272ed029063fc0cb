//! The boot-time structures the VMM writes into guest memory before the first vCPU runs,
//! all as the boot ABI's types at the boot ABI's addresses ([`super::layout`]): the boot
//! GDT, the identity-mapping page tables (low 4 GiB by 2 MiB pages), the PVH memory map,
//! the command line and the `hvm_start_info` pointing at them.
use kmbench_bootabi::{gdt, AsBytes, HvmModlistEntry, HvmStartInfo};
use kmbench_protocol::CMDLINE_PLAN_KEY;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::error::{Result, VmmError};
use super::layout::{
    memmap, CMDLINE_ADDR, CMDLINE_MAX, GDT_ADDR, MEMMAP_ADDR, MEMMAP_MAX, MODLIST_ADDR, PDPT_ADDR,
    PD_ADDR, PD_COUNT, PLAN_ADDR, PLAN_MAX, PML4_ADDR, START_INFO_ADDR,
};

/// Page-table entry bits of the boot tables.
pub const PTE_PRESENT: u64 = 1 << 0;
pub const PTE_WRITABLE: u64 = 1 << 1;
/// PS: a 2 MiB leaf in a page directory.
pub const PTE_HUGE: u64 = 1 << 7;

/// Tell the guest the TSC frequency KVM uses (the plan's `tsc_khz`), unless the plan
/// already names one: CPUID may not carry it (kvm_pvm shows the guest the outer CPUID),
/// and without it the guest spends ~50 ms calibrating against the PIT.
pub fn cmdline_with_tsc_khz(cmdline: &str, tsc_khz: Option<u32>) -> String {
    use kmbench_protocol::{GuestPlan, CMDLINE_PLAN_KEY};
    let (Some(khz), Some(json)) = (tsc_khz, cmdline.strip_prefix(CMDLINE_PLAN_KEY)) else {
        return cmdline.to_string();
    };
    match serde_json::from_str::<GuestPlan>(json) {
        Ok(mut plan) => {
            plan.tsc_khz.get_or_insert(khz as u64);
            format!(
                "{CMDLINE_PLAN_KEY}{}",
                serde_json::to_string(&plan).expect("plans serialise")
            )
        }
        Err(_) => cmdline.to_string(),
    }
}

/// The page directories' entries: 2048 × 2 MiB leaves identity-mapping the low 4 GiB.
pub fn identity_pd_entries() -> impl Iterator<Item = u64> {
    (0..PD_COUNT * 512).map(|j| (j << 21) | PTE_PRESENT | PTE_WRITABLE | PTE_HUGE)
}

/// Write every boot structure for a guest of `mem_bytes` with command line `cmdline`.
///
/// A `kmbench=<plan>` command line is delivered as boot module 0 in the plan area
/// (`PLAN_ADDR`, up to `PLAN_MAX` bytes) and the command line becomes `kmbench=module`,
/// so a plan of any size up to the plan area reaches the guest.
pub fn write(mem: &GuestMemoryMmap, mem_bytes: u64, cmdline: &str) -> Result<()> {
    let mut modules = 0;
    let module_line;
    let cmdline = match cmdline.strip_prefix(CMDLINE_PLAN_KEY) {
        Some(plan) => {
            if plan.len() > PLAN_MAX {
                return Err(VmmError::PlanTooLarge {
                    len: plan.len(),
                    max: PLAN_MAX,
                });
            }
            mem.write_slice(plan.as_bytes(), GuestAddress(PLAN_ADDR))
                .map_err(VmmError::write("plan"))?;
            let entry = HvmModlistEntry {
                paddr: PLAN_ADDR,
                size: plan.len() as u64,
                ..Default::default()
            };
            mem.write_slice(entry.as_bytes(), GuestAddress(MODLIST_ADDR))
                .map_err(VmmError::write("module list"))?;
            modules = 1;
            module_line = kmbench_protocol::module_cmdline(plan);
            module_line.as_str()
        }
        None => cmdline,
    };
    if cmdline.len() > CMDLINE_MAX {
        return Err(VmmError::CmdlineTooLong {
            len: cmdline.len(),
            max: CMDLINE_MAX,
        });
    }
    // GDT: null, 64-bit code (0x08), data (0x10), TSS (0x18); accessed bits preset.
    for (i, d) in gdt::TABLE.iter().enumerate() {
        mem.write_obj(*d, GuestAddress(GDT_ADDR + 8 * i as u64))
            .map_err(VmmError::write("GDT"))?;
    }
    // Identity map of the low 4 GiB: PML4[0] → PDPT[0..4] → 4 PDs of 2 MiB leaves.
    mem.write_obj(
        PDPT_ADDR | PTE_PRESENT | PTE_WRITABLE,
        GuestAddress(PML4_ADDR),
    )
    .map_err(VmmError::write("PML4"))?;
    for i in 0..PD_COUNT {
        mem.write_obj(
            (PD_ADDR + i * 4096) | PTE_PRESENT | PTE_WRITABLE,
            GuestAddress(PDPT_ADDR + 8 * i),
        )
        .map_err(VmmError::write("PDPT"))?;
    }
    let pd: Vec<u8> = identity_pd_entries().flat_map(u64::to_le_bytes).collect();
    mem.write_slice(&pd, GuestAddress(PD_ADDR))
        .map_err(VmmError::write("page directories"))?;
    // Memory map.
    let map = memmap(mem_bytes);
    if map.len() > MEMMAP_MAX {
        return Err(VmmError::MemmapTooLong {
            entries: map.len(),
            max: MEMMAP_MAX,
        });
    }
    let mm: Vec<u8> = map.iter().flat_map(|e| e.as_bytes().to_vec()).collect();
    mem.write_slice(&mm, GuestAddress(MEMMAP_ADDR))
        .map_err(VmmError::write("memory map"))?;
    // Command line, NUL-terminated.
    let mut c = cmdline.as_bytes().to_vec();
    c.push(0);
    mem.write_slice(&c, GuestAddress(CMDLINE_ADDR))
        .map_err(VmmError::write("command line"))?;
    let mut info = HvmStartInfo::new(CMDLINE_ADDR, MEMMAP_ADDR, map.len() as u32);
    if modules > 0 {
        info.nr_modules = modules;
        info.modlist_paddr = MODLIST_ADDR;
    }
    mem.write_slice(info.as_bytes(), GuestAddress(START_INFO_ADDR))
        .map_err(VmmError::write("start info"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmbench_bootabi::{HvmMemmapEntry, HVM_START_MAGIC};
    use vm_memory::GuestMemoryMmap;

    fn guest(bytes: usize) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), bytes)]).unwrap()
    }

    #[test]
    fn structures_land_where_the_abi_says() {
        let mem = guest(16 << 20);
        write(&mem, 16 << 20, "kmbench={}").unwrap();
        let read = |addr: u64, len: usize| {
            let mut b = vec![0u8; len];
            mem.read_slice(&mut b, GuestAddress(addr)).unwrap();
            b
        };
        let mut info = HvmStartInfo::new(CMDLINE_ADDR, MEMMAP_ADDR, 2);
        // The plan went to the plan area as boot module 0.
        info.nr_modules = 1;
        info.modlist_paddr = MODLIST_ADDR;
        assert_eq!(info.magic, HVM_START_MAGIC);
        let module = HvmModlistEntry {
            paddr: PLAN_ADDR,
            size: 2,
            ..Default::default()
        };
        assert_eq!(read(MODLIST_ADDR, 32), module.as_bytes());
        assert_eq!(read(PLAN_ADDR, 2), b"{}");
        assert_eq!(read(START_INFO_ADDR, 56), info.as_bytes());
        let high = HvmMemmapEntry {
            addr: 0x10_0000,
            size: (16 << 20) - 0x10_0000,
            kind: 1,
            reserved: 0,
        };
        assert_eq!(read(MEMMAP_ADDR + 24, 24), high.as_bytes());
        let mut c = [0u8; 21];
        mem.read_slice(&mut c, GuestAddress(CMDLINE_ADDR)).unwrap();
        assert_eq!(&c, b"kmbench=module cpl=0\0");
        let code: u64 = mem.read_obj(GuestAddress(GDT_ADDR + 8)).unwrap();
        assert_eq!(code, gdt::CODE64);
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_ADDR)).unwrap();
        assert_eq!(pml4, PDPT_ADDR | 3);
        let pdpt3: u64 = mem.read_obj(GuestAddress(PDPT_ADDR + 24)).unwrap();
        assert_eq!(pdpt3, (PD_ADDR + 3 * 4096) | 3);
        let last: u64 = mem.read_obj(GuestAddress(PD_ADDR + 2047 * 8)).unwrap();
        assert_eq!(
            last,
            (2047 << 21) | 0x83,
            "4 GiB - 2 MiB, present|writable|PS"
        );
    }

    #[test]
    fn long_command_line_is_refused() {
        let mem = guest(16 << 20);
        let long = "x".repeat(CMDLINE_MAX + 1);
        assert!(matches!(
            write(&mem, 16 << 20, &long),
            Err(VmmError::CmdlineTooLong { .. })
        ));
    }
}
