//! Guest RAM: an anonymous host mapping (4 KiB, THP or hugetlbfs pages, as the run's
//! `host_backing` asks), wrapped as `vm-memory` guest memory and registered with KVM as
//! memory slot 0 at guest-physical 0.
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

use super::error::{Result, VmmError};
use crate::config::HostBacking;

const HUGE_2M: usize = 2 << 20;

/// An anonymous mapping backing guest RAM; unmapped on drop.
pub struct HostMem {
    /// Start of the whole mapping (for munmap).
    map: *mut u8,
    map_len: usize,
    /// The (possibly 2 MiB aligned) part given to the guest.
    addr: *mut u8,
    len: usize,
    flags: i32,
    /// How it was mapped, for `env.extra.vmm_memory`.
    pub how: &'static str,
}

impl HostMem {
    /// Bytes given to the guest.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for HostMem {
    fn drop(&mut self) {
        // SAFETY: `map`/`map_len` is a mapping we created and own.
        unsafe {
            libc::munmap(self.map as *mut libc::c_void, self.map_len);
        }
    }
}

/// Map `bytes` of guest RAM with the host page size `backing` asks for.
pub fn map_guest_ram(bytes: usize, backing: HostBacking) -> Result<HostMem> {
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let base_flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    if backing == HostBacking::Hugetlbfs {
        let len = bytes.div_ceil(HUGE_2M) * HUGE_2M;
        // MAP_HUGE_2MB = 21 << MAP_HUGE_SHIFT
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | (21 << 26);
        // SAFETY: a fresh anonymous mapping; the result is checked.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, -1, 0) };
        if p == libc::MAP_FAILED {
            return Err(VmmError::Mmap {
                mib: len >> 20,
                how: " MAP_HUGETLB|MAP_HUGE_2MB",
                source: std::io::Error::last_os_error(),
            });
        }
        return Ok(HostMem {
            map: p as *mut u8,
            map_len: len,
            addr: p as *mut u8,
            len,
            flags,
            how: "anonymous mmap, MAP_HUGETLB|MAP_HUGE_2MB (hugetlbfs 2 MiB pages)",
        });
    }
    // Over-allocate by 2 MiB so the guest's RAM starts 2 MiB aligned: guest 2 MiB pages
    // can then sit on host huge pages.
    let map_len = bytes + HUGE_2M;
    // SAFETY: a fresh anonymous mapping; the result is checked.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), map_len, prot, base_flags, -1, 0) };
    if p == libc::MAP_FAILED {
        return Err(VmmError::Mmap {
            mib: bytes >> 20,
            how: "",
            source: std::io::Error::last_os_error(),
        });
    }
    let map = p as *mut u8;
    let aligned = ((map as usize).div_ceil(HUGE_2M) * HUGE_2M) as *mut u8;
    let (advice, how) = match backing {
        HostBacking::Small => (
            libc::MADV_NOHUGEPAGE,
            "anonymous mmap, MADV_NOHUGEPAGE (4 KiB host pages)",
        ),
        // QEMU's default RAM is THP-eligible too.
        HostBacking::Default | HostBacking::Thp | HostBacking::Hugetlbfs => (
            libc::MADV_HUGEPAGE,
            "anonymous mmap, 2 MiB aligned, MADV_HUGEPAGE (THP)",
        ),
    };
    // SAFETY: advising a range inside our own mapping.
    unsafe {
        libc::madvise(aligned as *mut libc::c_void, bytes, advice);
    }
    Ok(HostMem {
        map,
        map_len,
        addr: aligned,
        len: bytes,
        flags: base_flags,
        how,
    })
}

/// `host` as `vm-memory` guest memory at guest-physical 0, registered with KVM as slot 0.
///
/// # Safety
/// `host` must outlive the returned memory and the VM (the caller keeps all three in one
/// struct and drops the VM and the memory first): neither owns the mapping.
pub unsafe fn register(vm: &VmFd, host: &HostMem) -> Result<GuestMemoryMmap> {
    // SAFETY: `host` is a live private anonymous mapping of `host.len` bytes that
    // outlives the MmapRegion (the caller's contract); the region does not own it.
    let region = unsafe {
        MmapRegion::build_raw(
            host.addr,
            host.len,
            libc::PROT_READ | libc::PROT_WRITE,
            host.flags,
        )
    }
    .map_err(|e| VmmError::GuestMemory {
        what: "region",
        detail: e.to_string(),
    })?;
    let region = GuestRegionMmap::new(region, GuestAddress(0)).ok_or(VmmError::GuestMemory {
        what: "region",
        detail: "overflows the guest address space".into(),
    })?;
    let mem = GuestMemoryMmap::from_regions(vec![region]).map_err(|e| VmmError::GuestMemory {
        what: "map",
        detail: e.to_string(),
    })?;
    // SAFETY: the userspace range is our mapping, alive as long as the VM (the caller's
    // contract).
    unsafe {
        vm.set_user_memory_region(kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: host.len as u64,
            userspace_addr: host.addr as u64,
        })
    }
    .map_err(VmmError::kvm("KVM_SET_USER_MEMORY_REGION"))?;
    Ok(mem)
}
