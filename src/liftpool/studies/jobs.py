"""Running a study's jobs: parallel workers, a deadline, timing records and commits of finished results.

A study is a list of :class:`Job` in priority order; each job is one ``liftpool`` subprocess whose
output folder tells whether it is done.  :func:`run_jobs` keeps ``workers`` subprocesses busy
(each with ``threads`` torch threads), always starting the first job in the list that is neither
done, running nor waiting for another job, and that is *expected to end before the deadline*:
a job's expected duration is the median wall time of the finished jobs of the same kind and
setting (:class:`History`, read from ``<out>/jobs/*.json``), else of the same kind, else the
caller's estimate; records made on this CPU come first, and on a CPU with no record of the setting
the other CPUs' times are scaled by how much slower or faster this CPU ran the jobs both have done.
A job resumed part-way (``Job.progress``) is expected to take only the rest, and a job whose
follower must run in the same stretch (``Job.then``: a training run's evaluation, since a clone of
the repository carries no checkpoint) starts only when both are expected to end before the
deadline.  When a job ends, its record is written (atomically) and ``on_done`` runs (the
xl study commits the job's results to git there, :func:`git_commit`).

Examples:
    >>> from datetime import datetime, timezone
    >>> now = datetime(2026, 12, 5, 15, 0, tzinfo=timezone.utc)
    >>> parse_deadline("17:26", now).isoformat()
    '2026-12-05T17:26:00+00:00'
    >>> parse_deadline("01:30", now).isoformat()  # the next 01:30 UTC
    '2026-12-06T01:30:00+00:00'
    >>> History([{"kind": "train", "setting": "max", "wall_s": 60.0, "ok": True}]).expected("train", "lift", 99.0)
    60.0
    >>> History([{"kind": "train", "setting": "max", "wall_s": 30.0, "ok": True, "resumed": True,
    ...           "resumed_from": 0.5}]).expected("train", "max", 99.0)  # the second half took 30 s
    60.0
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..io import atomic_write_json
from .common import past

__all__ = [
    "History",
    "Job",
    "cpu_model",
    "expected_rest",
    "git_commit",
    "git_head",
    "job_progress",
    "parse_deadline",
    "run_jobs",
]


@dataclass(frozen=True)
class Job:
    """One subprocess of a study.

    ``argv()`` gives the arguments after ``liftpool`` when the job starts; ``done()`` reads its
    output; ``blocked()`` says why it cannot start yet (None: it can); ``estimate_s`` is the
    expected wall time before any job of its kind has finished; ``after`` runs in the scheduler
    once the job succeeded (e.g. to export weights); ``progress()`` is the share of the job an
    earlier stretch already did (a resumed training run: its finished epochs / all epochs);
    ``then`` names the job that must run in the same stretch once this one ends (its expected time
    counts towards the deadline when this one starts)."""

    name: str
    kind: str
    setting: str
    out: str
    argv: Callable[[], Sequence[str]]
    done: Callable[[], bool]
    blocked: Callable[[], str | None] = lambda: None
    estimate_s: float = 600.0
    seed: int = 0
    lr: float | None = None
    resumable: bool = False  #: a ``liftpool train`` run: add --resume / --overwrite as its folder requires
    after: Callable[[], Sequence[Path]] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    progress: Callable[[], float] | None = None
    then: str | None = None

    @property
    def file_name(self) -> str:
        return self.name.replace(" ", "_")


def parse_deadline(text: str, now: datetime | None = None) -> datetime:
    """``HH:MM`` -> the next such UTC time after ``now`` (today or tomorrow); ``YYYY-MM-DDTHH:MM``
    -> that UTC time.  Raises ``ValueError`` naming the argument otherwise."""
    now = now or datetime.now(timezone.utc)
    try:
        if "T" in text:
            return datetime.strptime(text, "%Y-%m-%dT%H:%M").replace(tzinfo=timezone.utc)
        hh, mm = (int(x) for x in text.split(":"))
        if not (0 <= hh < 24 and 0 <= mm < 60) or len(text.split(":")[1]) != 2:
            raise ValueError
    except ValueError:
        raise ValueError(f"--deadline must be HH:MM or YYYY-MM-DDTHH:MM (UTC), got {text!r}") from None
    t = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    return t if t > now else t + timedelta(days=1)


class History:
    """Wall times of finished jobs (records with ``kind``, ``setting``, ``wall_s``, ``ok`` and optionally
    ``threads`` and ``cpu``).  A record with ``resumed`` true timed only the rest of an interrupted job:
    with ``resumed_from`` (the share done before, in [0, 1)) it stands for a whole job of
    ``wall_s / (1 - resumed_from)``; without it, it says nothing of a whole one."""

    def __init__(self, records: Sequence[Mapping[str, Any]] = ()) -> None:
        self.records = [dict(r) for r in records]

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> History:
        recs = []
        for p in sorted(Path(folder).glob("*.json")):
            try:
                r = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(r, dict) and isinstance(r.get("wall_s"), (int, float)):
                recs.append(r)
        return cls(recs)

    def add(self, record: Mapping[str, Any]) -> None:
        self.records.append(dict(record))

    @staticmethod
    def _whole(r: Mapping[str, Any]) -> float | None:
        """The wall time of the whole job the record stands for (None: it says nothing of one)."""
        if not r.get("resumed"):
            return float(r["wall_s"])
        done = r.get("resumed_from")
        if isinstance(done, (int, float)) and not isinstance(done, bool) and 0 <= done < 1:
            return float(r["wall_s"]) / (1.0 - float(done))
        return None

    def _usable(self, kind: str, threads: int | None) -> list[tuple[dict[str, Any], float]]:
        """(record, whole-job seconds) of the finished jobs of ``kind``; those made with ``threads``
        threads only, when there are any."""
        mine = [r for r in self.records if r.get("ok") and r.get("kind") == kind]
        ok = [(r, w) for r in mine if (w := self._whole(r)) is not None]
        if threads is not None and any(r.get("threads") == threads for r, _ in ok):
            ok = [(r, w) for r, w in ok if r.get("threads") == threads]
        return ok

    def cpu_factor(self, cpu: str, threads: int | None = None) -> float:
        """How much longer jobs take on ``cpu`` than on the other CPUs of the records: the median,
        over the (kind, setting) pairs done on both, of the ratio of their median wall times
        (1.0 when no pair was done on both)."""
        ratios = []
        for kind in sorted({str(r.get("kind")) for r in self.records}):
            ok = self._usable(kind, threads)
            for setting in {r.get("setting") for r, _ in ok}:
                here = [w for r, w in ok if r.get("setting") == setting and r.get("cpu") == cpu]
                there = [w for r, w in ok if r.get("setting") == setting and r.get("cpu") != cpu]
                if here and there and statistics.median(there) > 0:
                    ratios.append(statistics.median(here) / statistics.median(there))
        return float(statistics.median(ratios)) if ratios else 1.0

    def expected(
        self, kind: str, setting: str, estimate_s: float, threads: int | None = None, cpu: str | None = None
    ) -> float:
        """Median wall time of finished (ok) jobs of this kind and setting, else of this kind, else
        ``estimate_s``; records made with another thread count are used only when no other exists.
        With ``cpu``, that CPU's records come first at each step; the other CPUs' are scaled by
        :meth:`cpu_factor`."""
        ok = self._usable(kind, threads)
        for pick in ([(r, w) for r, w in ok if r.get("setting") == setting], ok):
            if not pick:
                continue
            if cpu is None:
                return float(statistics.median(w for _, w in pick))
            here = [w for r, w in pick if r.get("cpu") == cpu]
            if here:
                return float(statistics.median(here))
            return float(statistics.median(w for _, w in pick)) * self.cpu_factor(cpu, threads)
        return float(estimate_s)


def job_progress(job: Job) -> float:
    """The share of ``job`` an earlier stretch did (``Job.progress``), in [0, 1]; 0 when unknown."""
    try:
        f = float(job.progress()) if job.progress is not None else 0.0
    except (OSError, ValueError):
        return 0.0
    return min(max(f, 0.0), 1.0) if math.isfinite(f) else 0.0


def expected_rest(hist: History, job: Job, threads: int | None = None, cpu: str | None = None) -> float:
    """Expected seconds for what is left of ``job``: :meth:`History.expected` x (1 - its progress)."""
    return hist.expected(job.kind, job.setting, job.estimate_s, threads, cpu) * (1.0 - job_progress(job))


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_head(path: str | os.PathLike[str]) -> str | None:
    """The commit checked out in the repository holding ``path`` (None outside git)."""
    try:
        r = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def git_commit(paths: Sequence[str | os.PathLike[str]], message: str, *, retries: int = 5) -> tuple[bool, str]:
    """Commit exactly ``paths`` (files or folders, ignored files excluded) in their repository.

    Other staged or unstaged changes of the working tree are left alone (``git commit -- paths``).
    Retries while another git process holds the index lock.  Returns ``(committed, message)``:
    ``(False, "nothing to commit")`` when the paths hold no change."""
    existing = [Path(p) for p in paths if Path(p).exists()]
    if not existing:
        return False, "nothing to commit"
    top = subprocess.run(["git", "-C", str(existing[0] if existing[0].is_dir() else existing[0].parent),
                          "rev-parse", "--show-toplevel"], capture_output=True, text=True)  # fmt: skip
    if top.returncode != 0:
        return False, f"not in a git repository: {existing[0]}"
    root = Path(top.stdout.strip())
    rel = [os.path.relpath(p.resolve(), root) for p in existing]
    last = ""
    for attempt in range(retries):
        add = subprocess.run(["git", "-C", str(root), "add", "--", *rel], capture_output=True, text=True)
        if add.returncode == 0:
            diff = subprocess.run(["git", "-C", str(root), "diff", "--cached", "--quiet", "--", *rel])
            if diff.returncode == 0:
                return False, "nothing to commit"
            c = subprocess.run(["git", "-C", str(root), "commit", "-q", "-m", message, "--", *rel],
                               capture_output=True, text=True)  # fmt: skip
            if c.returncode == 0:
                return True, message
            last = c.stderr.strip() or c.stdout.strip()
        else:
            last = add.stderr.strip()
        if "index.lock" not in last:
            break
        time.sleep(2.0 * (attempt + 1))
    return False, last


@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen[bytes]
    start: float
    logf: Any
    expected: float
    slot: int = 0
    commit: str | None = None
    resumed: bool = False
    resumed_from: float | None = 0.0


def _argv_for(job: Job) -> list[str]:
    argv = list(job.argv())
    if job.resumable:
        odir = Path(job.out)
        if (odir / "checkpoints" / "last.pt").exists():
            argv += ["--resume"]
        elif odir.exists() and any(odir.iterdir()):
            argv += ["--overwrite"]
    return argv


def run_jobs(
    plan: Sequence[Job],
    out: str | os.PathLike[str],
    *,
    workers: int = 1,
    threads: int | None = None,
    deadline: datetime | None = None,
    stop_at: str | None = None,
    log: Callable[[str], None] = print,
    on_done: Callable[[Job, dict[str, Any], list[Path]], None] | None = None,
    poll_s: float = 2.0,
    clock: Callable[[], float] = time.time,
    launcher: Sequence[str] = (sys.executable, "-m", "liftpool"),
    pin: bool | None = None,
) -> int:
    """Run the pending jobs of ``plan``; returns the number of jobs that failed or could not start.

    ``<out>/jobs/<name>.json`` gets each finished job's record (kind, setting, seed, lr, start and end
    UTC, wall seconds, return code, threads, CPU, commit), ``<out>/logs/<name>.log`` its output.
    Each job runs ``[*launcher, *job.argv()]`` (default: ``python -m liftpool ...``).  With ``pin``
    (default: when ``workers`` > 1 and the system allows it) worker slot ``i`` is pinned to its own
    ``threads`` CPUs, so side-by-side jobs never share a core while another is idle.
    A job whose expected end lies after ``deadline`` is not started; nor is any job once the UTC
    clock has passed ``stop_at`` (``HH:MM``).  Exits when nothing more can start and nothing runs.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    out = Path(out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "jobs").mkdir(parents=True, exist_ok=True)
    hist = History.load(out / "jobs")
    nthreads = threads or max(1, (os.cpu_count() or 1) // workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(nthreads), "MKL_NUM_THREADS": str(nthreads)}
    cpu = cpu_model()
    code_dir = Path(__file__).resolve().parent  # the commit of the code the jobs import, not of --out
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if pin is None:
        pin = workers > 1 and len(cpus) >= workers * nthreads
    if pin and len(cpus) < workers * nthreads:
        raise ValueError(f"pin needs workers x threads = {workers * nthreads} CPUs, this process may use {len(cpus)}")
    slots = [set(cpus[i * nthreads : (i + 1) * nthreads]) for i in range(workers)] if pin else []
    running: list[_Running] = []
    finished: set[str] = set()
    failed = 0
    waiting_logged: set[str] = set()
    todo = [j for j in plan if not j.done()]
    by_name = {j.name: j for j in plan}

    def expect(j: Job, *, follower: bool = True) -> tuple[float, float]:
        """(expected seconds of this job's rest, of it and of the follower that must run after it)."""
        own = expected_rest(hist, j, nthreads, cpu)
        nxt = by_name.get(j.then) if (follower and j.then) else None
        more = 0.0 if nxt is None or nxt.done() else hist.expected(nxt.kind, nxt.setting, nxt.estimate_s, nthreads, cpu)
        return own, own + more
    log(f"{len(plan) - len(todo)} of {len(plan)} jobs already done; {workers} worker(s) x {nthreads} thread(s)"
        + (f"; deadline {deadline:%Y-%m-%d %H:%M} UTC" if deadline else ""))  # fmt: skip
    stopping = False
    while True:
        # start jobs while a worker is free
        while len(running) < workers and not stopping:
            if past(stop_at):
                log(f"stop: it is past --stop-at {stop_at}; no new job starts")
                stopping = True
                break
            busy = {r.job.name for r in running}
            cand = None
            for j in todo:
                if j.name in busy or j.name in finished or j.done():
                    continue
                why = j.blocked()
                if why is not None:
                    continue
                exp, with_next = expect(j)
                if deadline is not None and clock() + with_next > deadline.timestamp():
                    if j.name not in waiting_logged:
                        then = f" with {j.then}" if with_next > exp else ""
                        log(f"not starting {j.name}: expected {with_next / 60:.0f} min{then} would end after the "
                            f"deadline {deadline:%H:%M} UTC")  # fmt: skip
                        waiting_logged.add(j.name)
                    continue
                cand = (j, exp)
                break
            if cand is None:
                break
            j, exp = cand
            argv = _argv_for(j)
            # the share an earlier stretch did (None: unknown, and the record sets no expectation)
            done_before = (job_progress(j) if j.progress is not None else None) if "--resume" in argv else 0.0
            logf = open(out / "logs" / f"{j.file_name}.log", "a")  # noqa: SIM115  # closed when the job ends
            log(f"start {j.name} (expected {exp / 60:.0f} min): liftpool {' '.join(argv)}")
            slot = min(set(range(workers)) - {r.slot for r in running})
            pin_fn = functools.partial(os.sched_setaffinity, 0, slots[slot]) if pin else None
            proc = subprocess.Popen([*launcher, *argv], stdout=logf, stderr=subprocess.STDOUT, env=env,
                                    preexec_fn=pin_fn)  # fmt: skip
            running.append(_Running(j, proc, clock(), logf, exp, slot, git_head(code_dir), "--resume" in argv,
                                    done_before))  # fmt: skip
        if not running:
            break
        time.sleep(poll_s)
        for r in list(running):
            rc = r.proc.poll()
            if rc is None:
                continue
            running.remove(r)
            r.logf.close()
            end = clock()
            j = r.job
            ok = rc == 0 and j.done()
            diverged = not ok and j.kind == "sweep" and "non-finite loss" in (
                out / "logs" / f"{j.file_name}.log").read_text(errors="replace")  # fmt: skip
            if diverged:
                atomic_write_json(Path(j.out) / "diverged.json", {"lr": j.lr})
                log(f"{j.name} diverged (non-finite loss): recorded, this learning rate is out of the choice")
                ok = True
            files: list[Path] = []
            if ok and j.after is not None:
                files = list(j.after())
            wall = round(end - r.start, 1)
            rec: dict[str, Any] = {
                "name": j.name, "kind": j.kind, "setting": j.setting, "seed": j.seed, "lr": j.lr, "ok": ok, "rc": rc,
                "diverged": diverged,
                "start_utc": datetime.fromtimestamp(r.start, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "end_utc": datetime.fromtimestamp(end, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "wall_s": wall, "threads": nthreads, "workers": workers, "pinned": bool(pin), "cpu": cpu,
                "commit": r.commit, "python": platform.python_version(), "resumed": r.resumed,
            }  # fmt: skip
            if r.resumed and r.resumed_from is not None:
                rec["resumed_from"] = round(r.resumed_from, 4)
            finished.add(j.name)
            if ok:
                atomic_write_json(out / "jobs" / f"{j.file_name}.json", rec)
                hist.add(rec)
            else:
                failed += 1
            left = [x for x in todo if x.name not in finished and not x.done()]
            eta = sum(expect(x, follower=False)[0] for x in left) / workers
            log(f"{'done' if ok else 'FAILED'} {j.name} in {wall / 60:.1f} min (rc {rc}); {len(left)} jobs "
                f"left, ETA {eta / 3600:.1f} h with {workers} worker(s)")  # fmt: skip
            if on_done is not None and ok:
                on_done(j, rec, files)
    left = [j for j in todo if j.name not in finished and not j.done()]
    if left:
        blocked = [j for j in left if j.blocked() is not None]
        log(f"{len(left)} job(s) not run" + (f" ({len(blocked)} waiting for others)" if blocked else ""))
    return failed
