# ruff: noqa: E501  (the table holds SiLK's test commands verbatim)
"""pyflow's bag tools run SiLK's own rwbag/rwbagbuild/rwbagcat/rwbagtool test commands.

Each case is a command line and the MD5 of its output from SiLK 3.19.1's test suite
(src/rwbag/tests/*.pl). The commands run verbatim in a copy of SiLK's test layout: src/rwbag
holds rwbag, rwbagcat... wrappers that run the pyflow tools, ../../tests is the shared copy of
SiLK's fixtures. Cases whose other tool (rwuniq, rwset...) pyflow lacks so far are skipped,
and so are the features pyflow leaves out (prefix maps, country codes).
"""

import hashlib
import os
import subprocess
import sys

import pytest
from conftest import ROOT, SHARED

SILK_TESTS = os.path.join(SHARED, "silk-tests")
TWOWAY = os.path.join(ROOT, "tests", "data", "twoway.conf")

# SiLK program -> (directory in SiLK's tree, pyflow tool)
PROGRAMS = {
    "rwbag": ("rwbag", "pyflow-bag"), "rwbagbuild": ("rwbag", "pyflow-bagbuild"),
    "rwbagcat": ("rwbag", "pyflow-bagcat"), "rwbagtool": ("rwbag", "pyflow-bagtool"),
    "rwset": ("rwset", "pyflow-set"), "rwsetbuild": ("rwset", "pyflow-setbuild"),
    "rwsetcat": ("rwset", "pyflow-setcat"), "rwcut": ("rwcut", "pyflow-cut"),
    "rwuniq": ("rwstats", "pyflow-uniq"),
}

# Not in pyflow: prefix maps and country codes.
UNSUPPORTED = ("pmap", "country", "-cc-", "dcc", "scc")

# The cases run by default (one or two per feature, and every --network-structure case;
# ~35 s); PYFLOW_ALL_SILK_CASES=1 runs every case (~5 minutes: most read the 501,876-record
# data.rwf).
QUICK = {
    "rwbag-sip-flo", "rwbag-sip-flo-v6", "rwbag-dport-flow", "rwbag-flags-flo",
    "rwbag-stime-byt", "rwbagcat-bin-ips-binary", "rwbagcat-sort-count-pro-pkt-dec",
    "rwbagtool-coverset", "rwbagtool-add-b1-b2-v6", "rwbagtool-add-subtract-b1-b2-v4",
    "rwbagtool-cmp-ge-b2-b1-v6", "rwbagtool-divide-b1-b3-v4", "rwbagtool-divide-b1-b3-v6",
    "rwbagtool-maximize-b3-b1-v6", "rwbagtool-minimize-b1-b3-v4",
    "rwbagtool-scalarmultiply-2-b1-v6", "rwbagtool-subtract-b2-b1-v6",
    "rwbagtool-intersect-b2-v6", "rwbagtool-compl-intersect-b2-v4",
    "rwbagbuild-port-overflow", "rwbagbuild-proto-max", "rwbagbuild-setinput-v6",
    "rwbagbuild-baginput-v6",
}
ALL = os.environ.get("PYFLOW_ALL_SILK_CASES", "") not in ("", "0")

CASES = [
    ("rwbag-copy-input", "06898de2a61b8470ffb9267e5231e19a",
     "./rwbag --sport-flows=/dev/null --copy-input=stdout ../../tests/data.rwf | ./rwbag --sport-flows=- | ./rwbagcat --key-format=decimal"),
    ("rwbag-dcc-pkt-v6", "868c375a7c78296db90ead45f2ba6ed8",
     "./rwbag --bag-file=dip-country,sum-packets,- ../../tests/data-v6.rwf | ./rwbagcat --delimited"),
    ("rwbag-dip-byt-v6", "08bb6cd60716b0fc916c6f2c019aa300",
     "./rwbag --dip-bytes=stdout ../../tests/data-v6.rwf | ./rwbagcat"),
    ("rwbag-dip-byt", "9201dc199417ff97c881cfb3b2e4acb0",
     "./rwbag --dip-bytes=stdout ../../tests/data.rwf | ./rwbagcat"),
    ("rwbag-dip-flo-v6", "1d1de3af120623a53952c2ff2eb1c3ff",
     "./rwbag --dip-flows=stdout ../../tests/data-v6.rwf | ./rwbagcat --key-format=zero-padded"),
    ("rwbag-dip-flo", "5971604c7c6cd3afdacd7e2ffc5f00e8",
     "./rwbag --dip-flows=stdout ../../tests/data.rwf | ./rwbagcat --key-format=zero-padded"),
    ("rwbag-dip-pkt-v6", "7eb936c9ca2ae2dd3cd3b8f6464195d9",
     "./rwbag --dip-packets=stdout ../../tests/data-v6.rwf | ./rwbagcat"),
    ("rwbag-dip-pkt", "b6cf9b8197bab2d3306923e637eea9cd",
     "./rwbag --dip-packets=stdout ../../tests/data.rwf | ./rwbagcat --key-format=decimal"),
    ("rwbag-dippmap-byt-v6", "ad5369bd1b803bdd9f577fef2d61178b",
     "./rwbag --pmap-file=../../tests/ip-map-v6.pmap --bag-file=dip-pmap:service-host,bytes,- ../../tests/data-v6.rwf | ./rwbagcat --pmap-file=../../tests/ip-map-v6.pmap"),
    ("rwbag-dport-byt", "0515ec831f02e3e42d63a245b99e8f2a",
     "./rwbag --dport-bytes=- ../../tests/data.rwf | ./rwbagcat --key-format=decimal --no-final-delimiter -"),
    ("rwbag-dport-flo", "de27127e893271d9ff0d30fc7a97182e",
     "./rwbag --dport-flow=stdout ../../tests/data.rwf | ./rwbagcat --key-format=decimal --delimited"),
    ("rwbag-dport-flow", "ed5f39ee863b1077932c845374075b34",
     "./rwbag --dport-flow=stdout ../../tests/data.rwf | ./rwbagcat --key-format=decimal"),
    ("rwbag-dport-pkt", "5bf70ac6a1af5fb734ed6cd75497c3bb",
     "./rwbag --dport-packets=stdout ../../tests/data.rwf | ./rwbagcat --key-format=decimal --no-columns"),
    ("rwbag-dportpmap-pkt", "bc5d48751a71ceea0e633fd9e3c5ebd5",
     "./rwbag --pmap-file=service-port:../../tests/proto-port-map.pmap --bag-file=dport-pmap:service-port,packets,- ../../tests/data.rwf | ./rwbagcat --pmap-file=service-port:../../tests/proto-port-map.pmap"),
    ("rwbag-empty-input-proto", "d41d8cd98f00b204e9800998ecf8427e",
     "./rwbag --proto-bytes=stdout ../../tests/empty.rwf | ./rwbagcat --key-format=decimal"),
    ("rwbag-empty-input", "d41d8cd98f00b204e9800998ecf8427e",
     "./rwbag --sport-flow=stdout ../../tests/empty.rwf | ./rwbagcat --key-format=decimal"),
    ("rwbag-flags-flo", "49e23e404b1b7b59ec75dcf4999154b0",
     "./rwbag --bag-file=flags,records,- ../../tests/data.rwf | ./rwbagcat"),
    ("rwbag-multiple-inputs-v4v6", "124cf19c2ca056abc26494ec2851533d",
     "./rwbag --sport-flow=stdout ../../tests/empty.rwf ../../tests/data-v6.rwf ../../tests/empty.rwf ../../tests/data.rwf | ./rwbagcat --key-format=decimal"),
    ("rwbag-multiple-inputs-v6", "124cf19c2ca056abc26494ec2851533d",
     "./rwbag --sport-flow=stdout ../../tests/empty.rwf ../../tests/data-v6.rwf ../../tests/data-v6.rwf | ./rwbagcat --key-format=decimal"),
    ("rwbag-multiple-inputs", "124cf19c2ca056abc26494ec2851533d",
     "./rwbag --sport-flow=stdout ../../tests/data.rwf ../../tests/empty.rwf ../../tests/data.rwf | ./rwbagcat --key-format=decimal"),
    ("rwbag-proto-byt", "f94064f4f99d8061d01be37e7e97ae12",
     "./rwbag --proto-bytes=- ../../tests/data.rwf | ./rwbagcat --key-format=decimal --minkey=1 --maxkey=20 --zero-counts"),
    ("rwbag-proto-flo", "bd99d454bc9c54a6058eacc5c4f19845",
     "./rwbag --proto-flow=stdout ../../tests/data.rwf | ./rwbagcat --key-format=decimal --minkey=1"),
    ("rwbag-proto-pkt", "295fce4fc7d7579691ac9ba61c899b7a",
     "./rwbag --proto-packets=stdout ../../tests/data.rwf | ./rwbagcat --key-format=decimal --maxkey=17"),
    ("rwbag-scc-byt", "89b3eee74c39e7c06fbf8abc0576b386",
     "./rwbag --bag-file=sip-country,bytes,- ../../tests/data.rwf | ./rwbagcat"),
    ("rwbag-sensor-pkt", "2bf9df159b8d37b4f87bf86a408cc51e",
     "./rwbag --bag-file=sensor,sum-packets,- ../../tests/data.rwf | ./rwbagcat --delimited"),
    ("rwbag-sip-byt-v6", "63287d55706ec1a07641caf92db42cb8",
     "./rwbag --sip-bytes=stdout ../../tests/data-v6.rwf | ./rwbagcat"),
    ("rwbag-sip-byt", "f841785d50322a7b7fa01521a7f69dd6",
     "./rwbag --sip-bytes=stdout ../../tests/data.rwf | ./rwbagcat"),
    ("rwbag-sip-flo-pkt-v6", "e5961c3d9e585cf7addfb98caf6ff50d",
     "./rwbag --sip-flows=/dev/null --sip-packets=stdout ../../tests/data-v6.rwf | ./rwbagcat"),
    ("rwbag-sip-flo-pkt", "595788d5a684ee27601c78ad58547ae4",
     "./rwbag --sip-flows=/dev/null --sip-packets=stdout ../../tests/data.rwf | ./rwbagcat"),
    ("rwbag-sip-flo-v6", "ca78df5022e6feeef8a997203991e3c5",
     "./rwbag --sip-flows=stdout ../../tests/data-v6.rwf | ./rwbagcat"),
    ("rwbag-sip-flo", "bb127fe6e2e3fd68632ad38a0740eab8",
     "./rwbag --sip-flows=stdout ../../tests/data.rwf | ./rwbagcat"),
    ("rwbag-sip-pkt-byt-v6", "e5961c3d9e585cf7addfb98caf6ff50d",
     "./rwbag --sip-packets=stdout --sip-bytes=/dev/null ../../tests/data-v6.rwf | ./rwbagcat"),
    ("rwbag-sip-pkt-byt", "595788d5a684ee27601c78ad58547ae4",
     "./rwbag --sip-packets=stdout --sip-bytes=/dev/null ../../tests/data.rwf | ./rwbagcat"),
    ("rwbag-sip-pkt-v6", "e5961c3d9e585cf7addfb98caf6ff50d",
     "./rwbag --sip-packets=stdout ../../tests/data-v6.rwf | ./rwbagcat"),
    ("rwbag-sip-pkt", "595788d5a684ee27601c78ad58547ae4",
     "./rwbag --sip-packets=stdout ../../tests/data.rwf | ./rwbagcat"),
    ("rwbag-sippmap-flo", "78c950326d968a76e9e3838cee4e0a07",
     "./rwbag --pmap-file=../../tests/ip-map.pmap --bag-file=sip-pmap:service-host,flows,- ../../tests/data.rwf | ./rwbagcat --pmap-file=../../tests/ip-map.pmap"),
    ("rwbag-sport-byt", "809879d4e3d235a9e079613e8c9193fb",
     "./rwbag --sport-bytes=- ../../tests/data.rwf | ./rwbagcat --key-format=decimal --delimited=, -"),
    ("rwbag-sport-flo", "4b544143c91248252629ef2e6acba1c3",
     "./rwbag --sport-flow=stdout ../../tests/data.rwf | ./rwbagcat --key-format=decimal --column-separator=,"),
    ("rwbag-sport-pkt", "5255512c759fb7dffe1baa7cb7e360f7",
     "./rwbag --sport-packets=stdout ../../tests/data.rwf | ./rwbagcat --key-format=decimal --column-separator=, --no-final-delim"),
    ("rwbag-stdin", "06898de2a61b8470ffb9267e5231e19a",
     "cat ../../tests/data.rwf | ./rwbag --sport-flows=stdout | ./rwbagcat --key-format=decimal"),
    ("rwbag-stime-byt", "a44fd193c0cfac68716b93216f61d4ab",
     "./rwbag --bag-file=stime,sum-bytes,stdout ../../tests/data.rwf | ./rwbagcat --key-format=iso-time"),
    ("rwbagbuild-baginput-delim", "06898de2a61b8470ffb9267e5231e19a",
     "../rwstats/rwuniq --fields=sport --flows --no-title --delimited=, ../../tests/data.rwf | ./rwbagbuild --bag-input=stdin --delimiter=, | ./rwbagcat --key-format=decimal"),
    ("rwbagbuild-baginput-v6", "8a369187bb7df583cc306a69463b51eb",
     "../rwstats/rwuniq --fields=sip --flows --no-title ../../tests/data-v6.rwf | ./rwbagbuild --bag-input=stdin | ./rwbagcat --key-format=decimal"),
    ("rwbagbuild-baginput", "06898de2a61b8470ffb9267e5231e19a",
     "../rwstats/rwuniq --fields=sport --flows --no-title ../../tests/data.rwf | ./rwbagbuild --bag-input=stdin | ./rwbagcat --key-format=decimal"),
    ("rwbagbuild-dcc-pkt-v6", "868c375a7c78296db90ead45f2ba6ed8",
     "../rwcut/rwcut --delimited --fields=dip,packets --no-title ../../tests/data-v6.rwf | ./rwbagbuild --bag-input=- --key-type=dip-country | ./rwbagcat --delimited"),
    ("rwbagbuild-dippmap-byt-v6", "ad5369bd1b803bdd9f577fef2d61178b",
     "../rwcut/rwcut --fields=dip,bytes --no-title ../../tests/data-v6.rwf | ./rwbagbuild --bag-input=- --key-type=dip-pmap --pmap-file=../../tests/ip-map-v6.pmap | ./rwbagcat --pmap-file=../../tests/ip-map-v6.pmap"),
    ("rwbagbuild-dportpmap-pkt", "bc5d48751a71ceea0e633fd9e3c5ebd5",
     "../rwcut/rwcut --fields=protocol,dport,packets --column-sep=, --no-title ../../tests/data.rwf | ./rwbagbuild --pmap-file=service-port:../../tests/proto-port-map.pmap --delimiter=, --bag-input=- --key-type=dport-pmap | ./rwbagcat --pmap-file=service-port:../../tests/proto-port-map.pmap"),
    ("rwbagbuild-empty-v6", "d41d8cd98f00b204e9800998ecf8427e",
     "./rwbagbuild --bag-input=/dev/null --key-type=any-IPv6 --counter-type=sum-bytes | ./rwbagcat"),
    ("rwbagbuild-flags-flo", "49e23e404b1b7b59ec75dcf4999154b0",
     "../rwcut/rwcut --integer-tcp-flags --fields=flags --delimited --no-title ../../tests/data.rwf | ./rwbagbuild --bag-input=- --key-type=flags | ./rwbagcat"),
    ("rwbagbuild-output-path", "bd94741f304044e69d2cbeb15eccc2c7",
     "../rwset/rwset --sip-file=stdout ../../tests/data.rwf | ./rwbagbuild --set-input=stdin --output-path=stdout | ./rwbagcat"),
    ("rwbagbuild-port-max", "d558620067865abf4f577eab04a469ec",
     "echo 65535,100 | ./rwbagbuild --bag-input=stdin --delimiter=, --key-type=sport --counter-type=sum-bytes | ./rwbagcat"),
    ("rwbagbuild-port-overflow", "27450d7fbb20c3cfd6a3c59df800b125",
     "echo 65536,100 | ./rwbagbuild --bag-input=stdin --delimiter=, --key-type=dport --counter-type=sum-bytes | ./rwbagcat"),
    ("rwbagbuild-proto-max", "4c9708ca142efb0cca0460cf8709306c",
     "echo 255,100 | ./rwbagbuild --bag-input=stdin --delimiter=, --key-type=protocol --counter-type=sum-bytes | ./rwbagcat"),
    ("rwbagbuild-proto-overflow", "9b83d1b946f3925031d0ed007d2fcf33",
     "echo 256,100 | ./rwbagbuild --bag-input=stdin --delimiter=, --key-type=protocol --counter-type=sum-bytes | ./rwbagcat"),
    ("rwbagbuild-scc-byt", "89b3eee74c39e7c06fbf8abc0576b386",
     "../rwcut/rwcut --no-columns --fields=sip,bytes --no-title ../../tests/data.rwf | ./rwbagbuild --bag-input=- --key-type=sip-country | ./rwbagcat"),
    ("rwbagbuild-sensor-pkt", "2bf9df159b8d37b4f87bf86a408cc51e",
     "../rwcut/rwcut --integer-sensor --fields=sensor,packets --no-title ../../tests/data.rwf | ./rwbagbuild --bag-input=stdin --key-type=sensor | ./rwbagcat --delimited"),
    ("rwbagbuild-setinput-count", "45e47b334ef7f46bde87a39f8767b38a",
     "../rwset/rwset --sip-file=stdout ../../tests/data.rwf | ./rwbagbuild --set-input=stdin --default-count=200 | ./rwbagcat"),
    ("rwbagbuild-setinput-dcc-pkt-v6", "7667722a25f01a02e1387b39e02de03c",
     "../rwset/rwset --dip-file=stdout ../../tests/data-v6.rwf | ./rwbagbuild --set-input=- --key-type=dip-country | ./rwbagcat"),
    ("rwbagbuild-setinput-sippmap-flo", "592a93937ad914f7db5e9970d68b9d41",
     "../rwset/rwset --sip-file=- ../../tests/data.rwf | ./rwbagbuild --pmap-file=../../tests/ip-map.pmap --set-input=stdin --key-type=sip-pmap | ./rwbagcat --pmap-file=../../tests/ip-map.pmap"),
    ("rwbagbuild-setinput-v6", "d8e62920a24d4c799816fec3b51d8ca1",
     "../rwset/rwset --sip-file=stdout ../../tests/data-v6.rwf | ./rwbagbuild --set-input=stdin | ./rwbagcat"),
    ("rwbagbuild-setinput", "bd94741f304044e69d2cbeb15eccc2c7",
     "../rwset/rwset --sip-file=stdout ../../tests/data.rwf | ./rwbagbuild --set-input=stdin | ./rwbagcat"),
    ("rwbagbuild-sippmap-flo", "78c950326d968a76e9e3838cee4e0a07",
     "../rwcut/rwcut --no-final-delimiter --fields=sip --no-title ../../tests/data.rwf | ./rwbagbuild --pmap-file=../../tests/ip-map.pmap --bag-input=- --key-type=sip-pmap | ./rwbagcat --pmap-file=../../tests/ip-map.pmap"),
    ("rwbagbuild-stime-byt", "a44fd193c0cfac68716b93216f61d4ab",
     "../rwcut/rwcut --timestamp-format=epoch,no-msec --fields=stime,bytes --no-title ../../tests/data.rwf | ./rwbagbuild --bag-input=- --key-type=stime | ./rwbagcat --key-format=iso-time"),
    ("rwbagcat-bin-ips-binary-v6", "34122422586fe1a3d58f4b5355dbec6b",
     "./rwbag --sip-flows=stdout ../../tests/data-v6.rwf | ./rwbagcat --key-format=decimal --bin-ips=binary"),
    ("rwbagcat-bin-ips-binary", "34122422586fe1a3d58f4b5355dbec6b",
     "./rwbag --sip-flows=stdout ../../tests/data.rwf | ./rwbagcat --key-format=decimal --bin-ips=binary"),
    ("rwbagcat-bin-ips-decimal-v6", "b2c7b5b96aa9cd93221a8e51ef5977f5",
     "./rwbag --sip-flows=stdout ../../tests/data-v6.rwf | ./rwbagcat --key-format=decimal --bin-ips=decimal"),
    ("rwbagcat-bin-ips-decimal", "b2c7b5b96aa9cd93221a8e51ef5977f5",
     "./rwbag --sip-flows=stdout ../../tests/data.rwf | ./rwbagcat --key-format=decimal --bin-ips=decimal"),
    ("rwbagcat-bin-ips-linear-v6", "08a3cf23bcd728d79f8ca9bd9d43e693",
     "./rwbag --sip-flows=stdout ../../tests/data-v6.rwf | ./rwbagcat --key-format=decimal --bin-ips"),
    ("rwbagcat-bin-ips-linear", "08a3cf23bcd728d79f8ca9bd9d43e693",
     "./rwbag --sip-flows=stdout ../../tests/data.rwf | ./rwbagcat --key-format=decimal --bin-ips"),
    ("rwbagcat-net-struct-12", "919dcedf3ac8a7f374509dd5e8ee8df3",
     "./rwbag --sip-flows=stdout ../../tests/data.rwf | ./rwbagcat --network-structure=12TS,12"),
    ("rwbagcat-net-struct-14-b2-v4", "4b9b009fdb8f60ed7ac69f398884f286",
     "./rwbagcat --network-structure=14TS,14 ../../tests/bag2-v4.bag"),
    ("rwbagcat-net-struct-48-v6", "88e26bd8da3b2027db05421ccd446c00",
     "./rwbag --sip-flows=stdout ../../tests/data-v6.rwf | ./rwbagcat --network-structure=v6:48,T/48,64,123,112"),
    ("rwbagcat-net-struct-60", "f4330ef937eea082f83cb3025cc89eb0",
     "./rwbag --sip-flows=stdout ../../tests/data-v6.rwf | ./rwbagcat --network-structure=v6:T60S"),
    ("rwbagcat-net-struct-ATS", "781378cfb8232cb3cd61977760d6ac86",
     "./rwbag --sip-flows=stdout ../../tests/data.rwf | ./rwbagcat --network-structure=ATS"),
    ("rwbagcat-net-struct-b1-v4-b1-v6", "092a01b378937611b1f2eda303e191a4",
     "./rwbagtool --add ../../tests/bag1-v4.bag ../../tests/bag1-v6.bag | ./rwbagcat --network=v4:TH14/"),
    ("rwbagcat-net-struct-b1-v4", "b3cc08131172a4a54c78f468ea73d7a5",
     "./rwbagcat --network-structure=v4:T/8,13,14,15,16 ../../tests/bag1-v4.bag"),
    ("rwbagcat-net-struct-b1-v6", "0b6f14c21dffd60ceaf7dfbddade3b56",
     "./rwbagcat --network-structure=v6:T/48,61,62,63,64 ../../tests/bag1-v6.bag"),
    ("rwbagcat-net-struct-b2-61-v6", "6c80660db1a00d095f591ff3baf99a95",
     "./rwbagcat --network-structure=v6:61,63T/60,61,63,64,62,41 ../../tests/bag2-v6.bag"),
    ("rwbagcat-net-struct-b2-v4", "61302e0177eac1cfd031e76afebdd163",
     "./rwbagcat --network-structure ../../tests/bag2-v4.bag"),
    ("rwbagcat-net-struct-b2-v6", "cf2b65f8d177f26dc799501b1e87a87a",
     "./rwbagcat --network-structure=v6: ../../tests/bag2-v6.bag"),
    ("rwbagcat-net-struct-v4-b3-v6", "ca7d2624f6a54e48b8eebc0a5f531fe6",
     "./rwbagcat --network-structure=v4: ../../tests/bag3-v6.bag"),
    ("rwbagcat-net-struct-v6", "98ef6e18dd7cb8c06b2d3a3751ffa4ff",
     "./rwbag --sip-flows=stdout ../../tests/data-v6.rwf | ./rwbagcat --network-structure=v6:"),
    ("rwbagcat-net-struct", "f6bdf2e5bb183525d0e938e29204afe9",
     "./rwbag --sip-flows=stdout ../../tests/data.rwf | ./rwbagcat --network-structure"),
    ("rwbagcat-sort-count-pro-pkt-dec", "4fd9be3abee4aa25997ac7a824e7f569",
     "./rwbag --bag-file=proto,packet,stdout ../../tests/data.rwf | ./rwbagcat --sort-counter=decreasing"),
    ("rwbagcat-sort-count-pro-pkt-inc", "9804e8a805598986a20a64c8fbf4e1d3",
     "cat ../../tests/data.rwf | ./rwbag --bag-file=proto,packet,-  | ./rwbagcat --sort-counter=increasing"),
    ("rwbagcat-sort-count-sip-byt", "09c0bf6eeed620548bec055d659c6b04",
     "./rwbag --bag-file=sipv4,byte,stdout ../../tests/data.rwf | ./rwbagcat --key-format=zero-padded --sort-counter"),
    ("rwbagcat-sport-mn-byt", "e937eb6454a1673d4a5f2d0bc54dc091",
     "./rwbag --sport-bytes=stdout ../../tests/data.rwf | ./rwbagcat --key-format=decimal --mincounter=2000"),
    ("rwbagcat-sport-mn-flo", "15df26bd26755222c1f0c9d517b40d1e",
     "./rwbag --sport-flows=stdout ../../tests/data.rwf | ./rwbagcat --key-format=decimal --mincounter=10"),
    ("rwbagcat-sport-mn-pkt", "8dfaf9449901adc345d267d3224166e3",
     "./rwbag --sport-packets=stdout ../../tests/data.rwf | ./rwbagcat --key-format=decimal --mincounter=20"),
    ("rwbagcat-sport-mx-byt", "31f402720bffca63e8dbc9ce239c9fec",
     "./rwbag --sport-bytes=stdout ../../tests/data.rwf | ./rwbagcat --key-format=decimal --maxcounter=2000"),
    ("rwbagcat-sport-mx-flo", "3051bb281de6a970c78085bda26ba2fc",
     "./rwbag --sport-flows=stdout ../../tests/data.rwf | ./rwbagcat --key-format=decimal --maxcounter=10"),
    ("rwbagcat-sport-mx-pkt", "9790c86ecbb95868212e1756b230d256",
     "./rwbag --sport-packets=stdout ../../tests/data.rwf | ./rwbagcat --key-format=decimal --maxcounter=20"),
    ("rwbagtool-add-b1-b2-v4", "e4bfe9a5a80b369c2ce291bad424c49a",
     "./rwbagtool --add ../../tests/bag1-v4.bag ../../tests/bag2-v4.bag | ./rwbagcat"),
    ("rwbagtool-add-b1-b2-v6", "2f4409041c8600e449f8d9b195251f4a",
     "./rwbagtool --add ../../tests/bag1-v6.bag ../../tests/bag2-v6.bag | ./rwbagcat"),
    ("rwbagtool-add-b2-b1-v4", "e4bfe9a5a80b369c2ce291bad424c49a",
     "./rwbagtool --add ../../tests/bag2-v4.bag ../../tests/bag1-v4.bag | ./rwbagcat"),
    ("rwbagtool-add-b2-b1-v6", "2f4409041c8600e449f8d9b195251f4a",
     "./rwbagtool --add ../../tests/bag2-v6.bag ../../tests/bag1-v6.bag | ./rwbagcat"),
    ("rwbagtool-add-subtract-b1-b2-v4", "d41d8cd98f00b204e9800998ecf8427e",
     "./rwbagtool --add ../../tests/bag1-v4.bag ../../tests/bag2-v4.bag | ./rwbagtool --subtract - ../../tests/bag1-v4.bag ../../tests/bag2-v4.bag | ./rwbagcat"),
    ("rwbagtool-add-subtract-b1-b2-v6", "d41d8cd98f00b204e9800998ecf8427e",
     "./rwbagtool --add ../../tests/bag1-v6.bag ../../tests/bag2-v6.bag | ./rwbagtool --subtract - ../../tests/bag1-v6.bag ../../tests/bag2-v6.bag | ./rwbagcat"),
    ("rwbagtool-add", "06898de2a61b8470ffb9267e5231e19a",
     "./rwbag --sport-flows=stdout ../../tests/data.rwf | ./rwbagtool --add stdin | ./rwbagcat --key-format=decimal"),
    ("rwbagtool-cmp-eq-b1-b3-v4", "f5fb134bbf118fc8b4d251731c0d73d9",
     "./rwbagtool --compare=eq ../../tests/bag1-v4.bag ../../tests/bag3-v4.bag | ./rwbagcat"),
    ("rwbagtool-cmp-eq-b1-b3-v6", "94e77eeaeca3413bc7432bee0a68470b",
     "./rwbagtool --compare=eq ../../tests/bag1-v6.bag ../../tests/bag3-v6.bag | ./rwbagcat"),
    ("rwbagtool-cmp-ge-b1-b3-v4", "2a217c1ee9190e3184de05d3f86f859e",
     "./rwbagtool --compare=ge ../../tests/bag1-v4.bag ../../tests/bag3-v4.bag | ./rwbagcat"),
    ("rwbagtool-cmp-ge-b1-b3-v6", "a2234df7f1c77700b0f01bed73bed8aa",
     "./rwbagtool --compare=ge ../../tests/bag1-v6.bag ../../tests/bag3-v6.bag | ./rwbagcat"),
    ("rwbagtool-cmp-ge-b2-b1-v4", "a45f04e123bb05e971f10deebb98b123",
     "./rwbagtool --compare=ge ../../tests/bag2-v4.bag ../../tests/bag1-v4.bag | ./rwbagcat"),
    ("rwbagtool-cmp-ge-b2-b1-v6", "119b469b50b05e45b5cc678d0758d561",
     "./rwbagtool --compare=ge ../../tests/bag2-v6.bag ../../tests/bag1-v6.bag | ./rwbagcat"),
    ("rwbagtool-cmp-le-b1-b2-v4", "a45f04e123bb05e971f10deebb98b123",
     "./rwbagtool --compare=le ../../tests/bag1-v4.bag ../../tests/bag2-v4.bag | ./rwbagcat"),
    ("rwbagtool-cmp-le-b1-b2-v6", "119b469b50b05e45b5cc678d0758d561",
     "./rwbagtool --compare=le ../../tests/bag1-v6.bag ../../tests/bag2-v6.bag | ./rwbagcat"),
    ("rwbagtool-compl-intersect-b2-v4", "c7fb877936559e945a9c8504d263db92",
     "echo 10.4.0.0/14 | ../rwset/rwsetbuild | ./rwbagtool --complement-intersect=- ../../tests/bag2-v4.bag | ./rwbagcat"),
    ("rwbagtool-compl-intersect-b2-v6", "2684cdfcf12338d8ac00883d5994210d",
     "echo 2001:db8:a:4::/62 | ../rwset/rwsetbuild | ./rwbagtool --complement-intersect=- ../../tests/bag2-v6.bag | ./rwbagcat"),
    ("rwbagtool-coverset-record-version-v6", "cf143a278907d7778382c70e3151d673",
     "./rwbag --sip-flows=stdout ../../tests/data-v6.rwf | ./rwbagtool --coverset --ipset-record-version=4 | ../rwset/rwsetcat"),
    ("rwbagtool-coverset-record-version", "3677d3da40803d98298314b69fadf06a",
     "./rwbag --sip-flows=stdout ../../tests/data.rwf | ./rwbagtool --coverset --ipset-record-version=4 | ../rwset/rwsetcat"),
    ("rwbagtool-coverset-v6", "cf143a278907d7778382c70e3151d673",
     "./rwbag --sip-flows=stdout ../../tests/data-v6.rwf | ./rwbagtool --coverset | ../rwset/rwsetcat"),
    ("rwbagtool-coverset", "3677d3da40803d98298314b69fadf06a",
     "./rwbag --sip-flows=stdout ../../tests/data.rwf | ./rwbagtool --coverset | ../rwset/rwsetcat"),
    ("rwbagtool-divide-b1-b3-v4", "171325c6079fb681093f1fe57166d51b",
     "./rwbagtool --divide ../../tests/bag1-v4.bag ../../tests/bag3-v4.bag | ./rwbagcat"),
    ("rwbagtool-divide-b1-b3-v6", "868139cd02a9872e0531053f89db9113",
     "./rwbagtool --divide ../../tests/bag1-v6.bag ../../tests/bag3-v6.bag | ./rwbagcat"),
    ("rwbagtool-intersect-b2-v4", "ebe316ba466c889ed61f531fac957731",
     "echo 10.4.0.0/14 | ../rwset/rwsetbuild | ./rwbagtool --intersect=- ../../tests/bag2-v4.bag | ./rwbagcat"),
    ("rwbagtool-intersect-b2-v6", "0b1be1bcaada57010df3015c118ecc86",
     "echo 2001:db8:a:4::/62 | ../rwset/rwsetbuild | ./rwbagtool --intersect=- ../../tests/bag2-v6.bag | ./rwbagcat"),
    ("rwbagtool-invert-v6", "881b7cd5a2af2884887431d99ece3205",
     "./rwbag --sip-flows=stdout ../../tests/data-v6.rwf | ./rwbagtool --invert | ./rwbagcat --key-format=decimal"),
    ("rwbagtool-invert", "881b7cd5a2af2884887431d99ece3205",
     "./rwbag --sip-flows=stdout ../../tests/data.rwf | ./rwbagtool --invert | ./rwbagcat --key-format=decimal"),
    ("rwbagtool-maxcounter", "3051bb281de6a970c78085bda26ba2fc",
     "./rwbag --sport-flows=stdout ../../tests/data.rwf | ./rwbagtool --maxcounter=10 | ./rwbagcat --key-format=decimal"),
    ("rwbagtool-maximize-b3-b1-v4", "3eea5a63b1065ad5fa29944a38e7228b",
     "./rwbagtool --maximize ../../tests/bag3-v4.bag ../../tests/bag1-v4.bag | ./rwbagcat"),
    ("rwbagtool-maximize-b3-b1-v6", "f0249bb01eecae9f457b9f86fd0f9fd9",
     "./rwbagtool --maximize ../../tests/bag3-v6.bag ../../tests/bag1-v6.bag | ./rwbagcat"),
    ("rwbagtool-maxkey", "a7df9d39382715b6ed361764c439af25",
     "./rwbag --sport-flows=stdout ../../tests/data.rwf | ./rwbagtool --maxkey=1024 | ./rwbagcat --key-format=decimal"),
    ("rwbagtool-mincounter", "15df26bd26755222c1f0c9d517b40d1e",
     "./rwbag --sport-flows=stdout ../../tests/data.rwf | ./rwbagtool --mincounter=10 | ./rwbagcat --key-format=decimal"),
    ("rwbagtool-minimize-b1-b3-v4", "c0647de1d0392b54d606a89337856769",
     "./rwbagtool --minimize ../../tests/bag1-v4.bag ../../tests/bag3-v4.bag | ./rwbagcat"),
    ("rwbagtool-minimize-b1-b3-v6", "a199fac876e27faf76115bc314d6a2b2",
     "./rwbagtool --minimize ../../tests/bag1-v6.bag ../../tests/bag3-v6.bag | ./rwbagcat"),
    ("rwbagtool-minkey", "8aa6d8f3d52d0745ea7134101b861ced",
     "./rwbag --sport-flows=stdout ../../tests/data.rwf | ./rwbagtool --minkey=1024 | ./rwbagcat --key-format=decimal"),
    ("rwbagtool-output-path", "06898de2a61b8470ffb9267e5231e19a",
     "./rwbag --sport-flows=stdout ../../tests/data.rwf | ./rwbagtool --add --output-path=stdout | ./rwbagcat --key-format=decimal"),
    ("rwbagtool-scalarmultiply-2-b1-v4", "e92f0c93dd895f9d18bb55d1fd1e5f3c",
     "./rwbagtool --scalar-multiply=2 ../../tests/bag1-v4.bag | ./rwbagcat"),
    ("rwbagtool-scalarmultiply-2-b1-v6", "8a5fd248c4bdeb265ed9f942a3678fae",
     "./rwbagtool --scalar-multiply=2 ../../tests/bag1-v6.bag | ./rwbagcat"),
    ("rwbagtool-subtract-b1-b2-v4", "a01dd748278895980d69f96d6133a235",
     "./rwbagtool --subtract ../../tests/bag1-v4.bag ../../tests/bag2-v4.bag | ./rwbagcat"),
    ("rwbagtool-subtract-b1-b2-v6", "d1bd2cd4a33b7f75dea2abfc9806b6c6",
     "./rwbagtool --subtract ../../tests/bag1-v6.bag ../../tests/bag2-v6.bag | ./rwbagcat"),
    ("rwbagtool-subtract-b2-b1-v4", "0c820a4e62c1d80e2a3e25a5527f0386",
     "./rwbagtool --subtract ../../tests/bag2-v4.bag ../../tests/bag1-v4.bag | ./rwbagcat"),
    ("rwbagtool-subtract-b2-b1-v6", "97c2a86022351bd60d2a37c70f03c218",
     "./rwbagtool --subtract ../../tests/bag2-v6.bag ../../tests/bag1-v6.bag | ./rwbagcat"),
]


def _available(program):
    from flowtools.tools import TOOLS
    tool = PROGRAMS[program][1]
    return tool in TOOLS and os.path.exists(os.path.join(ROOT, "bin", tool))


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    if not os.path.isdir(SILK_TESTS):
        pytest.skip("shared SiLK test data absent")
    top = tmp_path_factory.mktemp("silk")
    os.symlink(SILK_TESTS, top / "tests")
    for program, (directory, tool) in PROGRAMS.items():
        d = top / "src" / directory
        d.mkdir(parents=True, exist_ok=True)
        script = d / program
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" '
                          f'"{os.path.join(ROOT, "bin", tool)}" "$@"\n')
        script.chmod(0o755)
    return top


def run_case(layout, command):
    env = dict(os.environ, SILK_CONFIG_FILE=TWOWAY, TZ="UTC")
    for k in ("SILK_CLOBBER", "SILK_IP_FORMAT", "SILK_TIMESTAMP_FORMAT", "PYFLOW_BAG_FORMAT"):
        env.pop(k, None)
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True,
                          cwd=layout / "src" / "rwbag", env=env, timeout=120)


@pytest.mark.parametrize("name,md5,command", CASES, ids=[c[0] for c in CASES])
def test_silk_case(layout, name, md5, command):
    if not ALL and name not in QUICK and "net-struct" not in name:
        pytest.skip("one of the full set: PYFLOW_ALL_SILK_CASES=1 runs it")
    if any(u in name or u in command for u in UNSUPPORTED):
        pytest.skip("prefix maps and country codes are not in pyflow")
    programs = {w.rsplit("/", 1)[-1] for w in command.split() if w.startswith(".")}
    missing = sorted(p for p in programs & set(PROGRAMS) if not _available(p))
    if missing:
        pytest.skip(f"pyflow lacks {', '.join(missing)} so far")
    r = run_case(layout, command)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert hashlib.md5(r.stdout).hexdigest() == md5, r.stdout.decode()[:1500]
