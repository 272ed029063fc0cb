//! Run configs (`configs/*.toml`): validated with serde, unknown keys rejected everywhere.
//!
//! ```toml
//! [run]            # harness side
//! accel = "auto"          # auto | kvm | tcg        (--accel overrides)
//! machine = "microvm"     # microvm | q35
//! memory_mib = 2048
//! timeout_s = 120         # per boot                (--timeout overrides)
//! host_backing = "default"  # default | 4K | thp | hugetlbfs
//! boots = 1               # fresh guests to pool    (--boots overrides)
//! vcpus = 1               # CPUs of the VM, 1..=64  (--vcpus overrides)
//! pin_vcpus = false       # embedded VMM: pin vCPU thread i to host CPU i mod ncpus
//! [guest]          # becomes protocol::GuestPlan
//! cpl = "auto"            # auto | 0 | 3            (--cpl overrides)
//! direct_map_page = "2M"  # 4K | 2M | 1G
//! mm_debug = false
//! flush_mode = "lazy"     # per-page | full | lazy
//! seed = 1
//! selftest = false
//! fault = "panic"         # optional: see protocol::FaultInjection
//! fault_cpu = 0           # the CPU that raises `fault` (< vcpus; an AP: panic, page_fault, invalid_opcode, hang, stack_overflow)
//! [suites.timer]   # protocol::Suites; an absent suite does not run
//! samples = 10000
//! [compare]        # verdicts of `kmbench compare` / `kmbench ab` (see compare::policy)
//! threshold = 3.0         # minimum effect, percent; alpha = 0.05 (family-wise)
//! [noise]          # the noise guard (see noise.rs)
//! canaries = true         # reference workloads between suites
//! band = 10.0             # percent a canary may read slower than the run's fastest boot
//! stable = false          # retry boots until `boots` stable ones (--stable), at most max_boots
//! [[variants]]     # optional: boot the run once per variant (× boots, interleaved ABBA)
//! name = "thp"            # [A-Za-z0-9_.-]+, unique; results get the suffix `@thp`
//! host_backing = "thp"    # may override: host_backing, cpl, direct_map_page, mm_debug, flush_mode
//! ```
use std::fmt;
use std::path::{Path, PathBuf};

use kmbench_protocol::limits::Range;
use kmbench_protocol::{FaultInjection, FlushMode, GuestPlan, PageSize, Suites};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

mod place;

/// A config that failed to load: names the file, the key and what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM when /dev/kvm opens read-write, else TCG (with a warning).
    Auto,
    Kvm,
    Tcg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Machine {
    Microvm,
    Q35,
}

impl Machine {
    pub fn label(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm",
            Machine::Q35 => "q35",
        }
    }
}

/// Where QEMU gets guest RAM from on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostBacking {
    /// QEMU's default (anonymous memory, THP-eligible).
    #[serde(rename = "default")]
    Default,
    /// Shared memory file in /dev/shm: 4 KiB host pages (shmem THP is normally off).
    #[serde(rename = "4K")]
    Small,
    /// Anonymous memory that QEMU madvises MADV_HUGEPAGE.
    #[serde(rename = "thp")]
    Thp,
    /// memfd on hugetlbfs, 2 MiB pages, preallocated (needs reserved huge pages).
    #[serde(rename = "hugetlbfs")]
    Hugetlbfs,
}

impl HostBacking {
    pub fn label(self) -> &'static str {
        match self {
            HostBacking::Default => "default",
            HostBacking::Small => "4K",
            HostBacking::Thp => "thp",
            HostBacking::Hugetlbfs => "hugetlbfs",
        }
    }
}

/// `cpl = "auto" | "0" | "3" | 0 | 3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CplSetting {
    #[default]
    Auto,
    Fixed(u8),
}

impl CplSetting {
    pub fn parse(s: &str) -> Result<CplSetting, String> {
        match s.trim() {
            "auto" => Ok(CplSetting::Auto),
            "0" => Ok(CplSetting::Fixed(0)),
            "3" => Ok(CplSetting::Fixed(3)),
            other => Err(format!("invalid cpl `{other}`, expected \"auto\", 0 or 3")),
        }
    }
}

impl<'de> Deserialize<'de> for CplSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = CplSetting;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"auto\", 0 or 3")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CplSetting, E> {
                CplSetting::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<CplSetting, E> {
                match v {
                    0 | 3 => Ok(CplSetting::Fixed(v as u8)),
                    _ => Err(E::custom(format!(
                        "invalid cpl {v}, expected \"auto\", 0 or 3"
                    ))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<CplSetting, E> {
                self.visit_i64(v as i64)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for CplSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CplSetting::Auto => s.serialize_str("auto"),
            CplSetting::Fixed(n) => s.serialize_u8(*n),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSection {
    pub accel: Accel,
    pub machine: Machine,
    pub memory_mib: u64,
    pub timeout_s: u64,
    pub host_backing: HostBacking,
    pub boots: u32,
    pub vcpus: u32,
    pub pin_vcpus: bool,
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            accel: Accel::Auto,
            machine: Machine::Microvm,
            memory_mib: 2048,
            timeout_s: 120,
            host_backing: HostBacking::Default,
            boots: 1,
            vcpus: 1,
            pin_vcpus: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuestSection {
    pub cpl: CplSetting,
    pub direct_map_page: PageSize,
    pub mm_debug: bool,
    pub flush_mode: FlushMode,
    pub seed: u64,
    pub selftest: bool,
    pub fault: Option<FaultInjection>,
    pub fault_cpu: u32,
}

impl Default for GuestSection {
    fn default() -> Self {
        let p = GuestPlan::new(0);
        GuestSection {
            cpl: CplSetting::Auto,
            direct_map_page: p.direct_map_page,
            mm_debug: p.mm_debug,
            flush_mode: p.flush_mode,
            seed: p.seed,
            selftest: p.selftest,
            fault: None,
            fault_cpu: 0,
        }
    }
}

/// One `[[variants]]` entry: a name and the keys it overrides.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_backing: Option<HostBacking>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpl: Option<CplSetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_map_page: Option<PageSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mm_debug: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_mode: Option<FlushMode>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub run: RunSection,
    pub guest: GuestSection,
    pub suites: Suites,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<Variant>,
    /// `[compare]`: verdict thresholds and per-benchmark overrides (`compare::policy`).
    pub compare: crate::compare::ComparePolicy,
    /// `[noise]`: the noise guard's canaries, band and stable mode (`crate::noise`).
    pub noise: crate::noise::NoiseConfig,
}

impl Config {
    /// This config with a variant's overrides applied (and no variants of its own).
    pub fn with_variant(&self, v: &Variant) -> Config {
        let mut c = self.clone();
        c.variants.clear();
        if let Some(b) = v.host_backing {
            c.run.host_backing = b;
        }
        if let Some(x) = v.cpl {
            c.guest.cpl = x;
        }
        if let Some(x) = v.direct_map_page {
            c.guest.direct_map_page = x;
        }
        if let Some(x) = v.mm_debug {
            c.guest.mm_debug = x;
        }
        if let Some(x) = v.flush_mode {
            c.guest.flush_mode = x;
        }
        c
    }

    /// The guest plan for a resolved privilege level.
    pub fn plan(&self, cpl: u8) -> GuestPlan {
        let mut p = GuestPlan::new(cpl);
        p.direct_map_page = self.guest.direct_map_page;
        p.mm_debug = self.guest.mm_debug;
        p.flush_mode = self.guest.flush_mode;
        p.seed = self.guest.seed;
        p.selftest = self.guest.selftest;
        p.fault = self.guest.fault;
        p.fault_cpu = self.guest.fault_cpu;
        p.suites = self.suites.clone();
        p.canary = self
            .noise
            .canaries
            .then(kmbench_protocol::CanaryPlan::default);
        p.cpus = self.run.vcpus;
        p
    }

    fn validate(&self) -> Result<(), String> {
        self.compare.validate()?;
        self.noise.validate()?;
        let run = |key: &str, v: u64, r: Range| {
            if r.contains(v) {
                Ok(())
            } else {
                Err(format!("[run] {key} = {v} is out of range: expected {r}"))
            }
        };
        run("memory_mib", self.run.memory_mib, MEMORY_MIB)?;
        run("timeout_s", self.run.timeout_s, TIMEOUT_S)?;
        run("boots", self.run.boots.into(), BOOTS)?;
        run("vcpus", self.run.vcpus.into(), VCPUS)?;
        // The plan's own cross-key checks (fault_cpu and the fault kind). Against the
        // largest vcpus here, since --vcpus may raise the file's; `kmbench run` checks the
        // plan again once the flag is applied.
        let mut p = self.plan(3);
        p.cpus = VCPUS.max as u32;
        p.check().map_err(|e| e.to_string())?;
        self.suites.check().map_err(|e| e.to_string())?;
        if let Some(t) = &self.suites.tlb {
            let mem = self.run.memory_mib << 20;
            if t.max_bytes >= mem {
                return Err(format!(
                    "[suites.tlb] max_bytes = {} does not fit in the guest's memory \
                     ([run] memory_mib = {} is {mem} bytes)",
                    t.max_bytes, self.run.memory_mib
                ));
            }
        }
        let mut names: Vec<&str> = Vec::new();
        for v in &self.variants {
            if v.name.is_empty()
                || !v
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(format!(
                    "[[variants]] name {:?} is invalid: expected letters, digits, '_', '-' or '.'",
                    v.name
                ));
            }
            if names.contains(&v.name.as_str()) {
                return Err(format!("[[variants]] name {:?} is used twice", v.name));
            }
            names.push(&v.name);
        }
        let hugetlb = self.run.host_backing == HostBacking::Hugetlbfs
            || self
                .variants
                .iter()
                .any(|v| v.host_backing == Some(HostBacking::Hugetlbfs));
        if hugetlb && !self.run.memory_mib.is_multiple_of(2) {
            return Err(
                "[run] memory_mib must be a multiple of 2 with host_backing = \"hugetlbfs\"".into(),
            );
        }
        Ok(())
    }
}

/// `[run] memory_mib`: at least what the kernel needs, at most 1 TiB (so the byte count
/// never overflows and the VMM never maps an absurd region).
pub const MEMORY_MIB: Range = Range::new(64, 1 << 20);
/// `[run] timeout_s` and `--timeout`: 1 s to 7 days (0 is refused by both alike).
pub const TIMEOUT_S: Range = Range::new(1, 7 * 24 * 3600);
/// `[run] boots` and `--boots`.
pub const BOOTS: Range = Range::new(1, 1000);
/// `[run] vcpus` and `--vcpus`: what the guest supports (protocol `limits::CPUS`).
pub const VCPUS: Range = kmbench_protocol::limits::CPUS;

/// A config plus where it came from.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    pub path: PathBuf,
    pub config: Config,
    /// SHA-256 of the file bytes, hex.
    pub hash: String,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Read and validate a config file.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        message: if e.kind() == std::io::ErrorKind::NotFound {
            "config file not found".to_string()
        } else {
            format!("cannot read config: {e}")
        },
    })?;
    let text = String::from_utf8(bytes.clone()).map_err(|_| ConfigError {
        file: path.to_path_buf(),
        message: "config is not valid UTF-8".into(),
    })?;
    let config = parse(&text).map_err(|message| ConfigError {
        file: path.to_path_buf(),
        message,
    })?;
    Ok(LoadedConfig {
        path: path.to_path_buf(),
        config,
        hash: sha256_hex(&bytes),
    })
}

/// Parse config text; the error names the key, the table and the line.
pub fn parse(text: &str) -> Result<Config, String> {
    let config: Config = toml::from_str(text).map_err(|e| place::describe_toml_error(text, &e))?;
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_config_parses() {
        let c = parse(
            r#"
[run]
accel = "tcg"
machine = "q35"
memory_mib = 512
timeout_s = 10
host_backing = "hugetlbfs"
boots = 3
[guest]
cpl = "3"
direct_map_page = "4K"
mm_debug = true
flush_mode = "per-page"
seed = 7
selftest = true
fault = "page_fault"
[suites.timer]
samples = 5
[suites.gate]
[suites.alu]
iterations = 10
"#,
        )
        .unwrap();
        assert_eq!(c.run.accel, Accel::Tcg);
        assert_eq!(c.run.machine, Machine::Q35);
        assert_eq!(c.run.host_backing, HostBacking::Hugetlbfs);
        assert_eq!(c.run.boots, 3);
        assert_eq!(c.guest.cpl, CplSetting::Fixed(3));
        assert_eq!(c.guest.fault, Some(FaultInjection::PageFault));
        assert_eq!(c.suites.timer.as_ref().unwrap().samples, 5);
        assert_eq!(c.suites.gate.as_ref().unwrap().samples, 2000);
        assert_eq!(c.suites.alu.as_ref().unwrap().iterations, 10);
        assert!(c.suites.kmalloc.is_none());
        let plan = c.plan(3);
        assert_eq!(plan.cpl, 3);
        assert_eq!(plan.direct_map_page, PageSize::Size4K);
        assert_eq!(plan.flush_mode, FlushMode::PerPage);
        assert!(plan.selftest && plan.mm_debug);
    }

    #[test]
    fn variants_parse_override_and_validate() {
        let c = parse(
            "[run]\nhost_backing = \"4K\"\n[[variants]]\nname = \"a\"\n[[variants]]\nname = \"thp\"\nhost_backing = \"thp\"\ncpl = 3\ndirect_map_page = \"4K\"\nmm_debug = true\nflush_mode = \"full\"\n",
        )
        .unwrap();
        assert_eq!(c.variants.len(), 2);
        let a = c.with_variant(&c.variants[0]);
        assert_eq!(a.run.host_backing, HostBacking::Small);
        assert!(a.variants.is_empty());
        let t = c.with_variant(&c.variants[1]);
        assert_eq!(t.run.host_backing, HostBacking::Thp);
        assert_eq!(t.guest.cpl, CplSetting::Fixed(3));
        assert_eq!(t.guest.direct_map_page, PageSize::Size4K);
        assert!(t.guest.mm_debug);
        assert_eq!(t.guest.flush_mode, FlushMode::Full);
        let e = parse("[[variants]]\nname = \"a\"\nmemory_mib = 5\n").unwrap_err();
        assert!(e.contains("memory_mib"), "{e}");
        let e = parse("[[variants]]\nname = \"a\"\n[[variants]]\nname = \"a\"\n").unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = parse("[[variants]]\nname = \"a b\"\n").unwrap_err();
        assert!(e.contains("invalid"), "{e}");
        let e = parse("[[variants]]\nhost_backing = \"thp\"\n").unwrap_err();
        assert!(e.contains("name"), "{e}");
    }

    #[test]
    fn empty_config_uses_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.run.memory_mib, 2048);
        assert_eq!(c.guest.cpl, CplSetting::Auto);
    }

    #[test]
    fn cpl_accepts_strings_and_integers() {
        assert_eq!(
            parse("[guest]\ncpl = 0").unwrap().guest.cpl,
            CplSetting::Fixed(0)
        );
        assert_eq!(
            parse("[guest]\ncpl = \"auto\"").unwrap().guest.cpl,
            CplSetting::Auto
        );
        let e = parse("[guest]\ncpl = 2").unwrap_err();
        assert!(e.contains("cpl"), "{e}");
    }

    #[test]
    fn bad_values_are_explained() {
        let e = parse("[run]\naccel = \"xen\"\n").unwrap_err();
        assert!(e.contains("xen") && e.contains("[run]"), "{e}");
        let e = parse("[run]\nboots = 0\n").unwrap_err();
        assert!(e.contains("boots"), "{e}");
    }

    #[test]
    fn numbers_at_the_edges_are_refused_naming_the_key() {
        for (text, key) in [
            ("[run]\ntimeout_s = 0\n", "timeout_s = 0"),
            // toml 0.9 reads integers up to u64::MAX: the range check refuses it.
            (
                "[run]\ntimeout_s = 18446744073709551615\n",
                "[run] timeout_s = 18446744073709551615 is out of range",
            ),
            (
                "[run]\ntimeout_s = 9223372036854775807\n",
                "timeout_s = 9223372036854775807",
            ),
            ("[run]\ntimeout_s = 604801\n", "timeout_s = 604801"),
            ("[run]\nmemory_mib = 17592186044480\n", "memory_mib"),
            ("[run]\nmemory_mib = 63\n", "memory_mib = 63"),
            ("[run]\nboots = 1001\n", "boots = 1001"),
            ("[run]\nvcpus = 0\n", "vcpus = 0"),
            ("[run]\nvcpus = 65\n", "vcpus = 65"),
            (
                "[suites.kmalloc]\nsamples = 4294967295\n",
                "[suites.kmalloc] samples",
            ),
            ("[suites.kmalloc]\nn = 4294967295\n", "[suites.kmalloc] n ="),
            (
                "[suites.timer]\nsamples = 0\n",
                "[suites.timer] samples = 0",
            ),
            ("[suites.talc_vs_slab]\nsizes = [0]\n", "sizes = 0"),
            ("[suites.stack_vs_heap]\nbuffer = 0\n", "buffer = 0"),
            ("[suites.pages]\norders = [40]\n", "orders = 40"),
            ("[suites.tlb]\nmax_bytes = 4294967296\n", "does not fit"),
            ("[suites.alu]\niterations = 0\n", "iterations = 0"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
        // Values that do not fit the type at all are type errors naming the key.
        let e = parse("[suites.kmalloc]\nsamples = 4294967296\n").unwrap_err();
        assert!(
            e.contains("`samples`") && e.contains("[suites.kmalloc]"),
            "{e}"
        );
        let e = parse("[run]\nmemory_mib = -1\n").unwrap_err();
        assert!(e.contains("`memory_mib`") && e.contains("[run]"), "{e}");
        // The edges themselves are accepted.
        parse("[run]\ntimeout_s = 604800\nmemory_mib = 64\nboots = 1000\n").unwrap();
        let e = parse("[guest]\nfault = \"panic\"\nfault_cpu = 64\n").unwrap_err();
        assert!(e.contains("fault_cpu = 64"), "{e}");
        let e = parse("[guest]\nfault = \"double_free\"\nfault_cpu = 1\n").unwrap_err();
        assert!(e.contains("fault_cpu"), "{e}");
        let c = parse("[guest]\nfault = \"panic\"\nfault_cpu = 3\n").unwrap();
        let mut p = c.plan(3);
        assert!(p.check().is_err(), "fault_cpu 3 with 1 vCPU");
        p.cpus = 4;
        p.check().unwrap();
        let c = parse("[run]\nvcpus = 64\npin_vcpus = true\n").unwrap();
        assert_eq!((c.run.vcpus, c.plan(3).cpus), (64, 64));
    }

    #[test]
    fn duplicate_list_entries_are_refused() {
        for (text, what) in [
            ("[suites.kmalloc]\nsizes = [64, 64, 64]\n", "sizes lists 64"),
            (
                "[suites.kmalloc]\nkzalloc_sizes = [8, 16, 8]\n",
                "kzalloc_sizes lists 8",
            ),
            ("[suites.pages]\norders = [0, 0]\n", "orders lists 0"),
            (
                "[suites.vmalloc]\nflush_modes = [\"full\", \"lazy\", \"full\"]\n",
                "flush_modes",
            ),
            (
                "[suites.tlb]\nmappings = [\"vmalloc\", \"vmalloc-huge\", \"vmalloc_huge\"]\n",
                "mappings",
            ),
            (
                "[suites.map]\nsizes = [2097152, 2097152]\n",
                "sizes lists 2097152",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(
                e.contains(what) && e.contains("more than once"),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn error_display_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.toml");
        std::fs::write(&p, "[guest]\nbogus = 1\n").unwrap();
        let e = load(&p).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with(&format!("{}: ", p.display())), "{s}");
        assert!(s.contains("`bogus`"), "{s}");
        let e = load(&dir.path().join("missing.toml")).unwrap_err();
        assert!(e.to_string().contains("not found"), "{e}");
    }

    #[test]
    fn every_shipped_config_is_in_range() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut n = 0;
        for dir in [root.clone(), root.join("faults")] {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "toml") {
                    load(&p).unwrap_or_else(|e| panic!("{e}"));
                    n += 1;
                }
            }
        }
        assert!(n > 5, "found only {n} configs");
    }

    #[test]
    fn hash_is_of_bytes() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
