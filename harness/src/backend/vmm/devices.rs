//! The guest-visible devices: the three ports the guest uses, the same ones QEMU's
//! `-M microvm` command line wires up (the PIT and PIC are KVM's in-kernel ones).
//!
//! | port | QEMU device | here |
//! |---|---|---|
//! | COM1 0x3f8..0x3ff | 16550 → guest log file | THR bytes → `spec.log_path`; LSR reads 0x60 |
//! | 0xe9 | isa-debugcon → stdout | `KMB1 <json>` lines → [`Event::Record`] |
//! | COM2 0x2f8..0x2ff (serve mode) | 16550 on a socket ← requests | RBR pops a [`ControlChannel`](crate::backend::ControlChannel) byte; LSR bit 0 = one waiting |
//! | 0xf4 | isa-debug-exit | value `v` → [`BootEnd::Exited`] with `raw = v` (not QEMU's `(v << 1) \| 1`) |
//!
//! Writes reach [`Devices`] either as an exit ([`Devices::out`]) or, for the log and
//! record ports, through KVM's coalesced-PIO ring ([`Devices::drain_ring`]). Anything
//! else is counted in `vmm_unhandled` and reported once on the VMM's stderr.
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use kmbench_protocol::channel::{Line, RecordReader};
use kmbench_protocol::{ports, GuestExit};
use kvm_ioctls::VcpuFd;

use super::VmmStats;
use crate::backend::{BootEnd, Event};

pub fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    if let Some(v) = map.get_mut(key) {
        *v += 1;
    } else {
        map.insert(key.to_string(), 1);
    }
}

fn port_name(port: u16) -> &'static str {
    match port {
        p if (ports::SERIAL_LOG..ports::SERIAL_LOG + 8).contains(&p) => "serial",
        ports::RESULTS => "debugcon",
        p if (ports::CONTROL..ports::CONTROL + 8).contains(&p) => "control",
        p if (ports::EXIT..ports::EXIT + 4).contains(&p) => "exit",
        0x40..=0x43 | 0x61 => "pit",
        _ => "other",
    }
}

/// The guest-visible devices (COM1, debugcon, debug-exit) and what they collected.
pub struct Devices {
    pub log: std::io::BufWriter<std::fs::File>,
    pub verbose: bool,
    /// `-v`: the guest log echoed, sanitized, to stderr.
    pub echo: Option<crate::backend::log_echo::LogEcho<std::io::Stderr>>,
    pub results: RecordReader,
    serial_scratch: u8,
    pub stats: VmmStats,
    pub stderr: String,
    pub has_pit: bool,
    /// Serve mode: requests for the guest's COM2.
    pub control: Option<super::super::ControlChannel>,
    /// VM creation start (first-record time counts from here).
    pub t0: Instant,
}

impl Devices {
    /// Devices writing the guest log to `log`.
    pub fn new(log: std::fs::File, verbose: bool) -> Devices {
        Devices {
            log: std::io::BufWriter::new(log),
            verbose,
            echo: verbose.then(crate::backend::log_echo::LogEcho::stderr),
            results: RecordReader::new(),
            serial_scratch: 0,
            stats: VmmStats::default(),
            stderr: String::new(),
            has_pit: false,
            control: None,
            t0: Instant::now(),
        }
    }

    /// A record line cut short by the exit still counts (QEMU's reader does the same).
    pub fn flush_partial_line(&mut self, on_event: &mut dyn FnMut(Event)) {
        let mut results = std::mem::take(&mut self.results);
        results.finish(&mut |l| self.emit_line(l, on_event));
        let _ = self.log.flush();
    }

    pub fn unhandled(&mut self, exit: &str, key: String, message: impl FnOnce() -> String) {
        bump(&mut self.stats.exits, exit);
        if !self.stats.unknown_ports.contains_key(&key) {
            self.stderr.push_str("kmbench-vmm: ");
            self.stderr.push_str(&message());
            self.stderr.push('\n');
        }
        bump(&mut self.stats.unknown_ports, &key);
    }

    pub fn emit_line(&mut self, line: Line, on_event: &mut dyn FnMut(Event)) {
        if matches!(line, Line::Record(_)) && self.stats.first_record_us.is_none() {
            self.stats.first_record_us = Some(self.t0.elapsed().as_secs_f64() * 1e6);
        }
        on_event(crate::backend::qemu::line_event(line));
    }

    /// Bytes the guest wrote to `port` (via an exit or the coalesced ring).
    /// `Some(end)` when the guest asked to stop.
    fn write_port(
        &mut self,
        port: u16,
        data: &[u8],
        on_event: &mut dyn FnMut(Event),
    ) -> Option<BootEnd> {
        match port {
            ports::SERIAL_LOG => {
                let _ = self.log.write_all(data);
                if let Some(echo) = &mut self.echo {
                    echo.push(data);
                }
            }
            p if p > ports::SERIAL_LOG && p < ports::SERIAL_LOG + 8 => {
                if p == ports::SERIAL_LOG + 7 {
                    self.serial_scratch = *data.last().unwrap_or(&0);
                }
            }
            ports::RESULTS => {
                let mut results = std::mem::take(&mut self.results);
                results.push(data, &mut |l| self.emit_line(l, on_event));
                self.results = results;
            }
            ports::EXIT => {
                let mut v = [0u8; 4];
                let n = data.len().min(4);
                v[..n].copy_from_slice(&data[..n]);
                let code = u32::from_le_bytes(v);
                return Some(match GuestExit::from_code(code) {
                    Some(exit) => BootEnd::Exited {
                        exit,
                        raw: code as i32,
                    },
                    None => BootEnd::Unexpected {
                        code: Some(code as i32),
                        signal: None,
                        message: format!(
                            "guest wrote {code} to the exit port, which is not a guest exit code"
                        ),
                    },
                });
            }
            0x40..=0x43 | 0x61 if self.has_pit => {}
            // COM2 setup writes (IER, FCR, LCR, MCR) of a serving guest: nothing to do.
            p if self.control.is_some() && (ports::CONTROL..ports::CONTROL + 8).contains(&p) => {}
            p => {
                let len = data.len();
                let key = format!("out {p:#x}");
                if !self.stats.unknown_ports.contains_key(&key) {
                    self.stderr.push_str(&format!(
                        "kmbench-vmm: guest wrote to unhandled port {p:#x} ({len} bytes); ignored\n"
                    ));
                }
                bump(&mut self.stats.unknown_ports, &key);
            }
        }
        None
    }

    /// An OUT that exited to us.
    pub fn out(
        &mut self,
        port: u16,
        data: &[u8],
        on_event: &mut dyn FnMut(Event),
    ) -> Option<BootEnd> {
        bump(&mut self.stats.exits, io_key(true, port));
        self.write_port(port, data, on_event)
    }

    /// An IN that exited to us: fill `data`.
    pub fn input(&mut self, port: u16, data: &mut [u8]) {
        bump(&mut self.stats.exits, io_key(false, port));
        let value = match port {
            p if p == ports::SERIAL_LOG + 5 => 0x60, // LSR: THR empty, idle
            p if p == ports::SERIAL_LOG + 7 => self.serial_scratch,
            p if (ports::SERIAL_LOG..ports::SERIAL_LOG + 8).contains(&p) => 0,
            ports::RESULTS => 0xe9, // Bochs debugcon readback
            // COM2 of a serving guest: RBR pops a request byte, LSR bit 0 = one waiting.
            p if p == ports::CONTROL + 5 && self.control.is_some() => {
                0x60 | u8::from(self.control.as_ref().is_some_and(|c| c.has_data()))
            }
            ports::CONTROL if self.control.is_some() => {
                self.control.as_ref().and_then(|c| c.pop()).unwrap_or(0)
            }
            p if self.control.is_some() && (ports::CONTROL..ports::CONTROL + 8).contains(&p) => 0,
            p => {
                let key = format!("in {p:#x}");
                if !self.stats.unknown_ports.contains_key(&key) {
                    self.stderr.push_str(&format!(
                        "kmbench-vmm: guest read unhandled port {p:#x}; returning 0xff\n"
                    ));
                }
                bump(&mut self.stats.unknown_ports, &key);
                0xff
            }
        };
        data.fill(value);
    }

    /// Writes KVM appended to the coalesced-PIO ring instead of exiting.
    pub fn drain_ring(&mut self, vcpu: &mut VcpuFd, on_event: &mut dyn FnMut(Event)) {
        while let Ok(Some(e)) = vcpu.coalesced_mmio_read() {
            let len = (e.len as usize).min(e.data.len());
            let port = e.phys_addr as u16;
            bump(&mut self.stats.exits, "coalesced_pio");
            // Only the log and results ports are registered; neither ends the guest.
            let _ = self.write_port(port, &e.data[..len], on_event);
        }
    }
}

fn io_key(out: bool, port: u16) -> &'static str {
    match (out, port_name(port)) {
        (true, "serial") => "io_out_serial",
        (true, "debugcon") => "io_out_debugcon",
        (true, "exit") => "io_out_exit",
        (true, "pit") => "io_out_pit",
        (true, "control") => "io_out_control",
        (true, _) => "io_out_other",
        (false, "serial") => "io_in_serial",
        (false, "debugcon") => "io_in_debugcon",
        (false, "pit") => "io_in_pit",
        (false, "control") => "io_in_control",
        (false, _) => "io_in_other",
    }
}
