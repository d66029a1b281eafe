"""The Python API: flow records as numpy column batches (or a pandas DataFrame).

    import flowtools
    for batch in flowtools.read_flows("in.pf"):          # a file, a stream, or "-"
        print(batch["sip"][:5], batch["bytes"].sum())
    batch = flowtools.archive_flows("/data", start="2024/03/01", end="2024/03/01:05",
                                    types=["in", "out"], sensors=["S0"])
    df = flowtools.to_dataframe(batch)
"""

from . import schema


def read_flows(source, columns=None):
    """Yield batches from a file name, '-' for standard input, or a binary file object."""
    from .flowfile import FlowReader
    from .io import open_flows
    if hasattr(source, "read"):
        reader = FlowReader(source, getattr(source, "name", "<stream>"))
    else:
        reader = open_flows(source)
    yield from reader.batches(columns)


def archive_files(root, start=None, end=None, classes=None, types=None, flowtypes=None,
                  sensors=None, site_config=None):
    """Paths of the archive files a selection names, in SiLK's order (existing only)."""
    from . import dates, select, siteconf
    path = siteconf.find_config_path(site_config, root)
    config = siteconf.load(path)
    hours = dates.hours_for(start, end)
    if sensors is not None:
        sensors = [config.sensor_id(s) for s in sensors]
    return [p for p, exists in select.select_files(
        config, root, hours, flowtypes=flowtypes, sensors=sensors, classes=classes,
        types=types) if exists]


def archive_flows(root, start=None, end=None, columns=None, **selection):
    """All records of an archive selection as one batch."""
    batches = []
    for path in archive_files(root, start, end, **selection):
        batches.extend(read_flows(path, columns))
    return schema.concat(batches) if batches else schema.empty()


def write_flows(path, batches, compression="zstd", notes=()):
    """Write batches as a pyflow file (atomically; '-' writes the standard output)."""
    from .io import FlowSink
    sink = FlowSink(path, {"notes": list(notes), "history": []}, compression)
    try:
        for b in batches:
            sink.write(b)
        sink.close()
    except BaseException:
        sink.abort()
        raise
    return sink.records


def to_dataframe(batch):
    """A pandas DataFrame of a batch; an IPv6 batch's addresses become NAME_hi/NAME_lo."""
    import pandas as pd
    data = {}
    for name, col in batch.items():
        if col.ndim == 2:
            data[name + "_hi"], data[name + "_lo"] = col[:, 0], col[:, 1]
        else:
            data[name] = col
    df = pd.DataFrame(data)
    df["etime"] = schema.etime(batch)
    return df
