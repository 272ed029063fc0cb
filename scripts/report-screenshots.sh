#!/usr/bin/env bash
# Render a run's index.html and every chart to PNG with headless Chromium, to look at the
# report as a reader would (no numbers are computed here).
#
#   scripts/report-screenshots.sh [RUN]     # RUN: id, folder or `latest` (default latest)
#
# Writes <run folder>/screenshots/{index.png,<chart>.png}. Needs `chromium` (apt-get install
# chromium). For the headline pictures run, on a quiet machine:
#   kmbench run configs/alloc-full.toml && scripts/report-screenshots.sh
#   kmbench run configs/hugepages.toml  && scripts/report-screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-latest}
kmbench() { cargo run -q --release -p kmbench -- "$@"; }
dir=$(kmbench list --format json | python3 -c '
import json, sys
runs = [r for r in json.load(sys.stdin) if not r["error"]]
arg = sys.argv[1]
pick = runs[-1] if arg == "latest" else next(r for r in runs if arg in (r["run_id"], r["folder"]))
print(pick["folder"])' "$run")
kmbench report "$dir" >/dev/null
mkdir -p "$dir/screenshots"
shot() { chromium --headless --disable-gpu --no-sandbox --hide-scrollbars \
    --window-size="$3" --screenshot="$2" "file://$1" 2>/dev/null; }
shot "$dir/index.html" "$dir/screenshots/index.png" 1600,4000
for svg in "$dir"/*.svg; do
    shot "$svg" "$dir/screenshots/$(basename "${svg%.svg}").png" 2000,620
done
ls -1 "$dir/screenshots"
