#!/usr/bin/env bash
# Build a pyflow archive from the marx honeypot log (Data-Driven Security's marx.csv.gz).
#
#   examples/marx-import.sh ROOT [MARX_CSV]
#
# Writes ROOT/silk.conf naming the honeypots (the distinct `host` values, in sorted order)
# as sensors 0-8 of class all, type in; converts the log with pyflow-tuc --preset=marx
# (each row one single-packet flow: sIP from `src`, dIP 0.0.0.0, bytes 0, ICMP type in
# dPort) and stores it with pyflow-pack. Works from a plain checkout: it runs bin/ with the
# checkout's .venv Python when there is one (else python3, or $PYTHON).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 ROOT [MARX_CSV]" >&2
    exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$1
CSV=${2:-$HERE/../shared/data/marx/marx.csv.gz}
PY=${PYTHON:-$HERE/.venv/bin/python}
[ -x "$PY" ] || PY=python3
if [ ! -r "$CSV" ]; then
    echo "$0: cannot read the marx log '$CSV'" >&2
    exit 1
fi

mkdir -p "$ROOT"
# the honeypots: the distinct values of the second column
mapfile -t HOSTS < <(gzip -cdf "$CSV" | tail -n +2 | cut -d, -f2 | sort -u)
{
    echo "# the marx honeypots (written by examples/marx-import.sh)"
    echo "version 2"
    for i in "${!HOSTS[@]}"; do
        echo "sensor $i ${HOSTS[$i]}"
    done
    echo "class all"
    echo "    sensors ${HOSTS[*]}"
    echo "    type 0 in"
    echo "    default-types in"
    echo "end class"
    echo "default-class all"
} > "$ROOT/silk.conf"
echo "marx-import: ${#HOSTS[@]} sensors in $ROOT/silk.conf"

# convert and store; pyflow-pack reports what it stored on the standard error
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "$PY" "$HERE/bin/pyflow-tuc" --preset=marx --site-config-file="$ROOT/silk.conf" \
        --class=all --type=in "$CSV" 2>"$log" \
    | "$PY" "$HERE/bin/pyflow-pack" --data-rootdir="$ROOT" \
        --site-config-file="$ROOT/silk.conf" --print-statistics 2>>"$log"; then
    cat "$log" >&2
    exit 1
fi
cat "$log"
records=$(sed -n 's/^pyflow-pack: \([0-9]*\) records.*/\1/p' "$log")
echo "marx-import: stored $records records under $ROOT"
