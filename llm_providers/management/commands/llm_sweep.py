"""``manage.py llm_sweep``: settle now the ledger rows left in flight by dead processes."""

from django.core.management.base import BaseCommand, CommandError

from llm_providers.accounting import sweeper


class Command(BaseCommand):
    help = (
        "Mark as interrupted the LLM attempts still in flight long after the request deadline "
        "(their process died mid-call): each is charged its estimate and its budget reservation "
        "is released. The server does this by itself every LLM_SWEEP_INTERVAL seconds."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--older-than",
            type=float,
            metavar="SECONDS",
            help="interrupt rows in flight for longer than this; "
            "default: LLM_REQUEST_DEADLINE + LLM_SWEEP_GRACE",
        )

    def handle(self, *args, **options) -> None:
        older_than = options["older_than"]
        if older_than is not None and older_than < 0:
            raise CommandError("--older-than must be a number of seconds, 0 or more.")
        age = sweeper.default_age() if older_than is None else older_than
        count = sweeper.sweep(older_than=age)
        self.stdout.write(
            f"Interrupted {count} attempt(s) in flight for more than {age:g} s."
            if count
            else f"Nothing to sweep: no attempt in flight for more than {age:g} s."
        )
