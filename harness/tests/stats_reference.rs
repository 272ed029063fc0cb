//! kmbench's hand-written statistics against scipy (fixtures computed by
//! `scripts/stats_fixtures.py`, scipy version recorded in the file): Mann-Whitney U and p
//! (exact method to 1e-12; the normal approximation to 1e-6, the precision of the erfc used).
//! (The fixtures' `bootstrap` cases are no longer checked: compare's intervals are now the
//! rank tests' dual Hodges–Lehmann intervals, see `stats::shift` / `stats::signed_rank`.)
use kmbench::stats::{mann_whitney_u, MwMethod};
use serde_json::Value;

fn fixtures() -> Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/stats_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn mann_whitney_matches_scipy() {
    let f = fixtures();
    for c in f["mann_whitney"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let r = mann_whitney_u(&floats(&c["a"]), &floats(&c["b"])).unwrap();
        let want_method = match c["method"].as_str().unwrap() {
            "exact" => MwMethod::Exact,
            _ => MwMethod::Normal,
        };
        assert_eq!(r.method, want_method, "{name}");
        assert_eq!(r.u1, c["u1"].as_f64().unwrap(), "{name}: U1");
        let p = c["p_value"].as_f64().unwrap();
        let tol = if r.method == MwMethod::Exact {
            1e-12
        } else {
            1e-6
        };
        assert!(
            (r.p_value - p).abs() < tol,
            "{name}: p {} vs scipy {p}",
            r.p_value
        );
    }
}
