//! Port I/O. At CPL3 these work for the ports the TSS I/O bitmap opens (see `gdt`).
use core::arch::asm;

#[inline]
pub fn outb(port: u16, value: u8) {
    // SAFETY: port writes have no memory effects; the ports used are the kernel's own
    // devices (serial, debugcon, exit, PIT), opened to CPL3 by the TSS I/O bitmap.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

#[inline]
pub fn outl(port: u16, value: u32) {
    // SAFETY: as for `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

#[inline]
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port reads of the kernel's own devices have no memory effects.
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    v
}

/// Write a byte string with one `rep outsb`: a single (batched) exit to the VMM instead
/// of one per byte, which matters when each port access from CPL3 traps (~35 µs under kvm_pvm).
#[inline]
pub fn outsb(port: u16, bytes: &[u8]) {
    // SAFETY: reads `bytes.len()` bytes from a valid slice; writes only to an I/O port.
    unsafe {
        asm!("rep outsb", in("dx") port, inout("rsi") bytes.as_ptr() => _, inout("rcx") bytes.len() => _,
             options(nostack, preserves_flags, readonly))
    }
}
