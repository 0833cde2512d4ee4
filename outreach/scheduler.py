"""The daemon: run the config's schedule in the foreground, one run at a time.

Each job of `schedule:` in config.yaml runs on its days at its time (config time zone) through
the same code as `outreach run` (the workspace lock, crash recovery, the ledger). The workspace
is read again for every run, so edits to contacts, campaigns and templates are picked up.

Why the due test is ours: `schedule`'s own time-zone support needs pytz, which outreach does not
depend on, and a daily job in the machine's local time drifts by an hour at every change of
summer time whenever the machine's zone differs from the config's. So `schedule` drives the loop
(a check every second) and `due_jobs` decides, with zoneinfo, in the config time zone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path

import schedule

from outreach.deliver.send import after_run_step, smtp_deliverers
from outreach.feedback.process import feedback_job  # hook: feedback
from outreach.i18n import _
from outreach.ledger import ledger_exists, open_ledger
from outreach.logs import log_summary
from outreach.model.campaigns import load_campaigns
from outreach.model.config import (
    WEEKDAYS,
    ScheduleJob,
    Settings,
    find_config,
    load_settings,
    parse_hhmm,
)
from outreach.model.errors import CampaignError, ConfigError, LockError, OutreachError
from outreach.pipeline.run import RunOptions, RunRequest, perform_run
from outreach.pipeline.summary import RunSummary
from outreach.shards import parse_shard
from outreach.workspace import (
    Workspace,
    campaign_files,
    load_workspace,
    resolve_campaign_args,
)
from outreach.yamlfile import line_for, load_yaml

logger = logging.getLogger("outreach.daemon")

EXIT_OK, EXIT_FAILED, EXIT_NOTHING_DONE = 0, 1, 2
# How often the loop looks at the clock, and how long one sleep lasts, so that a stop request
# is seen within a fraction of a second while idle.
TICK_SECONDS = 1
SLEEP_STEP = 0.2
# A run that found the workspace locked (a run by hand, a cron job) did nothing: try again
# after this long, the same day.
LOCK_RETRY = timedelta(minutes=5)
# The first word of the command line recorded in the ledger for the daemon's runs.
RUN_ARG = "daemon"

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class DaemonJob:
    """One job of the schedule, ready to be checked against the clock."""

    index: int
    spec: ScheduleJob
    at: time_of_day

    @property
    def campaigns(self) -> list[str] | None:
        """The campaign names to run, or None for every campaign."""
        return None if self.spec.campaigns == "all" else list(self.spec.campaigns)

    @property
    def label(self) -> str:
        """How the log and the ledger name the job: its time, campaigns, and `send`."""
        names = "all" if self.campaigns is None else ",".join(self.campaigns)
        # The shard is part of the name: on a shared ledger each machine's job is its own.
        shard = f" shard {self.spec.shard}" if self.spec.shard else ""
        return f"{self.spec.at} {names}" + shard + (" +send" if self.spec.send else "")

    @property
    def marker(self) -> str:
        """The argument that marks this job's runs in the ledger's `runs.args`."""
        return f"job:{self.label}"

    def runs_on(self, day: date) -> bool:
        """Whether the job runs on this day of the week."""
        return not self.spec.days or WEEKDAYS[day.weekday()] in self.spec.days

    def is_due(self, now: datetime) -> bool:
        """Whether the job's time has come today (`now` in the config time zone)."""
        return self.runs_on(now.date()) and now.time() >= self.at


@dataclass(frozen=True, slots=True)
class JobResult:
    """What one job's run did: its summary, or the error that stopped it."""

    job: DaemonJob
    run_date: date
    summary: RunSummary | None  # with the send step's in `summary.sending` for `send: true`
    error: str | None = None

    @property
    def exit_code(self) -> int:
        """As `outreach run`: 0 all went well, 1 some messages failed, 2 nothing was done."""
        if self.summary is None:
            return EXIT_NOTHING_DONE
        return self.summary.exit_code


def schedule_jobs(settings: Settings) -> list[DaemonJob]:
    """The config's schedule as jobs; ConfigError when there is none."""
    if not settings.schedule:
        raise ConfigError(
            _("there is no schedule to run"),
            path=settings.root / "config.yaml",
            field="schedule",
            hint=_('add one, e.g. `schedule: [{campaigns: all, at: "09:30"}]` (see the README)'),
        )
    return [
        DaemonJob(index=i, spec=spec, at=parse_hhmm(spec.at))
        for i, spec in enumerate(settings.schedule)
    ]


def check_schedule(config: Path, *, environ: Mapping[str, str]) -> tuple[Settings, list[DaemonJob]]:
    """Load the config and check every job's campaigns (and SMTP setup, to send); raise if not."""
    settings = load_settings(config)
    jobs = schedule_jobs(settings)
    _data, lines = load_yaml(config, error=ConfigError)
    for job in jobs:
        if job.spec.send:
            # Every day's run would fail at its send step: say so now, while someone watches.
            try:
                smtp_deliverers(settings, environ=environ)
            except OutreachError as exc:
                raise ConfigError(
                    _("`send: true`, but {problem}").format(problem=exc.message),
                    path=config,
                    line=line_for(lines, ("schedule", job.index, "send")),
                    field=f"schedule[{job.index}].send",
                    hint=exc.hint,
                ) from None
        try:
            if job.campaigns is None:
                paths = campaign_files(settings)
            else:
                paths = resolve_campaign_args(settings, job.campaigns)
        except CampaignError as exc:
            key = ("schedule", job.index, "campaigns")
            raise ConfigError(
                exc.message,
                path=config,
                line=line_for(lines, key),
                field=f"schedule[{job.index}].campaigns",
                hint=exc.hint,
            ) from None
        # A broken campaign file stops the daemon at start, where someone is watching.
        load_campaigns(paths, templates_dir=settings.templates_dir)
    return settings, jobs


def completed_today(settings: Settings, *, today: date, jobs: Sequence[DaemonJob]) -> set[str]:
    """The labels of the jobs whose run for `today` is in the ledger and finished."""
    if not ledger_exists(settings):
        return set()
    markers = {job.marker: job.label for job in jobs}
    done: set[str] = set()
    with open_ledger(settings) as ledger:
        # Newest first: a few hundred runs reach back well before today.
        for run in ledger.runs(limit=500):
            if run["run_date"] != today:
                continue
            counts = run["counts"]
            interrupted = isinstance(counts, dict) and counts.get("interrupted")
            args = run["args"]
            if run["ended_at"] is None or interrupted or not isinstance(args, list):
                continue
            if args[:1] == [RUN_ARG]:
                done.update(markers[a] for a in args if a in markers)
    return done


class Daemon:
    """Runs the schedule of one workspace; `request_stop` ends it after the run in progress."""

    def __init__(
        self, *, config: Path | None, clock: Clock, environ: Mapping[str, str] | None = None
    ) -> None:
        self.config = find_config(config)
        self.clock = clock
        # Where the SMTP password variable is read, for jobs with `send: true`.
        self.environ: Mapping[str, str] = environ if environ is not None else {}
        self.settings: Settings | None = None
        self.jobs: list[DaemonJob] = []
        self._stopping = False
        # label → the day the job last ran (or gave up) / the moment a locked-out run retries
        self._ran_on: dict[str, date] = {}
        self._retry_at: dict[str, datetime] = {}
        self._schedule_warned = False
        self._serving = False  # running the schedule, as opposed to --once
        # hook: the bounce mailbox, read every bounces.every_minutes (outreach.feedback)
        self._feedback: Callable[[], object] | None = None

    def request_stop(self) -> None:
        """Stop after the run in progress (safe to call from a signal handler)."""
        if not self._stopping:
            self._stopping = True
            logger.info(_("stop requested: stopping after the run in progress, if any"))

    def now(self) -> datetime:
        """The clock in the config time zone."""
        assert self.settings is not None
        return self.clock().astimezone(self.settings.tz)

    def start(self) -> list[DaemonJob]:
        """Check the config and its schedule, and learn from the ledger what ran today."""
        self.settings, self.jobs = check_schedule(self.config, environ=self.environ)
        # hook: the feedback job, when the config asks for one
        if self.settings.bounces.every_minutes:
            self._feedback = feedback_job(
                self.config, clock=self.clock, environ=self.environ, logger=logger
            )
        today = self.now().date()
        for label in completed_today(self.settings, today=today, jobs=self.jobs):
            self._ran_on[label] = today
        return self.jobs

    def due_jobs(self, now: datetime) -> list[DaemonJob]:
        """The jobs whose time has passed today and that have not run today."""
        due = []
        for job in self.jobs:
            if not job.is_due(now) or self._ran_on.get(job.label) == now.date():
                continue
            retry = self._retry_at.get(job.label)
            if retry is not None and now < retry:
                continue
            due.append(job)
        return due

    def run_due(self) -> list[JobResult]:
        """Run every job that is due now, one after the other; stop early on request."""
        results = []
        for job in self.due_jobs(self.now()):
            if self._stopping:
                break
            results.append(self.run_job(job))
        return results

    def run_job(self, job: DaemonJob) -> JobResult:
        """One run of one job; a failure is logged and returned, never raised."""
        now = self.now()
        today = now.date()
        self._ran_on[job.label] = today
        self._retry_at.pop(job.label, None)
        logger.info(
            _("job {job}: starting the run for {date}").format(
                job=job.label, date=today.isoformat()
            )
        )
        try:
            workspace = load_workspace(self.config, campaigns=job.campaigns)
            self._notice_schedule_change(workspace.settings)
            after = after_run_step(
                workspace, send=job.spec.send, environ=self.environ, today=today, now=now
            )
            shard = parse_shard(job.spec.shard) if job.spec.shard else None
            request = RunRequest(
                today=today,
                now=now,
                options=RunOptions(args=[RUN_ARG, job.marker], shard=shard),
                after=after,
            )
            summary = perform_run(workspace, request)
        except LockError as exc:
            # Nothing was done: another run has the workspace. Try again a little later.
            del self._ran_on[job.label]
            self._retry_at[job.label] = now + LOCK_RETRY
            again = (
                _("trying again in {n} minutes").format(n=LOCK_RETRY.seconds // 60)
                if self._serving
                else _("not run; the next start tries again")
            )
            logger.error(
                _("job {job}: {error} ({again})").format(job=job.label, error=exc, again=again)
            )
            return JobResult(job=job, run_date=today, summary=None, error=str(exc))
        except OutreachError as exc:
            logger.error(_("job {job}: the run failed: {error}").format(job=job.label, error=exc))
            return JobResult(job=job, run_date=today, summary=None, error=str(exc))
        except Exception as exc:
            # The daemon outlives any one run: a bug in a run must not end the schedule.
            logger.exception(_("job {job}: the run failed unexpectedly").format(job=job.label))
            return JobResult(
                job=job, run_date=today, summary=None, error=f"{type(exc).__name__}: {exc}"
            )
        log_summary(logger, summary, label=_("job {job}").format(job=job.label))
        # hook: each run writes its report page, out/reports/<date>.html (issue 13)
        self._write_report(job, workspace, summary, now)
        return JobResult(job=job, run_date=today, summary=summary)

    def _write_report(
        self, job: DaemonJob, workspace: Workspace, summary: RunSummary, now: datetime
    ) -> None:
        from outreach.report import reports_enabled, write_run_report

        if reports_enabled(self.environ):
            path, error = write_run_report(workspace, summary=summary.as_dict(), now=now)
            if error is not None:
                logger.warning(
                    _("job {job}: the report page could not be written: {error}").format(
                        job=job.label, error=error
                    )
                )
            else:
                logger.info(_("job {job}: report {file}").format(job=job.label, file=path))

    def _notice_schedule_change(self, settings: Settings) -> None:
        assert self.settings is not None
        changed = (settings.schedule, settings.timezone) != (
            self.settings.schedule,
            self.settings.timezone,
        )
        if changed and not self._schedule_warned:
            self._schedule_warned = True
            logger.warning(
                _(
                    "the schedule or time zone in {file} changed; restart the daemon to use it"
                ).format(file=self.config)
            )

    def serve(self, *, once: bool = False) -> list[JobResult]:
        """Catch up on what is due, then (unless `once`) run the schedule until stopped."""
        if self.settings is None:
            self.start()
        if once:
            results = self.run_due()
            if self._feedback is not None:  # hook: --once reads the bounce mailbox too
                self._feedback()
            if not results:
                logger.info(_("no job is due"))
            return results
        self._serving = True
        for job in self.jobs:
            days = ",".join(job.spec.days) if job.spec.days else _("every day")
            logger.info(
                _("job {job}: at {time} ({zone}), {days}").format(
                    job=job.label, time=job.spec.at, zone=self.tz_name, days=days
                )
            )
        results = self.run_due()
        scheduler = schedule.Scheduler()
        # The results of later runs are in the log; a long-lived daemon keeps none of them.
        scheduler.every(TICK_SECONDS).seconds.do(self.run_due)
        if self._feedback is not None and self.settings is not None:  # hook: feedback job
            scheduler.every(self.settings.bounces.every_minutes or 60).minutes.do(self._feedback)
        if not self._stopping:
            logger.info(_("waiting for the next job (stop with SIGTERM or Ctrl-C)"))
        while not self._stopping:
            scheduler.run_pending()
            # Short sleeps: a stop request while idle takes effect at once.
            time.sleep(SLEEP_STEP)
        logger.info(_("stopped"))
        return results

    @property
    def tz_name(self) -> str:
        """The config time zone's name."""
        return self.settings.timezone if self.settings is not None else "?"


def worst_exit_code(results: Sequence[JobResult]) -> int:
    """The exit code for several runs: the worst of theirs (0 when nothing ran)."""
    return max((r.exit_code for r in results), default=EXIT_OK)
