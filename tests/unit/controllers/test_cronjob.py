"""CronJob controller on a fake clock: which scheduled time runs (and after an outage, only
the latest), Job names, concurrency policies, starting deadlines, suspension, time zones,
history limits and the status it keeps."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from berth.api import cron
from berth.api.meta import format_time
from berth.api.resources import CRONJOBS, EVENTS, JOBS
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.controllers.cronjob import CronJobController, due, history_victims, job_name
from berth.machinery.controller import Retry

from .harness import Harness, run

KEY = ObjectKey("default/nightly")
T0 = datetime(2026, 1, 1, tzinfo=UTC)  # the harness's FakeClock starts here


def cronjob(schedule: str = "*/5 * * * *", **spec: Any) -> Obj:
    return {
        "metadata": {"name": "nightly", "namespace": "default"},
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Allow",
            "suspend": False,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "metadata": {"labels": {"team": "a"}},
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [{"name": "c", "image": "busybox"}],
                            "restartPolicy": "OnFailure",
                        }
                    }
                },
            },
            **spec,
        },
    }


async def step(h: Harness, c: CronJobController, seconds: float) -> float | None:
    """Advance the clock, sync caches, reconcile; returns the wake-up delay asked for."""
    h.clock.advance(seconds)
    await h.sync()
    try:
        await c.reconcile(KEY)
    except Retry as r:
        await h.sync()
        return r.delay
    await h.sync()
    return None


def jobs(h: Harness) -> list[Obj]:
    return sorted(h.api.objects(JOBS), key=lambda j: j["metadata"]["name"])


def reasons(h: Harness) -> list[str]:
    return [e["reason"] for e in h.api.objects(EVENTS)]


async def finish(h: Harness, job: Obj, type_: str = "Complete") -> None:
    stamp = format_time(h.clock.now())
    status: Obj = {
        "startTime": stamp,
        "conditions": [{"type": type_, "status": "True", "lastTransitionTime": stamp}],
    }
    if type_ == "Complete":
        status["completionTime"] = stamp
    await h.api.patch(
        JOBS,
        job["metadata"]["name"],
        {"status": status},
        namespace="default",
        subresource="status",
    )


# -- pure scheduling ------------------------------------------------------------------------


def test_due_picks_the_latest_missed_time_and_counts_the_misses() -> None:
    sched = cron.parse("*/5 * * * *")
    created = T0
    assert (
        due(
            sched,
            created=created,
            last_schedule=None,
            starting_deadline=None,
            now=T0 + timedelta(minutes=4),
        ).time
        is None
    )
    one = due(
        sched,
        created=created,
        last_schedule=None,
        starting_deadline=None,
        now=T0 + timedelta(minutes=6),
    )
    assert (one.time, one.missed) == (T0 + timedelta(minutes=5), 1)
    # a ten-hour outage: 120 times missed, only the latest runs
    late = due(
        sched,
        created=created,
        last_schedule=T0 + timedelta(minutes=5),
        starting_deadline=None,
        now=T0 + timedelta(hours=10, minutes=7),
    )
    assert late.time == T0 + timedelta(hours=10, minutes=5)
    assert late.missed == 120
    # a starting deadline bounds how far back to look
    bounded = due(
        sched,
        created=created,
        last_schedule=T0,
        starting_deadline=600,
        now=T0 + timedelta(hours=10, minutes=7),
    )
    assert bounded.time == T0 + timedelta(hours=10, minutes=5)
    assert bounded.missed == 2


def test_every_schedules_run_at_a_constant_delay_from_the_last_run() -> None:
    sched = cron.parse("@every 90s")
    assert sched.every == 90
    last = T0 + timedelta(seconds=30)
    one = due(
        sched,
        created=T0,
        last_schedule=last,
        starting_deadline=None,
        now=last + timedelta(seconds=100),
    )
    assert (one.time, one.missed) == (last + timedelta(seconds=90), 1)
    many = due(
        sched,
        created=T0,
        last_schedule=last,
        starting_deadline=None,
        now=last + timedelta(seconds=500),
    )
    assert (many.time, many.missed) == (last + timedelta(seconds=450), 5)
    assert cron.parse("@every 300ms").every == 1


def test_job_names_are_minutes_since_the_epoch() -> None:
    t = datetime(2026, 12, 6, 19, 30, tzinfo=UTC)
    assert job_name("backup", t) == f"backup-{int(t.timestamp()) // 60}"
    assert job_name("backup", t) == "backup-29943090"


def test_history_victims_are_the_oldest_beyond_each_limit() -> None:
    def j(n: str, kind: str, start: int) -> Obj:
        return {
            "metadata": {"name": n},
            "status": {
                "startTime": format_time(T0 + timedelta(minutes=start)),
                "conditions": [{"type": kind, "status": "True"}],
            },
        }

    done = [j(f"ok{i}", "Complete", i) for i in range(5)] + [
        j(f"bad{i}", "Failed", i) for i in range(3)
    ]
    running = {"metadata": {"name": "run"}, "status": {}}
    victims = history_victims([*done, running], 3, 1)
    assert sorted(v["metadata"]["name"] for v in victims) == ["bad0", "bad1", "ok0", "ok1"]


@pytest.mark.parametrize(
    ("schedule", "zone", "ok"),
    [
        ("*/5 * * * *", None, True),
        ("@hourly", None, True),
        ("0 9 * * MON-FRI", "Europe/Berlin", True),
        ("CRON_TZ=Asia/Tokyo 0 9 * * *", None, True),
        ("CRON_TZ=Asia/Tokyo 0 9 * * *", "UTC", False),
        ("* * * * * *", None, False),  # seconds: not kube's grammar
        ("0 0 L * *", None, False),
        ("61 * * * *", None, False),
        ("@every 1h30m", None, True),
        ("@every 1.5h", None, True),
        ("@every 5", None, False),
        ("@every forever", None, False),
        ("0 9 * * *", "Mars/Olympus", False),
        ("0 9 * * *", "Local", False),
        ("0 9 * * *", "../../etc/passwd", False),
    ],
)
def test_schedule_grammar(schedule: str, zone: str | None, ok: bool) -> None:
    if ok:
        cron.parse(schedule, zone)
    else:
        with pytest.raises(cron.ScheduleError):
            cron.parse(schedule, zone)


def test_time_zone_schedules_follow_local_time_across_dst() -> None:
    sched = cron.parse("0 9 * * *", "Europe/Berlin")
    winter = sched.next_after(datetime(2026, 3, 1, tzinfo=UTC))
    summer = sched.next_after(datetime(2026, 4, 1, tzinfo=UTC))
    assert winter == datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert summer == datetime(2026, 4, 1, 7, tzinfo=UTC)


# -- the controller -------------------------------------------------------------------------


def test_fires_on_schedule_records_status_and_wakes_for_the_next_time() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(CRONJOBS, cronjob())
        c = CronJobController(h.ctx)
        wake = await step(h, c, 60)
        assert jobs(h) == []
        assert wake is not None
        assert 239 < wake < 241  # to 00:05
        await step(h, c, wake)
        (job,) = jobs(h)
        scheduled = T0 + timedelta(minutes=5)
        assert job["metadata"]["name"] == job_name("nightly", scheduled)
        assert job["metadata"]["labels"] == {"team": "a"}
        assert job["metadata"]["annotations"] == {
            "batch.kubernetes.io/cronjob-scheduled-timestamp": "2026-01-01T00:05:00Z"
        }
        (ref,) = job["metadata"]["ownerReferences"]
        assert ref["kind"] == "CronJob"
        assert ref["controller"] is True
        cj = h.api.stored(CRONJOBS, KEY)
        assert cj is not None
        assert cj["status"]["lastScheduleTime"] == "2026-01-01T00:05:00Z"
        assert [a["name"] for a in cj["status"]["active"]] == [job["metadata"]["name"]]
        # a second reconcile in the same minute creates nothing more
        await step(h, c, 1)
        assert len(jobs(h)) == 1
        # the Job completes: it leaves status.active, lastSuccessfulTime is set
        await finish(h, job)
        await step(h, c, 1)
        cj = h.api.stored(CRONJOBS, KEY)
        assert cj is not None
        assert "active" not in cj["status"]
        assert cj["status"]["lastSuccessfulTime"] == format_time(
            h.clock.now() - timedelta(seconds=1)
        )
        assert "SuccessfulCreate" in reasons(h)
        assert "SawCompletedJob" in reasons(h)

    run(body)


def test_forbid_skips_while_a_job_runs_and_runs_at_the_next_time() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(CRONJOBS, cronjob(concurrencyPolicy="Forbid"))
        c = CronJobController(h.ctx)
        await step(h, c, 5 * 60 + 1)
        (first,) = jobs(h)
        await step(h, c, 5 * 60)  # 00:10: the first still runs
        assert len(jobs(h)) == 1
        assert "JobAlreadyActive" in reasons(h)
        cj = h.api.stored(CRONJOBS, KEY)
        assert cj is not None
        assert cj["status"]["lastScheduleTime"] == "2026-01-01T00:05:00Z"  # the skip is no run
        await finish(h, first)
        await step(h, c, 1)
        # the skipped 00:10 is still the latest unmet time (no run was recorded): it runs now
        second = job_name("nightly", T0 + timedelta(minutes=10))
        assert [j["metadata"]["name"] for j in jobs(h)][-1] == second
        await step(h, c, 5 * 60)  # 00:15: the 00:10 Job still runs, skipped again
        assert len(jobs(h)) == 2
        await finish(h, next(j for j in jobs(h) if j["metadata"]["name"] == second))
        await step(h, c, 60)
        third = job_name("nightly", T0 + timedelta(minutes=15))
        assert third in [j["metadata"]["name"] for j in jobs(h)]

    run(body)


def test_replace_deletes_the_running_job_first() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(CRONJOBS, cronjob(concurrencyPolicy="Replace"))
        c = CronJobController(h.ctx)
        await step(h, c, 5 * 60 + 1)
        (first,) = jobs(h)
        await step(h, c, 5 * 60)
        names = [j["metadata"]["name"] for j in jobs(h)]
        assert first["metadata"]["name"] not in names
        assert names == [job_name("nightly", T0 + timedelta(minutes=10))]
        deletes = h.api.writes("delete", JOBS)
        assert deletes
        cj = h.api.stored(CRONJOBS, KEY)
        assert cj is not None
        assert [a["name"] for a in cj["status"]["active"]] == names

    run(body)


def test_after_an_outage_only_the_latest_time_runs_with_a_warning() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(CRONJOBS, cronjob("* * * * *"))
        c = CronJobController(h.ctx)
        await step(h, c, 3 * 3600 + 30)  # the controller was down for three hours
        (job,) = jobs(h)
        assert job["metadata"]["name"] == job_name("nightly", T0 + timedelta(hours=3))
        assert "TooManyMissedTimes" in reasons(h)

    run(body)


def test_starting_deadline_skips_a_run_that_is_too_late() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(CRONJOBS, cronjob("0 * * * *", startingDeadlineSeconds=30))
        c = CronJobController(h.ctx)
        await step(h, c, 3600 + 20)  # 20 s late: within the deadline
        assert len(jobs(h)) == 1
        await step(h, c, 3600 + 40)  # 02:01: 60 s late, past the 30 s deadline
        assert len(jobs(h)) == 1

    run(body)


def test_suspended_cronjobs_create_nothing() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(CRONJOBS, cronjob(suspend=True))
        c = CronJobController(h.ctx)
        assert await step(h, c, 3600) is None
        assert jobs(h) == []

    run(body)


def test_time_zone_decides_the_hour() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(CRONJOBS, cronjob("0 9 * * *", timeZone="Asia/Tokyo"))
        c = CronJobController(h.ctx)
        await step(h, c, 3600 - 1)  # 00:59 UTC = 09:59 in Tokyo, but 09:00 came after creation
        assert jobs(h) == []
        wake = await step(h, c, 1)
        assert jobs(h) == []
        assert wake is not None
        # next: 09:00 Tokyo = 00:00 UTC the next day
        assert abs(wake - 23 * 3600) < 1

    run(body)


def test_history_limits_delete_the_oldest_finished_jobs() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(
            CRONJOBS, cronjob("* * * * *", successfulJobsHistoryLimit=1, failedJobsHistoryLimit=0)
        )
        c = CronJobController(h.ctx)
        for i in range(3):
            await step(h, c, 60)
            newest = max(jobs(h), key=lambda j: j["metadata"]["creationTimestamp"])
            await finish(h, newest, "Complete" if i < 2 else "Failed")
        await step(h, c, 1)
        left = jobs(h)
        # one Complete kept (the newest), no Failed kept; the running next one may exist
        kinds = [(j.get("status") or {}).get("conditions", [{}])[0].get("type") for j in left]
        assert kinds.count("Complete") == 1
        assert kinds.count("Failed") == 0

    run(body)


def test_croniter_is_imported_with_the_first_schedule_not_with_the_controller_manager() -> None:
    """Memory: a controller manager without CronJobs does not load croniter and dateutil."""
    script = (
        "import sys\n"
        "import berth.controllers.__main__\n"
        "from berth.api import cron\n"
        "before = 'croniter' in sys.modules\n"
        "fires = cron.parse('*/5 * * * *').next_after(datetime.datetime(2026, 1, 1, 0, 1,"
        " tzinfo=datetime.UTC))\n"
        "print(before, 'croniter' in sys.modules, fires.minute)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import datetime\n" + script],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert out.stdout.split() == ["False", "True", "5"]
