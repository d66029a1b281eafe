# The two commands of the quick start are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := demo
FLOWS ?= 10000000

.PHONY: venv demo test lint man bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,plot]'  # plots are an optional extra; the tests draw them
	$(BIN)/python -m compileall -q flowtools >/dev/null  # tools start faster with .pyc
	touch $@

demo: venv
	rm -rf $(DEMO)
	$(BIN)/pyflow-gen --data-rootdir=$(DEMO)/archive --flows=1000000 --seed=7 \
	    --start-date=2024/03/01 --hours=48 --sensors=S0,S1,S2
	@echo "== the archive: files per type"
	@cd $(DEMO)/archive && for t in */; do printf '  %-9s %5d files\n' $${t%/} "$$(find $$t -type f | wc -l)"; done
	@echo "== inbound web traffic of 2024/03/01 13:00, all sensors, in one stream"
	$(BIN)/pyflow-filter --data-rootdir=$(DEMO)/archive --start-date=2024/03/01:13 \
	    --type=inweb --all-destination=$(DEMO)/web-13h.pf
	$(BIN)/pyflow-fileinfo --fields=count-records,bytes-per-record,time-range,command-lines \
	    $(DEMO)/web-13h.pf
	@echo "== its first ten flows"
	$(BIN)/pyflow-cut --fields=sip,dip,sport,dport,protocol,packets,bytes,flags,stime,sensor \
	    --num-recs=10 $(DEMO)/web-13h.pf
	@echo "== SYN-only probes of port 445 on the first day: counts, then the first five"
	$(BIN)/pyflow-filter --data-rootdir=$(DEMO)/archive --start-date=2024/03/01 --type=in \
	    --proto=6 --dport=445 --flags-all=S/SA --print-statistics --pass=stdout \
	    | $(BIN)/pyflow-cut --fields=sip,dip,dport,flags,stime --num-recs=5
	@echo "== the top five TCP destination ports of the first day's inbound traffic"
	$(BIN)/pyflow-filter --data-rootdir=$(DEMO)/archive --start-date=2024/03/01 --type=in,inweb \
	    --proto=6 --pass=stdout | $(BIN)/pyflow-stats --fields=dport --count=5
	@echo "== sources that sent at most 3 inbound flows that day (a bag, its cover set)"
	$(BIN)/pyflow-filter --data-rootdir=$(DEMO)/archive --start-date=2024/03/01 --type=in,inweb \
	    --proto=0- --pass=stdout | $(BIN)/pyflow-bag --sip-flows=stdout \
	    | $(BIN)/pyflow-bagtool --maxcounter=3 --coverset | $(BIN)/pyflow-setcat --count-ips
	@echo "== the whole archive, as CSV rows for other tools (first five)"
	find $(DEMO)/archive -type f | $(BIN)/pyflow-cat --xargs \
	    | $(BIN)/pyflow-cut --fields=stime,sip,dip,dport,protocol,bytes --output-format=csv \
	    | head -6

test: venv
	@# the collector's cross-checks run real exporters; their tests skip when these are absent
	@command -v softflowd >/dev/null && command -v fprobe >/dev/null && command -v nfcapd >/dev/null \
	    || (apt-get update -qq && apt-get install -y -qq softflowd fprobe nfdump) >/dev/null 2>&1 \
	    || echo "softflowd/fprobe/nfdump not installed: their tests will be skipped"
	$(BIN)/python -m pytest -q
	$(BIN)/ruff check .

lint: venv
	$(BIN)/ruff check .

man: venv
	$(BIN)/python -m flowtools.manpage man

bench: venv
	$(BIN)/python bench/run.py --flows=$(FLOWS)

clean:
	rm -rf $(DEMO) bench/work build *.egg-info
