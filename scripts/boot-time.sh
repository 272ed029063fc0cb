#!/usr/bin/env bash
# Boot-to-first-record time: median of N boots at 64 MiB and 2 GiB guest memory, on the
# embedded VMM and on QEMU, with the host/guest breakdown from results.json
# (env.extra.boot_time_per_boot, see docs/results-schema.md).
#
#   scripts/boot-time.sh [BOOTS]        # default 5; run on a quiet machine
#
# Each (backend, memory) is one `kmbench run --boots BOOTS` of a config with only the
# timer suite, so the boots are fresh guests and the numbers are boot cost, not benchmark
# cost. Needs /dev/kvm for the VMM rows (QEMU rows run on KVM too when it is usable). The
# run folders are kept under $OUT (default: a temporary folder, printed at the end).
set -euo pipefail
BOOTS="${1:-5}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-$(mktemp -d -t kmbench-boot-time-XXXXXX)}"
cd "$ROOT"
cargo build -q --release -p kmbench
KMBENCH="$ROOT/target/release/kmbench"

for mib in 64 2048; do
    cat > "$OUT/boot-$mib.toml" <<TOML
[run]
memory_mib = $mib
timeout_s = 120

[suites.timer]
samples = 10
TOML
done

printf '%-5s %6s %5s %10s %9s %10s %10s %9s\n' backend memory boots first_ms setup_ms ring0_ms hello_ms mm_ms
for backend in kvm qemu; do
    for mib in 64 2048; do
        dir="$OUT/$backend-$mib"
        if ! "$KMBENCH" run "$OUT/boot-$mib.toml" --backend "$backend" --boots "$BOOTS" \
            --out "$dir" -q >/dev/null 2>"$dir.stderr"; then
            printf '%-5s %5sM  failed: %s\n' "$backend" "$mib" "$(tail -1 "$dir.stderr")"
            continue
        fi
        python3 - "$dir/results.json" "$backend" "$mib" <<'PY'
import json, statistics, sys
r = json.load(open(sys.argv[1]))
x = r["env"]["extra"]
per = x.get("boot_time_per_boot") or [x.get("boot_time", {})]
def med(key):
    v = [b[key] for b in per if b.get(key) is not None]
    return f"{statistics.median(v):.2f}" if v else "-"
print(f"{sys.argv[2]:<5} {sys.argv[3]:>5}M {len(per):>5} {med('first_record_ms'):>10} "
      f"{med('setup_ms'):>9} {med('ring0_setup_ms'):>10} {med('entry_to_hello_ms'):>10} "
      f"{med('mm_init_ms'):>9}")
PY
    done
done
echo "medians over boots; run folders in $OUT"
echo "first_ms = launch → first record (host); setup_ms = VMM setup until the vCPU starts;"
echo "ring0/hello/mm = guest TSC: entry → ring-0 setup done / first record / mm init"
