"""crm's Celery app with every queue and exchange named after a prefix, so that test runs
sharing one broker never see each other's tasks:

    python -m tests.reliability.runner <prefix> worker --concurrency=2 ...
    python -m tests.reliability.runner <prefix> dispatch <batch size>

`dispatch` is beat's dispatcher in batches of the size given, each batch's sends published as
it commits, and then every one of them published a second time (as a broker that redelivers
would): a second copy of a task must change nothing.
"""

import sys


def configure(prefix: str):
    import django

    django.setup()
    from crm.celery import app

    sends, beat = f"{prefix}.celery", f"{prefix}.beat"
    app.conf.update(
        task_default_queue=sends,
        task_default_exchange=sends,
        task_default_routing_key=sends,
        task_queues={
            sends: {"exchange": sends, "routing_key": sends},
            beat: {"exchange": beat, "routing_key": beat},
        },
        task_routes={"nurture.tasks.dispatch_due": {"queue": beat}},
        worker_hijack_root_logger=True,
    )
    return app


def main() -> None:
    prefix, role, *rest = sys.argv[1:]
    app = configure(prefix)
    if role == "worker":
        app.worker_main(["worker", "-Q", f"{prefix}.celery,{prefix}.beat", *rest])
    elif role == "dispatch":
        from nurture import dispatch, tasks

        created = []
        for ids in dispatch.dispatch_batches(batch_size=int(rest[0])):
            tasks.publish_sends(ids)
            created += ids
        tasks.publish_sends(created)
        print(len(created), flush=True)
    elif role == "cleanup":
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            for name in (f"{prefix}.celery", f"{prefix}.beat"):
                channel.queue_delete(name)
                channel.exchange_delete(name)
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main()
