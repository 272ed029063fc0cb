//! The vCPU run loop: `KVM_RUN` until the guest writes the exit port, halts, faults the
//! VM, or the watchdog stops it. Each exit is first copied out of `kvm_run` ([`Exit`]) so
//! the coalesced-PIO ring (which needs the vCPU again) can be drained first: ring entries
//! are older than the exit that returned.
use kvm_ioctls::VcpuExit;

use super::aps::{ApAction, ApLink};
use super::devices::{bump, Devices};
use super::vcpu::Vcpu;
use super::watchdog::{StopReason, Watchdog};
use crate::backend::{BootEnd, Event};

fn unexpected(message: impl Into<String>) -> BootEnd {
    BootEnd::Unexpected {
        code: None,
        signal: None,
        message: message.into(),
    }
}

/// One VM exit, copied out of `kvm_run`.
enum Exit {
    Continue,
    /// Nothing to do but count it (`vmm_exits`).
    Counted(&'static str),
    Out(u16, Vec<u8>),
    /// KVM_EXIT_INTERNAL_ERROR: the suberror is read from `kvm_run` after the ring drains.
    InternalError,
    End(&'static str, BootEnd),
}

/// Run one exit of `vcpu`, serving port reads and unbacked MMIO on the spot.
fn run_once(vcpu: &mut Vcpu, dev: &mut Devices) -> Exit {
    match vcpu.fd.run() {
        Ok(VcpuExit::IoOut(port, data)) => Exit::Out(port, data.to_vec()),
        Ok(VcpuExit::IoIn(port, data)) => {
            dev.input(port, data);
            Exit::Continue
        }
        Ok(VcpuExit::MmioRead(addr, data)) => {
            dev.unhandled("mmio_read", format!("mmio read {addr:#x}"), || {
                format!("guest read unbacked physical address {addr:#x}; returning 0xff")
            });
            data.fill(0xff);
            Exit::Continue
        }
        Ok(VcpuExit::MmioWrite(addr, _)) => {
            dev.unhandled("mmio_write", format!("mmio write {addr:#x}"), || {
                format!("guest wrote unbacked physical address {addr:#x}; ignored")
            });
            Exit::Continue
        }
        Ok(VcpuExit::Hlt) => Exit::End(
            "hlt",
            unexpected("guest halted (HLT) without writing the exit port"),
        ),
        Ok(VcpuExit::Shutdown) => {
            Exit::End("shutdown", unexpected("guest triple fault / shutdown"))
        }
        Ok(VcpuExit::FailEntry(reason, cpu)) => Exit::End(
            "fail_entry",
            unexpected(format!(
                "KVM entry failed (hardware reason {reason:#x}, cpu {cpu})"
            )),
        ),
        Ok(VcpuExit::InternalError) => Exit::InternalError,
        Ok(VcpuExit::Intr) => Exit::Counted("intr"),
        Ok(VcpuExit::SystemEvent(kind, _)) => Exit::End(
            "system_event",
            unexpected(format!("guest system event {kind} (reset/shutdown)")),
        ),
        Ok(other) => Exit::End(
            "other",
            unexpected(format!("unexpected VM exit: {other:?}")),
        ),
        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Exit::Counted("signal"),
        Err(e) => Exit::End("error", unexpected(format!("KVM_RUN failed: {e}"))),
    }
}

/// Serve the APs' forwarded I/O (after draining the ring, which holds older writes);
/// `Some(end)` when an AP ended the guest.
fn serve_aps(
    aps: &ApLink,
    vcpu: &mut Vcpu,
    coalesced: bool,
    dev: &mut Devices,
    on_event: &mut dyn FnMut(Event),
) -> Option<BootEnd> {
    while let Ok(req) = aps.requests.try_recv() {
        if coalesced {
            dev.drain_ring(&mut vcpu.fd, on_event);
        }
        match req.action {
            ApAction::Out(port, data) => {
                let end = dev.out(port, &data, on_event);
                let _ = req.reply.send(Vec::new());
                if end.is_some() {
                    return end;
                }
            }
            ApAction::In(port, len) => {
                let mut buf = vec![0u8; len];
                dev.input(port, &mut buf);
                let _ = req.reply.send(buf);
            }
            ApAction::Died(message) => {
                bump(&mut dev.stats.exits, "ap_died");
                return Some(unexpected(format!("CPU {}: {message}", req.cpu)));
            }
        }
    }
    None
}

/// Run `vcpu` until the guest ends; `coalesced` = drain the coalesced-PIO ring after
/// every exit; `aps` = the application processors' forwarded I/O, served between exits.
pub fn run(
    vcpu: &mut Vcpu,
    coalesced: bool,
    dev: &mut Devices,
    watchdog: &Watchdog,
    aps: Option<&ApLink>,
    on_event: &mut dyn FnMut(Event),
) -> BootEnd {
    let end = loop {
        if let Some(aps) = aps {
            if let Some(end) = serve_aps(aps, vcpu, coalesced, dev, on_event) {
                break end;
            }
        }
        match watchdog.reason() {
            Some(StopReason::Timeout) => break BootEnd::Timeout,
            Some(StopReason::Interrupted) => break BootEnd::Interrupted,
            None => {}
        }
        let exit = run_once(vcpu, dev);
        if let Some(c) = crate::topology::current_cpu() {
            dev.stats.boot_vcpu_host_cpus.insert(c);
        }
        if coalesced {
            dev.drain_ring(&mut vcpu.fd, on_event);
        }
        match exit {
            Exit::Continue => {}
            Exit::Counted(what) => bump(&mut dev.stats.exits, what),
            Exit::Out(port, data) => {
                if let Some(end) = dev.out(port, &data, on_event) {
                    break end;
                }
            }
            Exit::InternalError => {
                bump(&mut dev.stats.exits, "internal_error");
                // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the
                // active union member.
                let sub = unsafe { vcpu.fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
                break unexpected(format!("KVM internal error (suberror {sub})"));
            }
            Exit::End(what, end) => {
                bump(&mut dev.stats.exits, what);
                break end;
            }
        }
    };
    if coalesced {
        dev.drain_ring(&mut vcpu.fd, on_event);
    }
    end
}
