# Two commands on a fresh machine: `make run` and `make test`. Each builds .venv from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The sample campaigns are run for this date so `make run` always has something to show.
SAMPLE_DATE ?= 2026-11-24
# What running needs (about 7 MB): Pango for WeasyPrint, the HarfBuzz font subsetter that makes
# it fast, fonts for the letters and poppler-utils (pdftoppm) for the report's letter thumbnails.
RUN_PACKAGES := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core poppler-utils
# What only the tests need: the real servers they start on 127.0.0.1. dovecot-imapd (the
# bounce-mailbox tests), chromium (the report's tests open it in a real, headless browser),
# postgresql (the shared ledger's tests start a real server in a temporary folder) and postfix,
# for its smtp-sink: a real SMTP server that offers PIPELINING (tests and
# benchmarks/smtp_latency.py); preseeded "No configuration", so installing it starts no mail
# server. dnsmasq-base: the real DNS server (the binary alone, no service) that the DKIM and
# `outreach doctor` tests start; spamassassin: the sample's emails are scored by its
# `spamassassin -L` in the suite (the spamd service its recommended spamc brings listens on
# 127.0.0.1 only; the tests do not use it); openssl: the DKIM tests make a key with
# `openssl genrsa`, as the README tells users to; gettext: its `msgfmt --check` checks the
# message catalogs in the suite.
TEST_PACKAGES := dovecot-imapd chromium postgresql postfix dnsmasq-base spamassassin openssl gettext
# `make run` works on the repository's own sample unless WORKSPACE=DIR names another workspace:
# the sample's out/ and state/ are deleted first (so every run shows the same thing) and it runs
# for SAMPLE_DATE; a workspace of yours is run for today, and nothing in it is deleted.
WORKSPACE ?=
RUN_DATE  := $(if $(WORKSPACE),,--date $(SAMPLE_DATE))

# Installs the Debian packages of $(1) that are missing (sudo unless root), after the debconf
# answers $(2) if any.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  if [ -n "$(2)" ]; then echo "$(2)" | $$SUDO debconf-set-selections 2>/dev/null || true; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

# WeasyPrint's floor: render/letter.py reads WeasyPrint's private `page._page_box`, so
# pyproject.toml bounds it (weasyprint>=68,<71) and the lowest release it allows is tested too,
# with the lowest pydyf, tinycss2, cssselect2 and tinyhtml5 that release accepts, in a venv of
# its own, on the tests that lay out and print letters. Keep FLOOR_PINS' weasyprint at
# pyproject's lower bound (tests/test_makefile.py checks it).
FLOOR_VENV  := .venv-floor
FLOOR_PINS  := weasyprint==68.0 pydyf==0.11.0 tinycss2==1.5.0 cssselect2==0.8.0 tinyhtml5==2.0.0
FLOOR_TESTS := tests/test_letter.py tests/test_printing.py tests/test_households.py \
               tests/test_return_address.py tests/test_cli_letters.py

.PHONY: run test coverage test-floor lint catalogs bench system-deps system-deps-run system-deps-test clean

system-deps: system-deps-run system-deps-test

system-deps-run:
	$(call apt_install,$(RUN_PACKAGES))

system-deps-test: system-deps-run
	$(call apt_install,$(TEST_PACKAGES),postfix postfix/main_mailer_type select No configuration)

# pip compiles what it installs one file at a time (two thirds of an install's time); the
# packages are installed without, then compiled by compileall on every core (a few seconds).
# The bytecode matters: where PYTHONDONTWRITEBYTECODE is set, nothing would ever cache it.
PIP_INSTALL = $(1)/pip install -q --no-compile
COMPILE     = $(1)/python -m compileall -q -j 0 $(dir $(1))lib

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(call PIP_INSTALL,$(BIN)) -e .
	$(call COMPILE,$(BIN))
	touch $@

# The tests' venv in one install (one editable build, one compile: about 6 s less than building
# the running venv first); it holds everything running needs, so it counts for `make run` too.
$(VENV)/.installed-test: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(call PIP_INSTALL,$(BIN)) -e '.[test]'
	$(call COMPILE,$(BIN))
	touch $(VENV)/.installed $@

run: system-deps-run $(VENV)/.installed
ifeq ($(WORKSPACE),)
	rm -rf out state
else
	@test -f "$(WORKSPACE)/config.yaml" || { echo "$(WORKSPACE): no config.yaml there (WORKSPACE= names a workspace folder)"; exit 2; }
endif
	cd "$(or $(WORKSPACE),.)" && "$(abspath $(BIN))/outreach" validate $(RUN_DATE)
	cd "$(or $(WORKSPACE),.)" && "$(abspath $(BIN))/outreach" run --all $(RUN_DATE)

# The tool's own words: extract the marked messages (babel.cfg), bring outreach/locale's es and
# en catalogs up to them and compile the .mo files (shipped compiled; the suite checks they are
# current). Translate what it leaves untranslated in outreach/locale/es/LC_MESSAGES/outreach.po.
catalogs: $(VENV)/.installed
	$(BIN)/python -m outreach.catalogs

lint: $(VENV)/.installed-test
	$(BIN)/ruff check outreach tests benchmarks
	$(BIN)/ruff format --check outreach tests benchmarks
	$(BIN)/mypy

# Six test processes on two cores: most tests wait on a CLI run, a server or a clock, so six
# keep both cores busy, also while another program takes one of them (the suite's share of a
# busy machine grows with the processes it runs). Measured with one core kept busy: 4 processes
# 4 min 3 s, 6 processes 3 min 18 s, 8 processes 3 min 56 s (each starts its own servers).
# Bytecode first: where PYTHONDONTWRITEBYTECODE is set (CI), every CLI subprocess of the suite
# would otherwise compile the package's sources again (0.15 s of each start).
PYTEST := $(BIN)/pytest -n 6
test: system-deps-test $(VENV)/.installed-test lint
	$(BIN)/python -m compileall -q outreach
	$(PYTEST)

# The same suite with coverage measuring every test process and every CLI run (a third more
# CPU; pyproject.toml's fail_under is the floor). CI runs it after `make test`.
coverage: system-deps-test $(VENV)/.installed-test
	$(BIN)/python -m compileall -q outreach
	$(PYTEST) --cov --cov-report=term:skip-covered

test-floor: system-deps-test
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(call PIP_INSTALL,$(FLOOR_VENV)/bin) -e '.[test]' $(FLOOR_PINS)
	$(call COMPILE,$(FLOOR_VENV)/bin)
	$(FLOOR_VENV)/bin/python -c "import weasyprint, pydyf, tinycss2; print('WeasyPrint', weasyprint.__version__, 'pydyf', pydyf.__version__, 'tinycss2', tinycss2.__version__)"
	$(FLOOR_VENV)/bin/pytest -n 2 -p no:cacheprovider $(FLOOR_TESTS)

bench: system-deps-test $(VENV)/.installed
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(FLOOR_VENV) out state build *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
