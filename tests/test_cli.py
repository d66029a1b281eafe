"""The tools as a user runs them: real subprocesses, pipes, and the error contract."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, assert_batches_equal, random_batch

from flowtools import api, schema

BIN = os.path.join(ROOT, "bin")
CONF = os.path.join(ROOT, "etc", "silk.conf")


def run(tool, *args, input=None, env=None, check=True):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SILK_", "PYFLOW_"))}
    e.update(env or {})
    p = subprocess.run([sys.executable, os.path.join(BIN, tool), *args], input=input,
                       capture_output=True, env=e)
    if check and p.returncode != 0:
        raise AssertionError(f"{tool} {args} exit {p.returncode}: {p.stderr.decode()}")
    return p


def make_file(path, batches):
    api.write_flows(str(path), batches)
    return str(path)


def read(path_or_bytes):
    if isinstance(path_or_bytes, bytes):
        import io
        return schema.concat(list(api.read_flows(io.BytesIO(path_or_bytes))))
    return schema.concat(list(api.read_flows(str(path_or_bytes))))


def test_cat_files_and_pipes(rng, tmp_path):
    a, b = random_batch(rng, 3000), random_batch(rng, 2000, v6=True)
    fa, fb = make_file(tmp_path / "a.pf", [a]), make_file(tmp_path / "b.pf", [b])
    out = run("pyflow-cat", fa, fb).stdout
    got = list(api.read_flows(__import__("io").BytesIO(out)))
    assert_batches_equal(a, got[0])
    assert_batches_equal(b, schema.concat(got[1:]))
    # stdin, '-' and --xargs
    piped = run("pyflow-cat", input=open(fa, "rb").read()).stdout
    assert_batches_equal(a, read(piped))
    piped = run("pyflow-cat", "-", input=open(fa, "rb").read()).stdout
    assert_batches_equal(a, read(piped))
    listed = run("pyflow-cat", "--xargs", input=f"{fa}\n{fb}\n".encode()).stdout
    assert len(read(listed)["stime"]) == 5000


def test_cat_recompresses_and_abbreviations(rng, tmp_path):
    a = random_batch(rng, 3000)
    fa = make_file(tmp_path / "a.pf", [a])
    out = tmp_path / "none.pf"
    run("pyflow-cat", fa, "--compression=none", f"--output={out}")
    assert_batches_equal(a, read(out))
    assert os.path.getsize(out) > os.path.getsize(fa)
    info = run("pyflow-fileinfo", str(out), "--fields=compression").stdout.decode()
    assert "none" in info


def test_history_and_notes(rng, tmp_path):
    fa = make_file(tmp_path / "a.pf", [random_batch(rng, 10)])
    out = tmp_path / "b.pf"
    run("pyflow-cat", fa, f"--output-path={out}", "--note-add=hello there")
    info = run("pyflow-fileinfo", str(out)).stdout.decode()
    assert "pyflow-cat" in info and "hello there" in info
    assert "count-records       10" in info
    out2 = tmp_path / "c.pf"
    run("pyflow-cat", str(out), f"--output-path={out2}", "--note-strip", "--invocation-strip")
    info = run("pyflow-fileinfo", str(out2)).stdout.decode()
    assert "hello" not in info and "command-lines" not in info


def test_fileinfo_layout(rng, tmp_path):
    fa = make_file(tmp_path / "a.pf", [random_batch(rng, 1234)])
    p = run("pyflow-fileinfo", "--fields=1-3,count-records", "--summary", fa, fa)
    lines = p.stdout.decode().splitlines()
    assert lines[:5] == [f"{fa}:", "  format(id)          PYFLOW(flow)",
                         "  version             1.0", "  byte-order          littleEndian",
                         "  count-records       1234"]
    assert lines[-3:-1] == ["  number-files        2", "  total-records       2468"]
    p = run("pyflow-fileinfo", "--fields=count", "--no-titles", fa)
    assert p.stdout == b"1234\n"


def test_pack_into_archive_and_append(rng, tmp_path):
    b = random_batch(rng, 4000)
    b["flowtype"] = rng.choice([0, 1], 4000).astype(np.uint8)
    b["sensor"] = rng.choice([0, 1], 4000).astype(np.uint16)
    fa = make_file(tmp_path / "a.pf", [b])
    root = tmp_path / "arch"
    args = [f"--data-rootdir={root}", f"--site-config-file={CONF}"]
    run("pyflow-pack", *args, fa)
    run("pyflow-pack", *args, fa, "--print-statistics")
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
    assert len(files) == 4
    got = schema.concat([read(f) for f in files])
    assert len(got["stime"]) == 8000
    assert sorted(got["sport"]) == sorted(np.concatenate([b["sport"], b["sport"]]))
    # a fixed sensor and flowtype from the command line
    run("pyflow-pack", *args, fa, "--sensor=S4", "--flowtype=all/inweb")
    webs = [f for d, _, fs in os.walk(root / "inweb") for f in fs]
    assert webs and all("-S4_" in f for f in webs)


def test_selection_api_follows_silk_rules(rng, tmp_path):
    b = random_batch(rng, 100)
    hour = int(b["stime"][0]) // 3_600_000 * 3_600_000
    b["stime"][:] = hour
    b["flowtype"][:] = 0
    b["sensor"][:] = 2
    root = tmp_path / "arch"
    fa = make_file(tmp_path / "a.pf", [b])
    run("pyflow-pack", f"--data-rootdir={root}", f"--site-config-file={CONF}", fa)
    import time
    day = time.strftime("%Y/%m/%d", time.gmtime(hour // 1000))
    files = api.archive_files(str(root), start=day, site_config=CONF)
    assert len(files) == 1
    assert len(api.archive_flows(str(root), start=day, site_config=CONF)["stime"]) == 100
    assert api.archive_files(str(root), start=day, types=["out"], site_config=CONF) == []


@pytest.mark.parametrize("args,message", [
    (["--bogus"], "pyflow-cat: unrecognized option '--bogus'"),
    (["/nonexistent/x.pf"], "pyflow-cat: cannot open /nonexistent/x.pf: No such file"),
    (["--compression-method=zip", "-"], "pyflow-cat: invalid --compression-method 'zip'"),
])
def test_errors_are_one_line(args, message):
    p = run("pyflow-cat", *args, input=b"", check=False)
    assert p.returncode == 1
    assert p.stderr.decode().startswith(message)
    assert "Traceback" not in p.stderr.decode()


def test_bad_input_file_leaves_no_output(rng, tmp_path):
    good = make_file(tmp_path / "a.pf", [random_batch(rng, 5000)])
    data = open(good, "rb").read()
    bad = tmp_path / "bad.pf"
    bad.write_bytes(data[: len(data) - 100])
    out = tmp_path / "out.pf"
    p = run("pyflow-cat", good, str(bad), f"--output-path={out}", check=False)
    assert p.returncode == 1 and "bad.pf: truncated" in p.stderr.decode()
    assert not out.exists() and not [f for f in os.listdir(tmp_path) if f.startswith(".")]
    p = run("pyflow-cat", str(bad), "--verbose", check=False)
    assert "Traceback" in p.stderr.decode()


def test_refuses_to_clobber_and_terminals(rng, tmp_path):
    fa = make_file(tmp_path / "a.pf", [random_batch(rng, 10)])
    out = tmp_path / "o.pf"
    out.write_bytes(b"precious")
    p = run("pyflow-cat", fa, f"--output-path={out}", check=False)
    assert p.returncode == 1 and "will not create new file over existing file" in \
        p.stderr.decode()
    assert out.read_bytes() == b"precious"
    run("pyflow-cat", fa, f"--output-path={out}", env={"SILK_CLOBBER": "1"})
    assert len(read(out)["stime"]) == 10


def test_environment_defaults(rng, tmp_path):
    fa = make_file(tmp_path / "a.pf", [random_batch(rng, 10)])
    out = run("pyflow-cat", fa, env={"SILK_COMPRESSION_METHOD": "none",
                                     "PYFLOW_COMPRESSION_METHOD": "zstd-9"}).stdout
    info = run("pyflow-fileinfo", "-", "--fields=compression", input=out).stdout.decode()
    assert "zstd(9)" in info
    root = tmp_path / "arch"
    run("pyflow-pack", fa, env={"SILK_DATA_ROOTDIR": str(root), "SILK_CONFIG_FILE": CONF})
    assert any(fs for _, _, fs in os.walk(root))


def test_closed_pipe_is_quiet(rng, tmp_path):
    fa = make_file(tmp_path / "a.pf", [random_batch(rng, 200000)])
    cmd = f"{sys.executable} {BIN}/pyflow-cat {fa} {fa} {fa} | head -c 100 > /dev/null"
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True)
    assert p.stderr == b"" and p.returncode in (0, 141)


def test_help_and_version():
    p = run("pyflow-cat", "--help")
    assert b"--output-path" in p.stdout and b"--compression-method" in p.stdout
    assert run("pyflow-pack", "--version").stdout.startswith(b"pyflow-pack: part of pyflow")


def test_man_pages_are_current():
    from flowtools import manpage
    from flowtools.tools import TOOLS
    for name in TOOLS:
        path = os.path.join(ROOT, "man", f"{name}.1")
        assert os.path.exists(path), f"{path} missing: run `make man`"
        with open(path) as f:
            assert f.read() == manpage.render(name), f"{path} is stale: run `make man`"


def test_cat_of_many_files_verifies_them_all(rng, tmp_path):
    batches = [random_batch(rng, 50 + i) for i in range(20)]
    paths = [make_file(tmp_path / f"f{i:02d}.pf", [b]) for i, b in enumerate(batches)]
    listing = tmp_path / "list"
    listing.write_text("\n".join(paths) + "\n")
    out = tmp_path / "all.pf"
    run("pyflow-cat", f"--xargs={listing}", f"--output-path={out}")
    assert_batches_equal(schema.concat(batches), read(out))
    data = bytearray(open(paths[13], "rb").read())
    data[-40] ^= 0xFF
    open(paths[13], "wb").write(bytes(data))
    out2 = tmp_path / "bad.pf"
    p = run("pyflow-cat", f"--xargs={listing}", f"--output-path={out2}", check=False)
    assert p.returncode == 1 and "f13.pf" in p.stderr.decode() and not out2.exists()


def test_outputs_and_archive_files_get_the_usual_mode(tmp_path):
    """Files appear with 0666 less the umask, as open() makes them, not mkstemp's 0600:
    an archive written by one user is read by others."""
    old = os.umask(0o022)
    try:
        root = tmp_path / "a"
        subprocess.run([sys.executable, os.path.join(ROOT, "bin", "pyflow-gen"),
                        f"--data-rootdir={root}", "--flows=500", "--seed=1",
                        "--start-date=2024/03/01", "--hours=1"], check=True)
        files = [p for p in root.rglob("*") if p.is_file() and p.name != "silk.conf"]
        out = tmp_path / "all.pf"
        subprocess.run([sys.executable, os.path.join(ROOT, "bin", "pyflow-cat"),
                        str(files[0]), f"--output-path={out}"], check=True)
        for path in [*files, out]:
            assert path.stat().st_mode & 0o777 == 0o644, path
    finally:
        os.umask(old)
