//! Application-processor vCPUs: one host thread each, beside the boot vCPU on the
//! calling thread.
//!
//! APs are created like the boot vCPU (own CPUID table with their APIC ID, boot MSRs) but
//! get no entry registers: with the in-kernel irqchip KVM keeps them in wait-for-SIPI
//! (`KVM_MP_STATE_UNINITIALIZED`) inside `KVM_RUN` until the guest's boot CPU sends
//! INIT-SIPI-SIPI through its local APIC, exactly as on hardware and under QEMU, so the
//! kernel has one bring-up path for every backend. A parked AP (`cli; hlt`) blocks in
//! `KVM_RUN` too; it costs no host CPU.
//!
//! An AP's port I/O that exits to us (the exit port, a full coalesced ring, LSR reads) is
//! forwarded to the boot thread, which owns the [`super::devices::Devices`] and the record
//! callback: the AP thread sends an [`ApRequest`], kicks the boot thread out of `KVM_RUN`
//! (re-kicking every millisecond until answered, which closes the race with a kick landing
//! just before `KVM_RUN`), and waits for the answer before it runs on, so the guest sees
//! its own I/O in order. When the boot ends, [`ApThreads::stop`] sets the stop flag and
//! kicks every AP thread until it has left `KVM_RUN`.
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use kvm_ioctls::VcpuExit;

use super::vcpu::Vcpu;
use super::watchdog;

/// What an AP asks of the boot thread.
pub enum ApAction {
    /// OUT of `data` to `port`.
    Out(u16, Vec<u8>),
    /// IN of `len` bytes from `port`.
    In(u16, usize),
    /// The AP's vCPU ended (shutdown, internal error, failed run): the VM is dead.
    Died(String),
}

pub struct ApRequest {
    pub cpu: u32,
    pub action: ApAction,
    /// The bytes of an IN (empty for OUT); dropped for `Died`.
    pub reply: mpsc::Sender<Vec<u8>>,
}

/// The boot thread's end of the AP link.
pub struct ApLink {
    pub requests: mpsc::Receiver<ApRequest>,
}

/// The running AP threads.
pub struct ApThreads {
    stop: Arc<AtomicBool>,
    threads: Vec<(libc::pthread_t, thread::JoinHandle<BTreeSet<u32>>)>,
}

fn note_cpu(seen: &mut BTreeSet<u32>) {
    if let Some(c) = crate::topology::current_cpu() {
        seen.insert(c);
    }
}

/// Pin the calling thread to host CPU `index mod online` when asked; the note says what
/// happened.
pub fn maybe_pin(pin: bool, index: u32) -> Option<String> {
    if !pin {
        return None;
    }
    let cpu = index as usize % crate::topology::online_cpus();
    Some(match crate::topology::pin_current_thread(cpu) {
        Ok(()) => format!("vcpu{index}->cpu{cpu}"),
        Err(e) => format!("vcpu{index}: pinning to cpu{cpu} failed: {e}"),
    })
}

fn ap_loop(
    mut vcpu: Vcpu,
    stop: Arc<AtomicBool>,
    boot_thread: libc::pthread_t,
    tx: mpsc::Sender<ApRequest>,
    pin: bool,
    pins: Arc<Mutex<Vec<String>>>,
) -> BTreeSet<u32> {
    if let Some(n) = maybe_pin(pin, vcpu.index) {
        pins.lock().unwrap().push(n);
    }
    let mut seen = BTreeSet::new();
    note_cpu(&mut seen);
    let index = vcpu.index;
    let ask = |action: ApAction| -> Option<Vec<u8>> {
        let (rtx, rrx) = mpsc::channel();
        tx.send(ApRequest {
            cpu: index,
            action,
            reply: rtx,
        })
        .ok()?;
        loop {
            watchdog::kick(boot_thread);
            match rrx.recv_timeout(Duration::from_millis(1)) {
                Ok(v) => return Some(v),
                Err(mpsc::RecvTimeoutError::Timeout) if !stop.load(Ordering::SeqCst) => {}
                Err(_) => return None,
            }
        }
    };
    while !stop.load(Ordering::SeqCst) {
        let action = match vcpu.fd.run() {
            Ok(VcpuExit::IoOut(port, data)) => ApAction::Out(port, data.to_vec()),
            Ok(VcpuExit::IoIn(port, data)) => {
                let len = data.len();
                match ask(ApAction::In(port, len)) {
                    Some(v) => {
                        let n = v.len().min(data.len());
                        data[..n].copy_from_slice(&v[..n]);
                        note_cpu(&mut seen);
                        continue;
                    }
                    None => break,
                }
            }
            Ok(VcpuExit::Intr) | Ok(VcpuExit::Hlt) => {
                note_cpu(&mut seen);
                continue;
            }
            Ok(VcpuExit::MmioRead(_, data)) => {
                data.fill(0xff);
                continue;
            }
            Ok(VcpuExit::MmioWrite(..)) => continue,
            Ok(other) => ApAction::Died(format!("vCPU {index} exit {other:?}")),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                note_cpu(&mut seen);
                continue;
            }
            Err(e) => ApAction::Died(format!("vCPU {index}: KVM_RUN failed: {e}")),
        };
        note_cpu(&mut seen);
        let died = matches!(action, ApAction::Died(_));
        if ask(action).is_none() || died {
            break;
        }
    }
    seen
}

impl ApThreads {
    /// Start one thread per AP vCPU; returns the threads and the boot thread's link.
    pub fn start(aps: Vec<Vcpu>, pin: bool, pins: Arc<Mutex<Vec<String>>>) -> (ApThreads, ApLink) {
        let stop = Arc::new(AtomicBool::new(false));
        let boot_thread = watchdog::this_thread();
        let (tx, rx) = mpsc::channel();
        let threads = aps
            .into_iter()
            .map(|vcpu| {
                let (stop, tx, pins) = (stop.clone(), tx.clone(), pins.clone());
                let (ttx, trx) = mpsc::channel();
                let h = thread::Builder::new()
                    .name(format!("vcpu{}", vcpu.index))
                    .spawn(move || {
                        let _ = ttx.send(watchdog::this_thread());
                        ap_loop(vcpu, stop, boot_thread, tx, pin, pins)
                    })
                    .expect("spawning a vCPU thread");
                let t = trx.recv().expect("vCPU thread started");
                (t, h)
            })
            .collect();
        (ApThreads { stop, threads }, ApLink { requests: rx })
    }

    /// Stop every AP thread (kicking each out of `KVM_RUN`) and return, per AP (in vCPU
    /// order), the host CPUs its thread was seen on.
    pub fn stop(self) -> Vec<BTreeSet<u32>> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads
            .into_iter()
            .map(|(t, h)| {
                while !h.is_finished() {
                    watchdog::kick(t);
                    thread::sleep(Duration::from_millis(1));
                }
                h.join().unwrap_or_default()
            })
            .collect()
    }
}
