//! Why the embedded VMM could not start a guest. Each variant names what failed and with
//! which value; the run records it as a launch failure (`BootEnd::LaunchFailed`).
use std::path::PathBuf;

use crate::error::HarnessError;

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("the embedded VMM runs on KVM only; use --backend qemu for TCG")]
    NotKvm,

    #[error("kernel command line is {len} bytes; the guest reads at most {max}")]
    CmdlineTooLong { len: usize, max: usize },

    #[error("the run plan is {len} bytes; the plan area holds at most {max}")]
    PlanTooLarge { len: usize, max: usize },

    #[error("{mib} MiB of guest memory overflows a byte count")]
    MemoryOverflow { mib: u64 },

    #[error("{mib} MiB of guest memory is too little")]
    MemoryTooSmall { mib: u64 },

    /// The host's huge-page pool cannot back the guest (hugetlbfs).
    #[error(transparent)]
    HugePages(HarnessError),

    /// A KVM ioctl failed.
    #[error("{ioctl}: {source}")]
    Kvm {
        ioctl: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },

    #[error("mmap of {mib} MiB{how} failed: {source}")]
    Mmap {
        mib: usize,
        /// The special flags, e.g. " MAP_HUGETLB|MAP_HUGE_2MB" (empty for plain anonymous).
        how: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("guest memory {what}: {detail}")]
    GuestMemory { what: &'static str, detail: String },

    #[error("writing {what}: {source}")]
    Write {
        what: &'static str,
        #[source]
        source: vm_memory::GuestMemoryError,
    },

    #[error("opening {}: {source}", .path.display())]
    KernelOpen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("loading ELF {}: {source}", .path.display())]
    KernelLoad {
        path: PathBuf,
        #[source]
        source: linux_loader::loader::Error,
    },

    #[error("kernel image ends at {end:#x}, beyond {mib} MiB of guest memory")]
    KernelTooBig { end: u64, mib: u64 },

    #[error("CPUID table full ({entries} entries)")]
    CpuidFull { entries: usize },

    #[error("the boot memory map has {entries} entries; at most {max} fit")]
    MemmapTooLong { entries: usize, max: usize },
}

impl VmmError {
    /// A failed KVM ioctl.
    pub fn kvm(ioctl: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
        move |source| VmmError::Kvm { ioctl, source }
    }

    /// A failed guest-memory write.
    pub fn write(what: &'static str) -> impl FnOnce(vm_memory::GuestMemoryError) -> VmmError {
        move |source| VmmError::Write { what, source }
    }
}

pub type Result<T, E = VmmError> = std::result::Result<T, E>;
