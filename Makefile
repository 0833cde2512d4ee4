# Two commands on a fresh machine: `make run` and `make test`. Each builds .venv from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The sample campaigns are run for this date so `make run` always has something to show.
SAMPLE_DATE ?= 2026-11-24
# Debian packages WeasyPrint needs (Pango), the HarfBuzz font subsetter that makes it fast,
# fonts for the letters, poppler-utils (pdftoppm) for the README picture and the report's letter
# thumbnails, dovecot-imapd (the real IMAP server the bounce-mailbox tests start on 127.0.0.1),
# chromium (the report's tests open it in a real, headless browser), postgresql (the shared
# ledger's tests start a real server in a temporary folder) and postfix, for its smtp-sink: a
# real SMTP server that offers PIPELINING (tests and benchmarks/smtp_latency.py); preseeded
# "No configuration", so installing it starts no mail server. dnsmasq-base: the real DNS server
# (the binary alone, no service) that the DKIM and `outreach doctor` tests start on 127.0.0.1;
# spamassassin: the sample's emails are scored by its `spamassassin -L` in the suite (the spamd
# service its recommended spamc brings listens on 127.0.0.1 only; the tests do not use it);
# openssl: the DKIM tests make a key with `openssl genrsa`, as the README tells users to.
APT_PACKAGES := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core poppler-utils \
                dovecot-imapd chromium postgresql postfix dnsmasq-base spamassassin openssl

.PHONY: run test lint bench system-deps clean

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  echo "postfix postfix/main_mailer_type select No configuration" | \
	    $$SUDO debconf-set-selections 2>/dev/null || true; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: system-deps $(VENV)/.installed
	rm -rf out state
	$(BIN)/outreach validate --date $(SAMPLE_DATE)
	$(BIN)/outreach run --all --date $(SAMPLE_DATE)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check outreach tests benchmarks
	$(BIN)/ruff format --check outreach tests benchmarks
	$(BIN)/mypy

# Two test processes: most tests wait on a CLI subprocess, so two keep both cores busy.
# Bytecode first: where PYTHONDONTWRITEBYTECODE is set (CI), every CLI subprocess of the suite
# would otherwise compile the package's sources again (0.15 s of each start).
test: system-deps $(VENV)/.installed-test lint
	$(BIN)/python -m compileall -q outreach
	$(BIN)/pytest -n 2 --cov --cov-report=term:skip-covered

bench: system-deps $(VENV)/.installed
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) out state build *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage
