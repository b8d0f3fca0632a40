"""What the demo shows while it runs: lines in the command's styles, a training job's progress bar, and a
spinner while it waits for anything else (a readiness check, a gate). On a terminal the bar and the
spinner redraw one line; in a log (`make demo > demo.log`) they print a line now and then instead."""

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.core.management.base import CommandError, OutputWrapper
from django.core.management.color import Style

from demo.settings import DEMO
from training.models import TrainingJob

BAR_WIDTH = 30
FINISHED = {TrainingJob.Status.SUCCEEDED, TrainingJob.Status.FAILED, TrainingJob.Status.CANCELLED}


@dataclass
class Terminal:
    """The demo command's output and its styles."""

    stdout: OutputWrapper
    style: Style

    def say(self, text: str) -> None:
        self._write(text)

    def heading(self, text: str) -> None:
        self._write(self.style.MIGRATE_HEADING(text))

    def success(self, text: str) -> None:
        self._write(self.style.SUCCESS(text))

    def warning(self, text: str) -> None:
        self._write(self.style.WARNING(text))

    @property
    def is_tty(self) -> bool:
        return self.stdout.isatty()

    def redraw(self, text: str) -> None:
        """Replace the current line on a terminal; a new line in a log."""
        self.stdout.write(("\r" if self.is_tty else "\n") + text, ending="")
        self.stdout.flush()

    def _write(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()


def progress_line(job: TrainingJob) -> str:
    """[#########.....] step 12/32 loss 0.4210 KL 0.0123 ETA 04:10"""
    filled = int(BAR_WIDTH * job.step / job.total_steps)
    eta = f"{int(job.eta_seconds // 60):02d}:{int(job.eta_seconds % 60):02d}" if job.eta_seconds else "--:--"
    kl = f" KL {job.kl:.4f}" if job.kl is not None else ""
    loss = job.loss if job.loss is not None else float("nan")
    return (f"  [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] step {job.step}/{job.total_steps} "
            f"loss {loss:.4f}{kl} ETA {eta}")


def follow(term: Terminal, job: TrainingJob) -> None:
    """Draw the job's progress bar until it finishes, then say how it ended and how long it took."""
    last = None
    while True:
        job.refresh_from_db()
        if job.status in FINISHED:
            break
        if job.status == TrainingJob.Status.RUNNING and job.total_steps:
            line = progress_line(job)
            # A log gets every fifth step and the last, not a line a second.
            if line != last and (term.is_tty or job.step % 5 == 0 or job.step == job.total_steps):
                term.redraw(line)
                last = line
        time.sleep(DEMO.poll_seconds)
    term.stdout.write("")
    if job.started_at and job.finished_at:
        term.say(f"  job {job.pk} {job.status} in {(job.finished_at - job.started_at).total_seconds():.0f} s")
    else:
        term.say(f"  job {job.pk} {job.status}")


def wait(term: Terminal, done: Callable[[], bool], what: str, timeout: float | None = None) -> float:
    """Poll `done` until it holds, with a spinner; a CommandError after `timeout` seconds. Returns the
    seconds waited."""
    timeout = DEMO.wait_timeout_seconds if timeout is None else timeout
    start = time.monotonic()
    spinner = "|/-\\"
    i = 0
    if not term.is_tty:
        term.say(f"  waiting for {what} …")
    while not done():
        if time.monotonic() - start > timeout:
            raise CommandError(f"Timed out waiting for {what}; is a worker running?")
        if term.is_tty:
            term.redraw(f"  waiting for {what} {spinner[i % 4]} {time.monotonic() - start:.0f} s")
        i += 1
        time.sleep(DEMO.poll_seconds)
    if term.is_tty:
        term.redraw(" " * 70 + "\r")
    return time.monotonic() - start
