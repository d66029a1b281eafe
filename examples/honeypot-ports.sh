#!/usr/bin/env bash
# The honeypot port study, with pyflow tools only, on the archive examples/marx-import.sh built.
#
#   examples/honeypot-ports.sh ROOT [OUTDIR]
#
# Prints records per protocol, the top 10 TCP destination ports, records per sensor, and
# unique sources per day per sensor; draws OUTDIR/sources-per-day.png, the daily unique
# sources of each sensor with their 7-day moving average (needs matplotlib: the [plot] extra).
# Runs bin/ with the checkout's .venv Python (or $PYTHON).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 ROOT [OUTDIR]" >&2
    exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$1
OUT=${2:-.}
PY=${PYTHON:-$HERE/.venv/bin/python}
[ -x "$PY" ] || PY=python3
pf() { local tool=$1; shift; "$PY" "$HERE/bin/pyflow-$tool" "$@"; }
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
site=(--site-config-file="$ROOT/silk.conf")

# every record of the archive, once, in one stream
find "$ROOT" -type f ! -name silk.conf | sort | pf cat --xargs --output-path="$work/all.pf"

echo "== records per protocol"
pf uniq "${site[@]}" --fields=protocol --values=records --sort-output "$work/all.pf"

echo "== top 10 TCP destination ports"
pf filter --proto=6 --pass=stdout "$work/all.pf" \
    | pf stats "${site[@]}" --fields=dport --values=records --count=10

echo "== records per sensor"
pf uniq "${site[@]}" --fields=sensor --values=records --sort-output "$work/all.pf"

echo "== unique sources per day per sensor"
pf uniq "${site[@]}" --fields=sensor,stime --bin-time=86400 --values=distinct:sip \
    --sort-output "$work/all.pf" > "$OUT/sources-per-day.txt"
head -4 "$OUT/sources-per-day.txt"
echo "... ($(($(wc -l < "$OUT/sources-per-day.txt") - 1)) sensor-days in $OUT/sources-per-day.txt)"

# One record per source, sensor and day (pyflow-uniq's keys, back through pyflow-tuc),
# counted per day and sensor by pyflow-count, which draws the chart.
pf uniq "${site[@]}" --fields=sensor,stime,sip --bin-time=86400 --values=records \
    --no-titles --delimited=, --integer-sensors --timestamp-format=epoch "$work/all.pf" \
    | pf tuc "${site[@]}" --fields=sensor,stime,sip,packets --column-separator=, \
        --protocol=6 --output-path="$work/sources.pf"
if pf count "${site[@]}" --bin-size=86400 --plot="$OUT/sources-per-day.png" \
        --plot-by=sensor --moving-average=7 --plot-label="unique sources" \
        --plot-title="Unique sources per day per honeypot, with 7-day moving averages" \
        "$work/sources.pf" > "$work/count.txt"; then
    echo "== the chart: $OUT/sources-per-day.png (unique sources per day per sensor, 7-day mean)"
else
    echo "honeypot-ports: no chart (see the message above)" >&2
fi
