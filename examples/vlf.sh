#!/usr/bin/env bash
# The very-low-frequency (VLF) source study, on a pyflow archive.
#
#   examples/vlf.sh ROOT START END [OUTDIR]
#
# Sources that sent at most 10 inbound flows over START..END (YYYY/MM/DD[:HH]) AND contacted a
# single destination are "very low frequency"; their flows are pulled into OUTDIR/vlf-flows.pf.
# In SiLK terms:
#   rwfilter (dates) | rwbag --sip-flows=stdout | rwbagtool --maxcounter=10 --coverset > f.set
#   rwfilter (dates, unique sip,dip) | rwbag --sip-flows=stdout
#       | rwbagtool --maxcounter=1 --coverset > d.set
#   rwsettool --intersect f.set d.set > fd.set
#   rwfilter (dates) --sipset=fd.set --pass=stdout > vlf-flows.rw
# Prints the count at each step. Runs bin/ with the checkout's .venv Python (or $PYTHON).
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

pull=(--data-rootdir="$ROOT" --start-date="$START" --end-date="$END" --type=in,inweb
      --proto=0-)

records=$(pf filter "${pull[@]}" --print-statistics=stdout | awk '{print $4}' | tr -d .)
echo "vlf: $records inbound records from $START to $END"

pf filter "${pull[@]}" --pass=stdout | pf bag --sip-flows="$OUT/sources.bag"
echo "vlf: $(pf bagtool --coverset "$OUT/sources.bag" | pf setcat --count-ips) sources"
pf bagtool --maxcounter=10 --coverset "$OUT/sources.bag" --output-path="$OUT/vlf-f.set"
echo "vlf: $(pf setcat --count-ips "$OUT/vlf-f.set") sources sent at most 10 flows"

pf filter "${pull[@]}" --unique=sip,dip --pass=stdout \
    | pf bag --sip-flows=stdout \
    | pf bagtool --maxcounter=1 --coverset --output-path="$OUT/vlf-d.set"
echo "vlf: $(pf setcat --count-ips "$OUT/vlf-d.set") sources contacted a single destination"

pf settool --intersect "$OUT/vlf-f.set" "$OUT/vlf-d.set" --output-path="$OUT/vlf-fd.set"
echo "vlf: $(pf setcat --count-ips "$OUT/vlf-fd.set") sources are both (very low frequency)"

pf filter "${pull[@]}" --sipset="$OUT/vlf-fd.set" --pass="$OUT/vlf-flows.pf"
flows=$(pf cut --fields=sip --no-titles --delimited "$OUT/vlf-flows.pf" | wc -l)
echo "vlf: $flows flows from them in $OUT/vlf-flows.pf"
