"""The operator commands `offsets show|reset` and `dlq list|replay`: the result on stdout (a
table, or JSON), problems on stderr, and an exit code (0 done, 1 failed, 2 bad arguments,
3 refused). The work itself is in worker/offsets_admin.py and worker/dlq_admin.py."""

from __future__ import annotations

import argparse
import sys

from worker.commands import event_loop_runner
from worker.config import Settings


def offsets(args: argparse.Namespace, settings: Settings) -> int:
    from worker import offsets_admin as oa
    from worker.kafka import TopicNotFound

    runner = event_loop_runner()
    try:
        if args.action == "show":
            report = runner(oa.show_offsets(settings))
            print(_json(report.to_json()) if args.json else oa.render_report(report))
            return 0
        target: oa.ResetTarget
        if args.to_earliest:
            target = oa.ToEarliest()
        elif args.to_latest:
            target = oa.ToLatest()
        elif args.to_datetime is not None:
            target = oa.ToDatetime(args.to_datetime)
        else:
            target = oa.to_offsets(args.to_offsets)
        outcome = runner(oa.reset_offsets(settings, target, force=args.force, dry_run=args.dry_run))
    except oa.InvalidTarget as exc:
        return _fail(str(exc), 2)
    except oa.ResetRefused as exc:
        return _fail(f"offsets reset refused: {exc}", 3)
    except TopicNotFound as exc:
        return _fail(str(exc), 1)
    print(oa.render_outcome(outcome))
    return 0


def dlq(args: argparse.Namespace, settings: Settings) -> int:
    from worker import dlq_admin as da
    from worker.kafka import TopicNotFound

    runner = event_loop_runner()
    try:
        if args.action == "list":
            listing = runner(da.list_dead_letters(settings, da.Selection(since=args.since)))
            print(_json(listing.to_json()) if args.json else da.render_listing(listing))
            return 0
        selection = da.Selection(frozenset(args.reasons), args.since)
        outcome = runner(
            da.replay_dead_letters(settings, selection, limit=args.limit, dry_run=args.dry_run)
        )
    except (TopicNotFound, da.DlqReadError) as exc:
        return _fail(str(exc), 1)
    print(da.render_replay(outcome))
    return 0


def _fail(message: str, code: int) -> int:
    print(f"delivery-receipts-worker: {message}", file=sys.stderr)
    return code


def _json(value: object) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
