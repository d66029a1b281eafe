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
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: venv
	rm -rf $(DEMO)
	$(BIN)/pyflow-gen --data-rootdir=$(DEMO)/archive --flows=1000000 --seed=7 \
	    --start-date=2024/03/01 --hours=48 --sensors=S0,S1,S2
	@echo "== archive: files per type"
	@cd $(DEMO)/archive && for t in *; do printf '  %-8s %5d files\n' $$t "$$(find $$t -type f | wc -l)"; done
	@echo "== all flows of the first day, concatenated into one stream and described"
	find $(DEMO)/archive -path '*/2024/03/01/*' -type f | sort \
	    | $(BIN)/pyflow-cat --xargs --print-filenames 2>/dev/null \
	    | $(BIN)/pyflow-fileinfo --fields=count-records,blocks,bytes-per-record,compression-ratio,time-range,command-lines -

test: venv
	$(BIN)/python -m pytest -q
	$(BIN)/ruff check flowtools tests bench bin

lint: venv
	$(BIN)/ruff check flowtools tests bench bin

man: venv
	$(BIN)/python -m flowtools.manpage man

bench: venv
	$(BIN)/python bench/run.py --flows=$(FLOWS)

clean:
	rm -rf $(DEMO) bench/work build *.egg-info
