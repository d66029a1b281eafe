#!/usr/bin/env bash
# Matched and unmatched inbound/outbound traffic of an archive, with pyflow-match.
#
#   examples/vlf-match.sh ROOT [START END [OUTDIR]]
#
# Pulls the inbound (in, inweb) and outbound (out, outweb) TCP and UDP flows of START..END
# (YYYY/MM/DD[:HH]; default: the first and last hours in the archive), matches each inbound
# flow with the outbound flows that answer it (same 5-tuple reversed, starting within the
# inbound flow or up to 2 s after it, either side may start first) and keeps the unmatched
# ones too; OUTDIR/matched.pf holds them all, labelled in nhIP. In SiLK terms:
#   rwfilter --type=in,inweb --proto=6,17 --pass=stdout | rwsort --fields=1,4,2,3,5,9 > in.rw
#   rwfilter --type=out,outweb --proto=6,17 --pass=stdout | rwsort --fields=2,3,1,4,5,9 > out.rw
#   rwmatch --relate=1,2 --relate=4,3 --relate=2,1 --relate=3,4 --relate=5,5
#       --time-delta=2 --symmetric-delta --unmatched=b in.rw out.rw matched.rw
# (pyflow-match sorts its inputs itself.) Prints the split, counted with pyflow-cut's
# match field. Runs bin/ with the checkout's .venv Python (or $PYTHON).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 4 ] || [ $# -eq 2 ]; then
    echo "usage: $0 ROOT [START END [OUTDIR]]" >&2
    exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$1
OUT=${4:-.}
PY=${PYTHON:-$HERE/.venv/bin/python}
[ -x "$PY" ] || PY=python3
pf() { local tool=$1; shift; "$PY" "$HERE/bin/pyflow-$tool" "$@"; }
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ $# -ge 3 ]; then
    START=$2 END=$3
else
    # hourly files are named ..._YYYYMMDD.HH
    hours=$(find "$ROOT" -type f -name '*_[0-9]*.[0-9][0-9]' | sed 's/.*_\([0-9]\{8\}\)\.\([0-9][0-9]\)$/\1\2/' | sort -u)
    [ -n "$hours" ] || { echo "vlf-match: no hourly files under $ROOT" >&2; exit 1; }
    first=$(head -1 <<<"$hours") last=$(tail -1 <<<"$hours")
    START="${first:0:4}/${first:4:2}/${first:6:2}:${first:8:2}"
    END="${last:0:4}/${last:4:2}/${last:6:2}:${last:8:2}"
fi
dates=(--data-rootdir="$ROOT" --start-date="$START" --end-date="$END" --proto=6,17)

pf filter "${dates[@]}" --type=in,inweb --pass="$work/in.pf"
pf filter "${dates[@]}" --type=out,outweb --pass="$work/out.pf"
pf match --relate=1,2 --relate=4,3 --relate=2,1 --relate=3,4 --relate=5,5 \
    --time-delta=2 --symmetric-delta --unmatched=b \
    "$work/in.pf" "$work/out.pf" "$OUT/matched.pf"

# the match field: '->' inbound (query), '<-' outbound (response); blank number: unmatched
pf cut --fields=match --no-titles --delimited "$OUT/matched.pf" | awk -v s="$START" -v e="$END" '
    { side = substr($0, 1, 2); id = substr($0, 3) + 0
      if (side == "->") { if (id) qm++; else qu++ } else { if (id) rm++; else ru++ }
      if (id > matches) matches = id }
    END {
      printf "vlf-match: %s to %s\n", s, e
      printf "vlf-match: inbound  %d flows: %d matched, %d unmatched\n", qm + qu, qm, qu
      printf "vlf-match: outbound %d flows: %d matched, %d unmatched\n", rm + ru, rm, ru
      printf "vlf-match: %d matches\n", matches }'
