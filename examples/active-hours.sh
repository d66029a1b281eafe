#!/usr/bin/env bash
# Active hours per source: in how many hours of START..END each inbound source was seen.
#
#   examples/active-hours.sh ROOT START END [OUTDIR]
#
# For every hour: a bag of the hour's inbound flows by source, its cover set, and a bag of
# count 1 per address of that set (pyflow-bagbuild --set-input); the sum of the hourly bags
# is OUTDIR/active-hours.bag (source -> hours active). START and END are YYYY/MM/DD[:HH]
# (a bare day means its hours 00-23). Prints the number of hours, of sources, and the
# distribution of active hours. Runs bin/ with the checkout's .venv Python (or $PYTHON).
set -euo pipefail

if [ $# -lt 3 ] || [ $# -gt 4 ]; then
    echo "usage: $0 ROOT START END [OUTDIR]" >&2
    exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$1 START=$2 END=$3
OUT=${4:-.}
PY=${PYTHON:-$HERE/.venv/bin/python}
[ -x "$PY" ] || PY=python3
pf() { local tool=$1; shift; "$PY" "$HERE/bin/pyflow-$tool" "$@"; }
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# the hours from START to END, as YYYY/MM/DD:HH
mapfile -t HOURS < <("$PY" - "$START" "$END" <<'PYTHON'
import sys, time, calendar
def hour(text, last):
    day, _, hh = text.partition(":")
    t = calendar.timegm(time.strptime(day, "%Y/%m/%d"))
    return t + 3600 * (int(hh) if hh else (23 if last else 0))
for t in range(hour(sys.argv[1], False), hour(sys.argv[2], True) + 1, 3600):
    print(time.strftime("%Y/%m/%d:%H", time.gmtime(t)))
PYTHON
)

bags=()
for h in "${HOURS[@]}"; do
    f="$work/${h//[\/:]/-}"
    pf filter --data-rootdir="$ROOT" --start-date="$h" --end-date="$h" --type=in,inweb \
        --proto=0- --pass=stdout 2>/dev/null \
        | pf bag --sip-flows="$f.bag"
    pf bagtool --coverset "$f.bag" --output-path="$f.set"
    pf bagbuild --set-input="$f.set" --output-path="$f.one.bag"
    bags+=("$f.one.bag")
done
pf bagtool --add "${bags[@]}" --output-path="$OUT/active-hours.bag"
echo "active-hours: ${#HOURS[@]} hours, $(pf bagtool --coverset "$OUT/active-hours.bag" \
    | pf setcat --count-ips) sources in $OUT/active-hours.bag"
echo "active-hours: sources by hours active (hours|sources|)"
pf bagcat --bin-ips "$OUT/active-hours.bag"
