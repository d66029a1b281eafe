"""pyflow-match: label query and response records that belong together (rwmatch)."""

from ..cli import Tool


def _arguments(p):
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="QUERY_FILE RESPONSE_FILE OUTPUT_FILE ('-' or 'stdin' reads one "
                        "input from the standard input; '-' or 'stdout' writes the output "
                        "there).")
    p.add_argument("--relate", action="append", metavar="F1,F2", default=[],
                   help="Records match when field F1 of the query record equals field F2 "
                        "of the response record; repeat for more pairs (at least one). "
                        "See --help-relate.")
    p.add_argument("--help-relate", action="store_true",
                   help="Describe the fields --relate accepts, and exit.")
    p.add_argument("--time-delta", metavar="SECONDS",
                   help="A response may start this many seconds after the query ended "
                        "(fractional, to the millisecond; default 0).")
    p.add_argument("--symmetric-delta", action="store_true",
                   help="Also match a query that starts within a response (plus the delta): "
                        "either side may open the conversation.")
    p.add_argument("--absolute-delta", action="store_true",
                   help="Records join a match while they start before the end of its first "
                        "record plus the delta (the default).")
    p.add_argument("--relative-delta", action="store_true",
                   help="Records join a match while they start within the delta of the "
                        "latest end of its records so far.")
    p.add_argument("--infinite-delta", action="store_true",
                   help="Once a match is made, every further record with the same --relate "
                        "values joins it, whatever its time.")
    p.add_argument("--unmatched", metavar="q|r|b",
                   help="Also write unmatched query (q), response (r) or both (b) records, "
                        "with next-hop IP 0.0.0.0 (queries) and 255.0.0.0 (responses).")
    p.add_argument("--ipv6-policy", metavar="POLICY",
                   help="ignore, asv4, mix (default), force or only: which records take part "
                        "and how (see pyflow-cut). Default from SILK_IPV6_POLICY.")


TOOL = Tool(
    name="pyflow-match",
    summary="Match query records with their response records.",
    description="Reads the records of QUERY_FILE and RESPONSE_FILE and writes to OUTPUT_FILE "
                "the ones that form matches, as rwmatch does: a query and a response match "
                "when every --relate pair of fields is equal and the response starts while "
                "the query is active (plus --time-delta). Each match gets the next number, "
                "written into the next-hop IP field: the low 24 bits hold the match number, "
                "the top byte is 0 for query records and 255 for response records (see the "
                "'match' field of pyflow-cut). Unlike rwmatch, the inputs need not be sorted "
                "by the --relate fields and sTime: they are sorted internally when they are "
                "not (--verbose says so); sorted inputs give exactly rwmatch's output.",
    uses=("compression", "notes", "site"),
    add_arguments=_arguments,
    examples=["pyflow-match --relate=1,2 --relate=2,1 --relate=3,4 --relate=4,3 "
              "--relate=5,5 in.pf out.pf matched.pf",
              "pyflow-match --relate=1,2 --relate=2,1 --time-delta=2.5 --symmetric-delta "
              "--unmatched=b q.pf r.pf - | pyflow-cut --fields=sip,dip,match"],
)


def parse_delta(text):
    """--time-delta seconds as milliseconds (rwmatch accepts 0.001 to 2^31-1)."""
    import re

    from ..errors import FlowError
    s = (text or "").strip()
    if not re.fullmatch(r"(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
        raise FlowError(f"invalid --time-delta '{text}': expected a number of seconds")
    value = float(s)
    if not 0.001 <= value <= 2**31 - 1:
        raise FlowError(f"invalid --time-delta '{text}': must be between 0.001 and "
                        f"{2**31 - 1} seconds")
    return int(1000.0 * value)


def _mode(opts):
    from ..errors import FlowError
    chosen = [m for m in ("absolute", "relative", "infinite") if getattr(opts, f"{m}_delta")]
    if len(chosen) > 1:
        raise FlowError("may only specify one of --absolute-delta, --relative-delta, or "
                        "--infinite-delta")
    return chosen[0] if chosen else "absolute"


def _unmatched(opts):
    from ..errors import FlowError
    if opts.unmatched is None:
        return False, False
    v = opts.unmatched.strip().lower()
    if v not in ("q", "r", "b"):
        raise FlowError(f"invalid --unmatched '{opts.unmatched}': argument must be one of "
                        "q, r, b")
    return v in "qb", v in "rb"


def _read(name, renderer, metas):
    from .. import io, schema
    reader = io.open_flows(name)
    try:
        metas.append(reader.meta)
        batches = [renderer.apply_policy(b) for b in reader.batches()]
    finally:
        reader.close()
    return schema.concat(batches) if batches else schema.empty()


def main(opts):
    import sys

    from .. import cli, io, matching, schema
    from ..errors import FlowError
    from ..render import Renderer

    if opts.help_relate:
        sys.stdout.write(matching.relate_help())
        return 0
    pairs = matching.parse_relate(opts.relate)
    delta = parse_delta(opts.time_delta) if opts.time_delta is not None else 0
    mode = _mode(opts)
    unmatched_q, unmatched_r = _unmatched(opts)
    names = list(opts.files)
    for what in ("QUERY_FILE", "RESPONSE_FILE", "OUTPUT_FILE")[len(names):]:
        raise FlowError(f"missing {what} argument")
    if len(names) > 3:
        raise FlowError(f"too many arguments: '{names[3]}'")
    if names[0] in io.STDIN_NAMES and names[1] in io.STDIN_NAMES:
        raise FlowError("only one of QUERY_FILE and RESPONSE_FILE may be the standard input")
    method, level = cli.compression(opts)
    renderer = Renderer(opts)
    config = cli.site_config(opts, required=False)
    # refuse an unwritable output before reading anything
    io.check_output(names[2])
    metas = []
    query = _read(names[0], renderer, metas)
    response = _read(names[1], renderer, metas)
    if renderer.policy in ("force", "only"):
        query, response = schema.to_v6(query), schema.to_v6(response)

    def report(text):
        if opts.verbose:
            sys.stderr.write(f"{opts.tool_name}: {text}\n")

    out = matching.match(query, response, pairs, delta, opts.symmetric_delta, mode,
                         unmatched_q, unmatched_r, config, report)
    sink = io.FlowSink(names[2], cli.output_meta(opts, metas), method, level)
    try:
        if schema.nrecords(out):
            sink.write(out)
        sink.close()
    except BaseException:
        sink.abort()
        raise
    if opts.verbose:
        labels = out["nhip"] if out["nhip"].ndim == 1 else out["nhip"][:, 1]
        ids = labels.astype("uint64") & 0xFFFFFF
        report(f"{int(ids.max()) if len(ids) else 0} matches, {schema.nrecords(out)} records "
               "written")
    return 0
