"""The study job runner: workers side by side, the deadline, dependencies, records, commits."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from liftpool.studies.jobs import History, Job, git_commit, parse_deadline, run_jobs

PY = (sys.executable, "-c")


def _job(tmp: Path, name: str, *, sleep: float = 0.0, kind: str = "train", setting: str = "max", rc: int = 0,
         blocked=None, estimate_s: float = 1.0, after=None) -> Job:  # fmt: skip
    """A job whose "command" is a Python snippet: it records its start/end time and writes done.txt."""
    d = tmp / "work" / name.replace(" ", "_")
    code = (f"import time, pathlib; p = pathlib.Path({str(d)!r}); p.mkdir(parents=True, exist_ok=True); "
            f"(p / 'start').write_text(repr(time.time())); time.sleep({sleep}); "
            f"(p / 'end').write_text(repr(time.time())); "
            + ("(p / 'done.txt').write_text('ok'); " if rc == 0 else "") + f"raise SystemExit({rc})")  # fmt: skip
    return Job(name, kind, setting, str(d), lambda: (code,), lambda: (d / "done.txt").exists(),
               blocked or (lambda: None), estimate_s=estimate_s, after=after)  # fmt: skip


def _run(tmp: Path, plan, **kw) -> tuple[int, list[str]]:
    lines: list[str] = []
    n = run_jobs(plan, tmp / "out", launcher=PY, poll_s=0.05, log=lines.append, **kw)
    return n, lines


def test_parse_deadline_forms_and_errors():
    now = datetime(2026, 12, 5, 23, 50, tzinfo=timezone.utc)
    assert parse_deadline("23:55", now) == now + timedelta(minutes=5)
    assert parse_deadline("00:10", now) == now + timedelta(minutes=20)  # the next 00:10 is tomorrow
    assert parse_deadline("2026-12-07T08:00", now).day == 7
    for bad in ("25:00", "7pm", "12:5", "", "12:60"):
        with pytest.raises(ValueError, match="--deadline"):
            parse_deadline(bad, now)


def test_history_prefers_same_setting_then_kind_then_estimate():
    h = History([
        {"kind": "train", "setting": "max", "wall_s": 100.0, "ok": True, "threads": 1},
        {"kind": "train", "setting": "max", "wall_s": 300.0, "ok": True, "threads": 1},
        {"kind": "train", "setting": "lift", "wall_s": 500.0, "ok": True, "threads": 1},
        {"kind": "train", "setting": "lift", "wall_s": 9999.0, "ok": False, "threads": 1},
        {"kind": "train", "setting": "avg", "wall_s": 50.0, "ok": True, "threads": 2},
    ])  # fmt: skip
    assert h.expected("train", "max", 1.0, threads=1) == 200.0
    assert h.expected("train", "lift", 1.0, threads=1) == 500.0  # the failed record is ignored
    assert h.expected("train", "skip", 1.0, threads=1) == 300.0  # median of the kind (100, 300, 500)
    assert h.expected("train", "avg", 1.0, threads=2) == 50.0
    assert h.expected("eval", "max", 42.0) == 42.0
    # a resumed job timed only its rest: never an expectation for a whole one
    h.add({"kind": "eval", "setting": "max", "wall_s": 5.0, "ok": True, "threads": 1, "resumed": True})
    assert h.expected("eval", "max", 42.0) == 42.0
    h.add({"kind": "train", "setting": "skip", "wall_s": 1.0, "ok": True, "threads": 1, "resumed": True})
    assert h.expected("train", "skip", 1.0, threads=1) == 300.0


def test_two_workers_run_side_by_side_and_dependencies_wait(tmp_path):
    a = _job(tmp_path, "train a", sleep=1.0)
    b = _job(tmp_path, "train b", sleep=1.0)
    c = _job(tmp_path, "eval a", kind="eval",
             blocked=lambda: None if (tmp_path / "work" / "train_a" / "done.txt").exists() else "waits for a")
    failed, log = _run(tmp_path, [c, a, b], workers=2, threads=1)
    assert failed == 0, log
    t = {n: (float((tmp_path / "work" / n / "start").read_text()), float((tmp_path / "work" / n / "end").read_text()))
         for n in ("train_a", "train_b", "eval_a")}  # fmt: skip
    assert t["train_a"][0] < t["train_b"][1] and t["train_b"][0] < t["train_a"][1]  # overlapped
    assert t["eval_a"][0] >= t["train_a"][1]  # started after its dependency ended
    rec = json.loads((tmp_path / "out" / "jobs" / "train_a.json").read_text())
    assert rec["ok"] and rec["threads"] == 1 and rec["workers"] == 2 and rec["wall_s"] >= 1.0 and rec["cpu"]
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 2:
        assert rec["pinned"]
    # rerun: everything is done, nothing starts
    failed, log = _run(tmp_path, [c, a, b], workers=2)
    assert failed == 0 and "3 of 3 jobs already done" in log[0] and not any(x.startswith("start") for x in log)


TWO_CPUS = hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 2


@pytest.mark.skipif(not TWO_CPUS, reason="needs 2 CPUs")
def test_pinned_workers_get_one_cpu_each(tmp_path):
    code = "import os, pathlib, time; time.sleep(0.5); pathlib.Path({!r}).write_text(repr(sorted(os.sched_getaffinity(0))))"  # noqa: E501
    plan = [Job(f"train {k}", "train", "max", str(tmp_path / k), (lambda k=k: (code.format(str(tmp_path / k)),)),
                (lambda k=k: (tmp_path / k).exists())) for k in ("a", "b")]  # fmt: skip
    failed, _ = _run(tmp_path, plan, workers=2, threads=1, pin=True)
    masks = sorted((tmp_path / k).read_text() for k in ("a", "b"))
    assert failed == 0 and len(set(masks)) == 2 and all(len(eval(m)) == 1 for m in masks)
    with pytest.raises(ValueError, match="pin needs"):
        run_jobs(plan, tmp_path / "o2", workers=2, threads=len(os.sched_getaffinity(0)), pin=True)


def test_deadline_skips_jobs_that_would_end_after_it_but_starts_those_that_fit(tmp_path):
    jobs_dir = tmp_path / "out" / "jobs"
    jobs_dir.mkdir(parents=True)
    (jobs_dir / "old.json").write_text(json.dumps({"kind": "train", "setting": "max", "wall_s": 3600.0, "ok": True}))
    long = _job(tmp_path, "train max seed1")  # expected 1 h from the record
    short = _job(tmp_path, "eval max seed0", kind="eval", estimate_s=1.0)  # no record: its estimate
    deadline = datetime.now(timezone.utc) + timedelta(minutes=30)
    failed, log = _run(tmp_path, [long, short], deadline=deadline)
    assert failed == 0
    assert not (tmp_path / "work" / "train_max_seed1").exists()
    assert (tmp_path / "work" / "eval_max_seed0" / "done.txt").exists()
    assert any("not starting train max seed1: expected 60 min" in x for x in log)
    # with the deadline further away it runs
    failed, _ = _run(tmp_path, [long, short], deadline=deadline + timedelta(hours=2))
    assert failed == 0 and (tmp_path / "work" / "train_max_seed1" / "done.txt").exists()


def test_stop_at_in_the_past_starts_nothing(tmp_path):
    failed, log = _run(tmp_path, [_job(tmp_path, "train a")], stop_at="00:00")
    assert failed == 0 and any("past --stop-at 00:00" in x for x in log)
    assert not (tmp_path / "work").exists()


def test_failed_job_is_counted_not_recorded_and_after_hook_runs_on_success(tmp_path):
    called = []
    ok = _job(tmp_path, "train ok", after=lambda: called.append(1) or [])
    bad = _job(tmp_path, "train bad", rc=3)
    failed, log = _run(tmp_path, [bad, ok])
    assert failed == 1 and called == [1]
    assert not (tmp_path / "out" / "jobs" / "train_bad.json").exists()
    assert (tmp_path / "out" / "jobs" / "train_ok.json").exists()
    assert any(x.startswith("FAILED train bad") and "rc 3" in x for x in log)


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="workers"):
        run_jobs([], tmp_path, workers=0)
    with pytest.raises(ValueError, match="threads"):
        run_jobs([], tmp_path, threads=0)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def test_git_commit_commits_only_the_given_paths(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.org")
    _git(repo, "config", "user.name", "t")
    (repo / ".gitignore").write_text("res/**/checkpoints/\n")
    (repo / "code.py").write_text("x = 1\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "init")
    (repo / "code.py").write_text("x = 2\n")  # someone's unfinished work, staged
    _git(repo, "add", "code.py")
    run = repo / "res" / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "summary.json").write_text("{}")
    (run / "checkpoints" / "last.pt").write_text("big")
    ok, msg = git_commit([run, repo / "res" / "missing.json"], "study: run finished")
    assert ok, msg
    files = _git(repo, "show", "--name-only", "--format=", "HEAD").split()
    assert files == ["res/run/summary.json"]  # not the checkpoint (ignored), not code.py
    assert "code.py" in _git(repo, "diff", "--cached", "--name-only")  # still staged, untouched
    assert git_commit([run], "again") == (False, "nothing to commit")
    assert git_commit([tmp_path / "nowhere"], "x") == (False, "nothing to commit")


def test_history_load_skips_unreadable_records(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"kind": "eval", "setting": "max", "wall_s": 5.0, "ok": True}))
    (tmp_path / "b.json").write_text("{half")
    assert History.load(tmp_path).expected("eval", "max", 1.0) == 5.0


def test_a_resumed_job_is_recorded_as_such_and_does_not_set_expectations(tmp_path):
    """A training job restarted from its checkpoint times only its rest: its record says ``resumed``,
    and the deadline's expectation for whole jobs of its kind ignores it."""
    import dataclasses

    fresh = dataclasses.replace(_job(tmp_path, "train fresh", setting="avg"), resumable=True)
    again = dataclasses.replace(_job(tmp_path, "train again", setting="avg"), resumable=True)
    ck = Path(again.out) / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "last.pt").write_bytes(b"")
    failed, _ = _run(tmp_path, [fresh, again], workers=2)
    jobs_dir = tmp_path / "out" / "jobs"
    recs = {n: json.loads((jobs_dir / f"{n}.json").read_text()) for n in ("train_fresh", "train_again")}
    assert failed == 0 and recs["train_again"]["resumed"] is True and recs["train_fresh"]["resumed"] is False
    assert "resumed_from" not in recs["train_again"]  # the job cannot say how much was done before
    hist = History.load(tmp_path / "out" / "jobs")
    assert hist.expected("train", "avg", 1.0) == recs["train_fresh"]["wall_s"]


def test_history_prefers_this_cpu_and_scales_the_other_cpus_times():
    """On a CPU with no record of a setting, the other CPU's time is scaled by how much slower this
    CPU ran what both have done; a resumed record with ``resumed_from`` stands for its whole job."""
    h = History([
        {"kind": "train", "setting": "max", "wall_s": 100.0, "ok": True, "cpu": "old"},
        {"kind": "train", "setting": "lift", "wall_s": 200.0, "ok": True, "cpu": "old"},
        {"kind": "eval", "setting": "max", "wall_s": 10.0, "ok": True, "cpu": "old"},
        {"kind": "eval", "setting": "max", "wall_s": 15.0, "ok": True, "cpu": "new"},
    ])  # fmt: skip
    assert h.cpu_factor("new") == 1.5 and h.cpu_factor("other") == 1.0
    assert h.expected("train", "lift", 1.0, cpu="new") == 300.0  # 200 s on the old CPU x 1.5
    assert h.expected("train", "lift", 1.0) == 200.0  # without a CPU: as before
    assert h.expected("eval", "max", 1.0, cpu="new") == 15.0  # this CPU's own record first
    assert h.expected("train", "skip", 1.0, cpu="new") == 225.0  # the kind's median (150) x 1.5
    assert h.expected("sweep", "max", 7.0, cpu="new") == 7.0
    # the second half of a lift run on the new CPU took 160 s: a whole one takes 320 s there
    h.add({"kind": "train", "setting": "lift", "wall_s": 160.0, "ok": True, "cpu": "new", "resumed": True,
           "resumed_from": 0.5})  # fmt: skip
    assert h.expected("train", "lift", 1.0, cpu="new") == 320.0
    assert h.expected("train", "max", 1.0, cpu="new") == 100.0 * statistics.median([1.5, 1.6])


def _progress_job(tmp: Path, name: str, share: float, **kw) -> Job:
    return dataclasses.replace(_job(tmp, name, **kw), progress=lambda: share)


def _records(tmp: Path) -> None:
    """An earlier stretch: a training run took 60 min, an evaluation 20 min."""
    jobs_dir = tmp / "out" / "jobs"
    jobs_dir.mkdir(parents=True)
    for kind, wall in (("train", 3600.0), ("eval", 1200.0)):
        (jobs_dir / f"{kind}.json").write_text(json.dumps({"kind": kind, "setting": "max", "wall_s": wall, "ok": True}))


def test_deadline_counts_the_rest_of_a_resumed_job_and_the_follower_that_must_run_after_it(tmp_path):
    deadline = datetime.now(timezone.utc) + timedelta(minutes=50)
    # 60 min of training alone would not fit; three quarters done, its rest (15 min) does
    _records(tmp_path / "a")
    rest = _progress_job(tmp_path / "a", "train max seed1", 0.75)
    failed, log = _run(tmp_path / "a", [rest], deadline=deadline)
    assert failed == 0 and (tmp_path / "a" / "work" / "train_max_seed1" / "done.txt").exists()
    # with its evaluation (20 min) to follow in the same stretch: 15 + 20 min fit, 35 + 20 do not
    # (the one that fits fails, so no record of this machine changes the expectations)
    _records(tmp_path / "b")
    late = dataclasses.replace(_progress_job(tmp_path / "b", "train max seed3", 5 / 12), then="eval max seed3")
    fits = dataclasses.replace(_progress_job(tmp_path / "b", "train max seed2", 0.75, rc=1), then="eval max seed2")
    evals = [_job(tmp_path / "b", f"eval max seed{k}", kind="eval", blocked=lambda: "waits") for k in (2, 3)]
    failed, log = _run(tmp_path / "b", [late, fits, *evals], deadline=deadline)
    assert failed == 1 and (tmp_path / "b" / "work" / "train_max_seed2" / "start").exists()
    assert not (tmp_path / "b" / "work" / "train_max_seed3").exists()
    assert any("not starting train max seed3: expected 55 min with eval max seed3" in x for x in log)
    # a follower already done costs nothing: the 35 min of training fit
    _records(tmp_path / "c")
    late = dataclasses.replace(_progress_job(tmp_path / "c", "train max seed3", 5 / 12), then="eval max seed3")
    ev = dataclasses.replace(_job(tmp_path / "c", "eval max seed3", kind="eval"), done=lambda: True)
    failed, log = _run(tmp_path / "c", [late, ev], deadline=deadline)
    assert failed == 0 and (tmp_path / "c" / "work" / "train_max_seed3" / "done.txt").exists()


def test_a_resumed_job_that_knows_its_progress_records_it_and_stands_for_a_whole_job(tmp_path):
    half = dataclasses.replace(_job(tmp_path, "train half", setting="lift"), resumable=True, progress=lambda: 0.5)
    ck = Path(half.out) / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "last.pt").write_bytes(b"")
    failed, _ = _run(tmp_path, [half])
    rec = json.loads((tmp_path / "out" / "jobs" / "train_half.json").read_text())
    assert failed == 0 and rec["resumed"] is True and rec["resumed_from"] == 0.5
    hist = History.load(tmp_path / "out" / "jobs")
    assert hist.expected("train", "lift", 1.0) == pytest.approx(2 * rec["wall_s"])
