"""pyflow-pack: store flow files and streams into the hourly archive (rwflowpack for files)."""

from ..cli import Tool


def _arguments(p):
    p.add_argument("--sensor", metavar="SENSOR",
                   help="Store every record under this sensor (name or ID) instead of the "
                        "sensor in the record.")
    p.add_argument("--flowtype", metavar="CLASS/TYPE",
                   help="Store every record under this class/type instead of the flowtype "
                        "in the record.")
    p.add_argument("--print-statistics", action="store_true",
                   help="Print to the standard error how many records went into how many "
                        "files.")


TOOL = Tool(
    name="pyflow-pack",
    summary="Store flow records into the hourly archive.",
    description="Reads flow records from the inputs and appends them to the archive under "
                "--data-rootdir, one file per flowtype, sensor and hour of sTime, named by "
                "the site configuration's path-format. Files are created atomically and "
                "appended to safely: a crash never leaves a torn file.",
    uses=("inputs", "site", "compression", "notes"),
    add_arguments=_arguments,
    examples=["pyflow-pack --data-rootdir=/data flows.pf",
              "pyflow-cat old/*.pf | pyflow-pack --data-rootdir=/data --sensor=S3 "
              "--flowtype=all/in"],
)


def main(opts):
    import sys

    from .. import cli, io
    from ..archive import ArchiveWriter, override
    from ..errors import FlowError
    from ..flowfile import DEFAULT_LEVEL, FlowReader

    root = cli.data_rootdir(opts)
    config = cli.site_config(opts)
    sensor = flowtype = None
    if opts.sensor is not None:
        sensor = config.sensor_id(opts.sensor)
    if opts.flowtype is not None:
        cls, _, typ = opts.flowtype.partition("/")
        try:
            flowtype = config.flowtype_id(cls, typ)
        except FlowError:
            raise FlowError(f"invalid --flowtype '{opts.flowtype}': no such class/type "
                            f"in {config.path}") from None
    method, level = cli.compression(opts)
    names = io.input_names(opts.inputs, opts.xargs)
    writer = None
    try:
        for name in names:
            reader = io.open_flows(name)
            if writer is None:
                writer = ArchiveWriter(root, config, cli.output_meta(opts, [reader.meta]),
                                       method, level or DEFAULT_LEVEL, processes=True)
            if isinstance(reader, FlowReader):
                writer.write_blocks(reader, sensor, flowtype)
                reader.close()
                continue
            for batch in reader:
                writer.write(override(batch, sensor, flowtype))
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None and opts.print_statistics:
        sys.stderr.write(f"{opts.tool_name}: {writer.records} records into "
                         f"{len(writer.files)} files under {root}\n")
