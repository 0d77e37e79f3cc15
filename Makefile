# gearspec entry points.  Both main targets set everything up on a fresh Debian
# machine: the Debian packages of the real Gearman peers, a virtualenv, and the
# package with its test extras.
#
#   make report   the main job: the conformance catalog against the reference server (and
#                 real gearmand), rendered to reports/latest/index.html
#   make test     lint and the whole test suite (this is what CI runs)
#   make bench    the benchmark: reference server vs /usr/sbin/gearmand, same load, same run
#   make fuzz     every fuzzer for FUZZ_BUDGET (2m) each: longer than CI's fixed-seed runs
#   make bench-pcap  capture decoding speed over a made-up million-packet capture
#   make bench-catalog  the whole catalog's wall time on inproc, ref and gearmand
#   make mutate   mutation testing: every mutant of reference_server/core and protocol
#                 against the catalog, reports/latest/mutation.json and the score in
#                 the main report (about half an hour)
#   make mutate-fuzz  the fuzzers hunting a sample of the mutants make mutate killed

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# Real Gearman peers the tests talk to (gearmand, the libgearman CLIs, PHP and Perl clients),
# Chromium for the report test, tshark and tcpdump for the capture tests, docker.io for
# the docker: target (the tests start dockerd --iptables=false --bridge=none when needed),
# openssl for the throwaway TLS certificates.
APT_PACKAGES := gearman-job-server gearman-tools gearman-server php-cli php-gearman \
                libgearman-client-perl libjson-xs-perl chromium tshark tcpdump docker.io openssl memcached \
                libgearman-dev libjansson-dev gcc nodejs
# Client libraries under test (conformance/libraries.py), each where its adapter looks:
# the python-gearman forks all install a module named `gearman`, so each gets a
# virtualenv of its own; npm packages go under one prefix.  (gear is a test extra.)
CLIENTS     := .clients
PY_CLIENTS  := pygearman==0.2.6 python3-gearman==0.1.0 py3gearman==0.2.0 aiogear==0.2.6 \
               gearman3==0.2.1
NPM_CLIENTS := gearman@2.1.0 node-gearman@0.2.2

.PHONY: all setup apt venv clients test lint report bench bench-pcap bench-catalog fuzz mutate mutate-fuzz clean

all: test

setup: apt venv clients

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$sudo apt-get install -y --no-install-recommends $$missing >/dev/null \
	  || { $$sudo apt-get update >/dev/null && $$sudo apt-get install -y --no-install-recommends $$missing >/dev/null; }; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

clients: $(CLIENTS)/.installed

$(CLIENTS)/.installed: Makefile | apt
	@for req in $(PY_CLIENTS); do \
	  name=$${req%%==*}; \
	  test -x $(CLIENTS)/venv-$$name/bin/python || $(PYTHON) -m venv $(CLIENTS)/venv-$$name; \
	  $(CLIENTS)/venv-$$name/bin/pip install --quiet --disable-pip-version-check $$req; \
	done
	npm install --silent --no-audit --no-fund --prefix $(CLIENTS)/node $(NPM_CLIENTS)
	touch $@

lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: setup lint
	$(BIN)/pytest -n auto -p no:cacheprovider

# The whole catalog against the reference server, and against real gearmand when it
# is installed; writes reports/latest/{run.json,junit.xml,index.html}.
LATEST  := reports/latest
report: setup
	$(BIN)/gearspec run --target ref $$(test -x /usr/sbin/gearmand && echo --target gearmand) \
	    --json $(LATEST)/run.json --junit $(LATEST)/junit.xml --report $(LATEST) \
	    $$(test -f $(LATEST)/bench.json && echo --bench $(LATEST)/bench.json) \
	    $$(test -f $(LATEST)/mutation.json && echo --mutation $(LATEST)/mutation.json)

bench: setup
	$(BIN)/gearspec bench --target ref --target gearmand --target perl --target gear \
	    --jobs 100000 --repeat 3 --idle-connections 10000 --json $(LATEST)/bench.json

# A longer campaign than CI's derandomised one: every fuzzer, FUZZ_BUDGET each, with the
# example database kept in .hypothesis/fuzz so that the next campaign starts from what
# this one found (hypothesis draws the seeds).  Findings are written to
# $(LATEST)/findings as scenario files.
FUZZ_BUDGET ?= 2m
FUZZ_ARGS    = --budget $(FUZZ_BUDGET) --db .hypothesis/fuzz --save $(LATEST)/findings
FUZZERS      = "parser" "server --target ref" "server --target gearmand" "model --target ref" \
               "model --target gearmand" "diff --target ref --target gearmand"
fuzz: setup
	@found=0; for fuzzer in $(FUZZERS); do \
	  echo "gearspec fuzz $$fuzzer"; \
	  $(BIN)/gearspec fuzz $$fuzzer $(FUZZ_ARGS) || found=1; \
	done; exit $$found

# The figures then go into the main report (make report picks mutation.json up).
mutate: setup
	$(BIN)/gearspec mutate --json $(LATEST)/mutation.json; status=$$?; \
	test $$status -gt 1 || $(MAKE) --no-print-directory report || status=1; exit $$status

# The fuzzers' strength: each hunts MUTANTS_SAMPLE of the mutants make mutate's catalog
# killed, FUZZ_POWER_BUDGET each (the diff fuzzer against gearmand).
MUTANTS_SAMPLE    ?= 30
FUZZ_POWER_BUDGET ?= 60s
mutate-fuzz: setup
	$(BIN)/gearspec mutate --fuzz --from $(LATEST)/mutation.json --sample $(MUTANTS_SAMPLE) \
	  --budget $(FUZZ_POWER_BUDGET) --json $(LATEST)/fuzz-power.json

# Decoding speed of captures: a made-up capture of a million Gearman packets.
bench-pcap: setup
	$(BIN)/python -m conformance.capture.bench

# The whole catalog's wall time per target, with gearmand's measured in the same run.
bench-catalog: setup
	$(BIN)/python -m conformance.catalog_bench

clean:
	rm -rf $(VENV) $(CLIENTS) reports/latest .pytest_cache .hypothesis
