"""The collector behind pyflow-collect: decoders, inputs, sensor.conf and packing.

  v5.py          NetFlow v5 datagrams, many decoded at once
  ipfix.py       NetFlow v9 and IPFIX: templates per exporter and domain; the data sets of
                 one template, from many datagrams, decoded together with numpy
  pcap.py        UDP payloads out of pcap and pcapng captures
  sensorconf.py  SiLK's sensor.conf: probes, groups, sensors
  packing.py     the twoway packing logic: a flowtype for every record
  server.py      sockets, files, counters, flushing into the archive
"""


class BadDatagram(Exception):
    """A datagram (or part of it) that cannot be decoded; the message says why.

    Never shown as an error: the collector counts it for its exporter and logs it rate
    limited."""
