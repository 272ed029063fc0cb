//! Several vCPUs (issue 15's foundation): every CPU comes online on each backend, and a
//! fault raised on an application processor is reported with its CPU number and the same
//! exit statuses as on the boot CPU. TCG runs 4 vCPUs (multi-threaded TCG); KVM runs 2
//! on both the embedded VMM and QEMU (skipped without a usable /dev/kvm). No timings.
mod common;

use common::{kmbench_run, kvm_usable, Opts, Run};
use kmbench_protocol::BenchStatus;

const SMP: &str = "configs/smp.toml";

fn run(accel: &str, extra: &[&str], text: Option<String>) -> Run {
    kmbench_run(
        SMP,
        Opts {
            accel: Some(accel),
            extra,
            config_text: text,
            ..Opts::default()
        },
    )
}

/// `configs/smp.toml` with `fault` raised on CPU `cpu`.
fn with_fault(fault: &str, cpu: u32) -> String {
    common::derive_config(
        SMP,
        &[
            ("guest", "fault", toml::Value::String(fault.into())),
            ("guest", "fault_cpu", toml::Value::Integer(cpu.into())),
        ],
    )
}

fn assert_all_online(r: &Run, cpus: u64, label: &str) {
    assert_eq!(r.code, 0, "{}", r.context(label));
    let res = &r.results;
    assert_eq!(res.env.vcpus as u64, cpus, "{label}");
    let smp = res
        .info
        .get("smp")
        .unwrap_or_else(|| panic!("{label}: no smp info"));
    assert_eq!(smp["cpus"], cpus, "{label}: {smp}");
    assert_eq!(smp["online"], cpus, "{label}: {smp}");
    assert_eq!(smp["method"], "init-sipi-sipi", "{label}");
    for cpu in 1..cpus {
        let c = res
            .info
            .get(&format!("smp/cpu/{cpu}"))
            .unwrap_or_else(|| panic!("{label}: CPU {cpu} did not report"));
        assert_eq!(c["cpu"], cpu, "{label}: {c}");
        assert_eq!(c["apic_id"], cpu, "{label}: {c}");
        assert_eq!(c["current_cpu"], cpu, "{label}: the per-CPU lookup agrees");
    }
    let topo = &res.env.extra["host_topology"];
    assert!(
        topo["logical_cpus"].as_u64().unwrap() >= 1,
        "{label}: {topo}"
    );
    let seen = res.env.extra["vcpu_host_cpus"].as_object().unwrap();
    assert!(seen.contains_key("vcpu0"), "{label}: {seen:?}");
    // The single-CPU suites still run beside the parked APs.
    assert!(
        res.benchmarks.iter().any(|b| b.name == "timer/rdtsc"),
        "{label}"
    );
    // The IPI round trip to CPU 1 was acknowledged (its name carries `cpus`).
    let ipi = res
        .benchmarks
        .iter()
        .find(|b| b.name == "ipi/roundtrip")
        .unwrap_or_else(|| panic!("{label}: no ipi/roundtrip"));
    assert_eq!(ipi.status, BenchStatus::Ok, "{label}: {:?}", ipi.record);
    assert_eq!(ipi.params["cpus"], cpus, "{label}");
    assert!(
        ipi.samples > 0 && ipi.median > 0.0,
        "{label}: {:?}",
        ipi.record
    );
}

fn assert_ap_fault(r: &Run, code: i32, status: &str, cpu: u32, label: &str) {
    assert_eq!(r.code, code, "{}", r.context(label));
    assert_eq!(r.results.exit.as_ref().unwrap().status, status, "{label}");
    let f = r.results.faults.first().expect("fault record");
    assert_eq!(f.cpu, Some(cpu), "{label}: {f:?}");
    assert!(
        r.last_stderr_line().contains(&format!("CPU {cpu}")),
        "{label}: the verdict names the CPU: {}",
        r.last_stderr_line()
    );
}

#[test]
fn tcg_four_vcpus_come_online() {
    let r = run("tcg", &["--vcpus", "4"], None);
    assert_all_online(&r, 4, "tcg 4 vCPUs");
    let cmd = r.results.env.extra["qemu_command"].to_string();
    assert!(
        cmd.contains("tcg,thread=multi") && cmd.contains(r#""-smp","4""#),
        "{cmd}"
    );
}

#[test]
fn one_vcpu_runs_as_before_and_the_ipi_row_says_unsupported() {
    let r = run("tcg", &["--vcpus", "1"], None);
    assert_eq!(r.code, 0, "{}", r.context("1 vCPU"));
    assert!(!r.results.info.contains_key("smp"));
    let ipi = r
        .results
        .benchmarks
        .iter()
        .find(|b| b.name == "ipi/roundtrip");
    assert_eq!(ipi.map(|b| b.status), Some(BenchStatus::Unsupported));
}

#[test]
fn tcg_faults_on_an_ap_carry_the_cpu_and_the_usual_exit_codes() {
    let r = run("tcg", &["--vcpus", "4"], Some(with_fault("panic", 3)));
    assert_ap_fault(&r, 4, "panic", 3, "tcg panic on CPU 3");
    let r = run("tcg", &["--vcpus", "4"], Some(with_fault("page_fault", 2)));
    assert_ap_fault(&r, 5, "exception", 2, "tcg #PF on CPU 2");
    assert_eq!(r.results.faults[0].vector, Some(14));
    assert!(r.results.faults[0].cr2.is_some());
    let r = run(
        "tcg",
        &["--vcpus", "2"],
        Some(with_fault("invalid_opcode", 1)),
    );
    assert_ap_fault(&r, 5, "exception", 1, "tcg #UD on CPU 1");
    assert_eq!(r.results.faults[0].vector, Some(6));
}

#[test]
fn kvm_two_vcpus_on_both_backends() {
    if !kvm_usable() {
        return;
    }
    for backend in ["kvm", "qemu"] {
        let label = format!("kvm 2 vCPUs, --backend {backend}");
        let r = run("kvm", &["--vcpus", "2", "--backend", backend], None);
        assert_all_online(&r, 2, &label);
        assert_eq!(r.results.env.backend, backend, "{label}");
        let r = run(
            "kvm",
            &["--backend", backend],
            Some(with_fault("page_fault", 1)),
        );
        assert_ap_fault(&r, 5, "exception", 1, &format!("{label}: #PF on CPU 1"));
        let r = run("kvm", &["--backend", backend], Some(with_fault("panic", 1)));
        assert_ap_fault(&r, 4, "panic", 1, &format!("{label}: panic on CPU 1"));
    }
}

#[test]
fn kvm_vmm_pins_vcpu_threads_when_asked() {
    if !kvm_usable() {
        return;
    }
    let text = common::derive_config(SMP, &[("run", "pin_vcpus", toml::Value::Boolean(true))]);
    let r = run("kvm", &["--backend", "kvm"], Some(text));
    assert_all_online(&r, 2, "pinned");
    let pins = r.results.env.extra["vcpu_pinning"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(pins.len(), 2, "{pins:?}");
    assert!(
        pins[0].as_str().unwrap().starts_with("vcpu0->cpu"),
        "{pins:?}"
    );
}
