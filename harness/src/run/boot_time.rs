//! Where a boot's time went, host and guest side, for `env.extra.boot_time`
//! (see docs/results-schema.md):
//!
//! * host: `setup_ms` (the embedded VMM: VM creation until the vCPU starts; QEMU: none,
//!   its setup is inside its process) and `first_record_ms` (launch until the first
//!   record arrived, = `env.boot_ms`);
//! * guest, from its TSC stamps converted with its `tsc_hz`: `ring0_setup_ms` (kernel
//!   entry until ring-0 setup was done: hello's `tsc_ring0_done`), `entry_to_hello_ms`
//!   (kernel entry until the first record was built), and `mm_init_ms` (the `mm/boot`
//!   info record's `tsc_mm_init_start` → `tsc_mm_init_done`), with `mm_init_phases_ms`
//!   when the guest sends per-phase stamps.
//!
//! Fields the guest does not send (older kernels) are left out, never guessed.
use serde_json::{json, Map, Value};

use super::boots::BootData;

/// One boot's breakdown (an object; empty when nothing is known).
pub fn of_boot(b: &BootData) -> Value {
    let mut m = Map::new();
    if let Some(s) = b.setup_ms {
        m.insert("setup_ms".into(), json!(round3(s)));
    }
    if let Some(f) = b.boot_ms {
        m.insert("first_record_ms".into(), json!(round3(f)));
    }
    let Some(hello) = &b.hello else {
        return Value::Object(m);
    };
    if hello.tsc_hz == 0 {
        return Value::Object(m);
    }
    let ms = |from: u64, to: u64| {
        (to >= from).then(|| round3((to - from) as f64 * 1e3 / hello.tsc_hz as f64))
    };
    // Read leniently (as JSON) so guests with and without the newer stamps both work.
    let h = serde_json::to_value(hello).unwrap_or_default();
    let u = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
    let entry = hello.tsc_at_entry;
    if let Some(r0) = u(&h, "tsc_ring0_done").and_then(|t| ms(entry, t)) {
        m.insert("ring0_setup_ms".into(), json!(r0));
    }
    if let Some(hl) = ms(entry, hello.tsc_at_hello) {
        m.insert("entry_to_hello_ms".into(), json!(hl));
    }
    if let Some(mm) = b.info.get("mm/boot") {
        if let (Some(s), Some(d)) = (u(mm, "tsc_mm_init_start"), u(mm, "tsc_mm_init_done")) {
            if let Some(t) = ms(s, d) {
                m.insert("mm_init_ms".into(), json!(t));
            }
            if let Some(Value::Object(ph)) = mm.get("tsc_mm_init_phases") {
                // Each phase: its stamp minus the previous one (from the init start).
                let mut stamps: Vec<(&String, u64)> = ph
                    .iter()
                    .filter_map(|(k, v)| Some((k, v.as_u64()?)))
                    .collect();
                stamps.sort_by_key(|(_, t)| *t);
                let mut prev = s;
                let mut out = Map::new();
                for (k, t) in stamps {
                    if let Some(d) = ms(prev, t) {
                        out.insert(k.clone(), json!(d));
                    }
                    prev = t;
                }
                m.insert("mm_init_phases_ms".into(), Value::Object(out));
            }
        }
    }
    Value::Object(m)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmbench_protocol::Hello;

    #[test]
    fn breakdown_from_host_and_guest_stamps() {
        let mut hello: Hello =
            serde_json::from_value(json!({"protocol": 1, "kernel": "k", "cpl": 3,
                "guest_hypervisor": "pvm", "cpu_vendor": "v", "cpu_brand": "b",
                "tsc_hz": 1_000_000_000u64, "tsc_source": "vmm", "invariant_tsc": true,
                "mem_bytes": 1u64, "features": {"page_1g": false, "pcid": false,
                    "invpcid": false, "pmu": false, "nx": true}, "tsc_at_entry": 1_000_000u64,
                "tsc_at_hello": 4_000_000u64}))
            .unwrap_or_else(|e| panic!("hello: {e}"));
        hello.tsc_at_entry = 1_000_000;
        let mut b = BootData {
            hello: Some(hello),
            boot_ms: Some(9.5),
            setup_ms: Some(2.25),
            ..BootData::default()
        };
        b.info.insert(
            "mm/boot".into(),
            json!({"tsc_mm_init_start": 5_000_000u64, "tsc_mm_init_done": 8_000_000u64,
                   "tsc_mm_init_phases": {"tables_built": 6_000_000u64, "done": 8_000_000u64}}),
        );
        let v = of_boot(&b);
        assert_eq!(v["setup_ms"], json!(2.25));
        assert_eq!(v["first_record_ms"], json!(9.5));
        assert_eq!(v["entry_to_hello_ms"], json!(3.0));
        assert_eq!(v["mm_init_ms"], json!(3.0));
        assert_eq!(v["mm_init_phases_ms"]["tables_built"], json!(1.0));
        assert_eq!(v["mm_init_phases_ms"]["done"], json!(2.0));
    }

    #[test]
    fn nothing_known_is_an_empty_object() {
        assert_eq!(of_boot(&BootData::default()), json!({}));
    }
}
