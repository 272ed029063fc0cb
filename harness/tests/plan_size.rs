//! Plans of any reasonable size reach the guest: a 64 KiB plan boots on both backends
//! (boot module 0: the embedded VMM's plan area, QEMU's `-initrd`), and a plan too large
//! for the channel is refused on the host, naming both sizes. No timings asserted.
mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use kmbench::backend::qemu::Qemu;
use kmbench::backend::vmm::KvmVmm;
use kmbench::backend::{run_to_end, AccelKind, Backend, BootEnd, Event, LaunchSpec};
use kmbench::config::{HostBacking, Machine};
use kmbench_protocol::{GateSuite, GuestExit, GuestPlan, Record, CMDLINE_PLAN_KEY, PLAN_MAX};

static NO_INTERRUPT: AtomicBool = AtomicBool::new(false);

/// A valid plan JSON padded with whitespace to exactly `size` bytes.
fn plan_of_size(cpl: u8, size: usize) -> String {
    let mut plan = GuestPlan::new(cpl);
    plan.suites.gate = Some(GateSuite { samples: 37 });
    let json = serde_json::to_string(&plan).unwrap();
    let pad = size.checked_sub(json.len()).expect("plan fits the size");
    format!("{}{}{}", &json[..1], " ".repeat(pad), &json[1..])
}

fn spec(dir: &Path, accel: AccelKind, plan: &str) -> LaunchSpec {
    LaunchSpec {
        kernel: common::kernel().to_path_buf(),
        cmdline: format!("{CMDLINE_PLAN_KEY}{plan}"),
        memory_mib: 256,
        vcpus: 1,
        pin_vcpus: false,
        machine: Machine::Microvm,
        accel,
        cpu_model: "max".into(),
        host_backing: HostBacking::Default,
        log_path: dir.join("guest.log"),
        timeout: Duration::from_secs(120),
        verbose: false,
        interrupt: &NO_INTERRUPT,
        control: None,
    }
}

fn boot_ok(backend: Box<dyn Backend + Send>, spec: LaunchSpec, cpl: u8) {
    let mut gate_samples = None;
    let mut hello_cpl = None;
    let log_path = spec.log_path.clone();
    let (report, backend) = run_to_end(backend, spec, |ev| match ev {
        Event::Record(Record::Bench(b)) if b.name == "gate/invlpg" => {
            gate_samples = Some(b.samples)
        }
        Event::Record(Record::Hello(h)) => hello_cpl = Some(h.cpl),
        _ => {}
    })
    .expect("boot returns");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        matches!(
            report.end,
            BootEnd::Exited {
                exit: GuestExit::Success,
                ..
            }
        ),
        "{} {:?}\n{log}",
        backend.name(),
        report.end
    );
    assert_eq!(
        gate_samples,
        Some(37),
        "{}: the plan was read\n{log}",
        backend.name()
    );
    assert_eq!(
        hello_cpl,
        Some(cpl),
        "{}: the CPL was honoured\n{log}",
        backend.name()
    );
}

#[test]
fn a_64k_plan_boots_on_the_embedded_vmm() {
    if !common::kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_of_size(3, 64 * 1024);
    boot_ok(
        Box::new(KvmVmm::new()),
        spec(dir.path(), AccelKind::Kvm, &plan),
        3,
    );
    // Too large for the plan area: refused before the guest runs, with both sizes.
    let big = plan_of_size(3, PLAN_MAX + 1);
    let (r, _) = run_to_end(
        Box::new(KvmVmm::new()),
        spec(dir.path(), AccelKind::Kvm, &big),
        |_| {},
    )
    .expect("boot returns");
    match r.end {
        BootEnd::LaunchFailed { message } => assert!(
            message.contains(&format!("{}", PLAN_MAX + 1))
                && message.contains(&PLAN_MAX.to_string()),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_64k_plan_boots_under_qemu() {
    let Some(bin) = kmbench::host::find_qemu() else {
        panic!("qemu-system-x86_64 not found: install it (Debian/Ubuntu: apt-get install qemu-system-x86)");
    };
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_of_size(0, 64 * 1024);
    let q = Qemu::new(bin.clone()).unwrap();
    boot_ok(Box::new(q), spec(dir.path(), AccelKind::Tcg, &plan), 0);
    let big = plan_of_size(0, PLAN_MAX + 1);
    let e = run_to_end(
        Box::new(Qemu::new(bin).unwrap()),
        spec(dir.path(), AccelKind::Tcg, &big),
        |_| {},
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&format!("{}", PLAN_MAX + 1)) && e.contains(&PLAN_MAX.to_string()),
        "{e}"
    );
}
