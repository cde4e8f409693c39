"""``python -m berth.scheduler --kubeconfig FILE``: run the scheduler (leader-elected)."""

from __future__ import annotations

import argparse

from berth import eventloop
from berth.client.http import HttpClient
from berth.machinery.clock import Clock
from berth.machinery.component import add_common_flags, run_component, setup_logging
from berth.machinery.events import EventRecorder
from berth.machinery.informer import InformerFactory
from berth.scheduler.scheduler import DEFAULT_SCHEDULER, Scheduler, SchedulerConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="berth-scheduler", description=__doc__)
    add_common_flags(parser, lease_name="kube-scheduler")
    parser.add_argument("--scheduler-name", default=DEFAULT_SCHEDULER)
    parser.add_argument(
        "--percentage-of-nodes-to-score", type=int, default=0, help="0 = adaptive (kube default)"
    )
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    config = SchedulerConfig(
        scheduler_name=args.scheduler_name,
        percentage_of_nodes_to_score=args.percentage_of_nodes_to_score,
    )

    async def lead(client: HttpClient, clock: Clock) -> None:
        informers = InformerFactory(client, clock=clock)
        recorder = EventRecorder(client, clock, component=args.scheduler_name)
        scheduler = Scheduler(client, informers, clock, recorder=recorder, config=config)
        informers.start()
        try:
            await informers.wait_for_sync()
            await scheduler.run()
        finally:
            await informers.stop()

    eventloop.run(run_component(args, lead, user_agent="berth-scheduler"))


if __name__ == "__main__":
    main()
