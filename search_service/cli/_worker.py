"""``gpnas worker``: a Celery worker that runs fits, fronts and campaign selection."""

from __future__ import annotations

import typer

from ..errors import UserError
from ._options import DEFAULT_DATABASE_URL, DatabaseUrlOption


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def _worker(
        database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL,
        broker_url: str = typer.Option(
            ...,
            "--broker-url",
            envvar="GPNAS_BROKER_URL",
            show_envvar=True,
            help="Celery broker the API sends work to: redis://host:6379/0 or amqp://user:pass@host:5672//.",
        ),
        queue: str = typer.Option(
            "gpnas", "--queue", envvar="GPNAS_TASK_QUEUE", show_envvar=True, help="Broker queue to consume."
        ),
        concurrency: int = typer.Option(
            1, "--concurrency", "-c", min=1, help="Worker processes (each runs one task at a time)."
        ),
        torch_threads: int | None = typer.Option(
            None,
            "--torch-threads",
            min=1,
            help="Threads per worker process for torch (default: GPNAS_TORCH_THREADS, else 1; scale "
            "with processes instead).",
        ),
        log_level: str = typer.Option("info", "--log-level", help="Celery log level."),
    ) -> None:
        """Run fits, fronts and campaign selection sent by API processes with GPNAS_BROKER_URL.

        Start any number, on any machine that reaches the broker and the database; a worker
        killed mid-task loses nothing (the broker delivers the task again; tasks are idempotent).
        """
        from celery.signals import worker_shutting_down

        from predictors import request_stop
        from search_service import SchemaOutdatedError
        from search_service.core import Settings, check_schema, make_engine, require_database
        from search_service.services import REQUEST_HANDLERS
        from search_service.services.spaces import UrlSpaceSource, install_space_source
        from search_service.work import create_celery, use_threads

        settings = Settings(database_url=database_url, broker_url=broker_url, task_queue=queue)
        try:
            require_database(settings.database_url)
        except SchemaOutdatedError as error:
            raise UserError(str(error)) from None
        engine = make_engine(settings.database_url)
        try:
            check_schema(engine)
        except SchemaOutdatedError as error:
            raise UserError(str(error)) from None
        finally:
            engine.dispose()
        use_threads(torch_threads or settings.torch_threads)
        # Fits and fronts of registered spaces look them up by name; each worker process opens
        # the source's engine itself, after the fork.
        install_space_source(UrlSpaceSource(settings.database_url))
        celery = create_celery(settings, REQUEST_HANDLERS)
        # A warm shutdown waits for the task in hand: make a fit or search stop at its next step
        # (the task goes back to the queue) instead of holding the shutdown for minutes.
        worker_shutting_down.connect(lambda **_: request_stop(), weak=False)
        # solo runs tasks in this process (no fork) when one at a time is asked for.
        pool = "solo" if concurrency == 1 else "prefork"
        celery.worker_main(
            [
                "worker",
                f"--concurrency={concurrency}",
                f"--pool={pool}",
                f"--queues={queue}",
                f"--loglevel={log_level}",
                "--without-gossip",
                "--without-mingle",
            ]
        )
