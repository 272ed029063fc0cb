#!/usr/bin/env bash
# SMP bring-up time and IPI round trip (boot CPU -> CPU 1 -> ack), median over BOOTS fresh
# guests per (backend, vcpus), from configs/smp.toml: `info.smp.bringup_ms` per boot and
# `ipi/roundtrip` (pooled median of boot medians, and p99).
#
#   scripts/smp-ipi.sh [BOOTS]          # default 5; run on a quiet machine
#
# Rows: embedded VMM and QEMU on KVM at 2 and 4 vCPUs (skipped without /dev/kvm), QEMU
# multi-threaded TCG at 2 and 4. Under kvm_pvm every ICR write, the AP's ring-0 handler
# and its EOI are emulated: the round trip is a hypervisor number, not hardware's. The
# run folders are kept under $OUT (default: a temporary folder, printed at the end).
set -euo pipefail
BOOTS="${1:-5}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-$(mktemp -d -t kmbench-smp-ipi-XXXXXX)}"
cd "$ROOT"
cargo build -q --release -p kmbench
KMBENCH="$ROOT/target/release/kmbench"

printf '%-10s %5s %5s %12s %14s %14s\n' backend vcpus boots bringup_ms ipi_median_us ipi_p99_us
for row in "kvm kvm" "qemu kvm" "qemu tcg"; do
    set -- $row
    backend=$1 accel=$2
    if [ "$accel" = kvm ] && ! [ -w /dev/kvm ]; then
        printf '%-10s skipped: /dev/kvm not usable\n' "$backend/$accel"
        continue
    fi
    for n in 2 4; do
        dir="$OUT/$backend-$accel-$n"
        if ! "$KMBENCH" run configs/smp.toml --backend "$backend" --accel "$accel" \
            --vcpus "$n" --boots "$BOOTS" --out "$dir" -q >/dev/null 2>"$dir.stderr"; then
            printf '%-10s %5s failed: %s\n' "$backend/$accel" "$n" "$(tail -1 "$dir.stderr")"
            continue
        fi
        python3 - "$dir/records.jsonl" "$dir/results.json" "$backend/$accel" "$n" <<'PY'
import json, statistics, sys
journal, results, label, n = sys.argv[1:5]
bringup = []
for line in open(journal):
    try:
        rec = json.loads(line)
    except ValueError:
        continue
    rec = rec.get("record", rec)
    if rec.get("type") == "info" and rec.get("key") == "smp":
        bringup.append(rec["value"]["bringup_ms"])
r = json.load(open(results))
ipi = next((b for b in r["benchmarks"] if b["name"] == "ipi/roundtrip"), None)
med = ipi["ns"]["median"] / 1e3 if ipi and ipi.get("ns") else float("nan")
p99 = ipi["ns"]["p99"] / 1e3 if ipi and ipi.get("ns") else float("nan")
bu = statistics.median(bringup) if bringup else float("nan")
print(f"{label:<10} {n:>5} {len(bringup):>5} {bu:>12.1f} {med:>14.1f} {p99:>14.1f}")
PY
    done
done
echo "run folders: $OUT"
