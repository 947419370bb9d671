"""``manage.py llm_usage_report``: a billing period's usage summaries, per user.

From the monthly summaries (``reports.period_report``), so admins' adjustments are included,
unlike the ledger-based cost report in the admin.
"""

import csv
import json
import re
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from llm_providers.accounting import reports
from llm_providers.accounting.money import money_str
from llm_providers.models import PROVIDER_NAMES, billing_period

PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
GROUPS = [*PROVIDER_NAMES, "total"]
METRICS = ("calls", "tokens", "cost")


class Command(BaseCommand):
    help = (
        "Print the LLM usage summaries of a billing period (YYYY-MM, UTC), one row per user: "
        "calls, tokens and cost (USD) per provider and in total, admins' corrections included."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--period", help="billing period as YYYY-MM (UTC); default: the current month"
        )
        parser.add_argument("--user", help="only this user (username)")
        parser.add_argument(
            "--format", choices=["table", "csv", "json"], default="table", help="default: table"
        )

    def handle(self, *args, **options) -> None:
        period = options["period"] or billing_period()
        if not PERIOD.match(period):
            raise CommandError(
                f"--period must be a month as YYYY-MM (e.g. 2026-11), not {period!r}."
            )
        username = options["user"]
        if username is not None:
            User = get_user_model()
            if not User.objects.filter(**{User.USERNAME_FIELD: username}).exists():
                raise CommandError(f"No user named {username!r}.")
        rows = reports.period_report(period, username=username)
        fmt = options["format"]
        if fmt == "json":
            self.stdout.write(json.dumps(rows, indent=2))
        elif fmt == "csv":
            self.write_csv(rows)
        elif rows:
            self.stdout.write(render_table(rows))
        else:
            who = f" by {username}" if username else ""
            self.stdout.write(f"No usage recorded{who} in {period}.")

    def write_csv(self, rows: list[dict]) -> None:
        columns = ["user", "period", *(f"{g}_{m}" for g in GROUPS for m in METRICS)]
        writer = csv.DictWriter(self.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def render_table(rows: list[dict]) -> str:
    """An aligned text table: a provider header over calls/tokens/cost columns, a total row."""
    total = {"user": "TOTAL"}
    for group in GROUPS:
        for metric in METRICS:
            name = f"{group}_{metric}"
            values = [Decimal(row[name]) if metric == "cost" else row[name] for row in rows]
            total[name] = money_str(sum(values, Decimal(0))) if metric == "cost" else sum(values)
    body = [*rows, total]

    columns: list[tuple[str, str, list[str]]] = []  # (group, label, cells)
    columns.append(("", "user", [str(row["user"]) for row in body]))
    for group in GROUPS:
        for metric in METRICS:
            cells = [str(row[f"{group}_{metric}"]) for row in body]
            if metric == "cost":
                cells = _align_points(cells)
            columns.append((group, metric, cells))

    widths = [max(len(label), *(len(c) for c in cells)) for _, label, cells in columns]
    # Widen each group's last column until the group's name fits over its three columns.
    for start in range(1, len(columns), 3):
        group = columns[start][0]
        span = sum(widths[start : start + 3]) + 2 * 2
        if len(group) > span:
            widths[start + 2] += len(group) - span

    gap = "  "
    group_line = [" " * widths[0]]
    for start in range(1, len(columns), 3):
        span = sum(widths[start : start + 3]) + 2 * len(gap)
        group_line.append(columns[start][0].center(span))
    label_line = [
        label.ljust(w) if i == 0 else label.rjust(w)
        for i, ((_, label, _), w) in enumerate(zip(columns, widths, strict=True))
    ]
    rule = ["-" * w for w in widths]
    lines = [gap.join(group_line), gap.join(label_line), gap.join(rule)]
    for index in range(len(body)):
        if index == len(body) - 1:
            lines.append(gap.join(rule))
        lines.append(
            gap.join(
                cells[index].ljust(w) if i == 0 else cells[index].rjust(w)
                for i, ((_, _, cells), w) in enumerate(zip(columns, widths, strict=True))
            )
        )
    return "\n".join(line.rstrip() for line in lines)


def _align_points(cells: list[str]) -> list[str]:
    """Pad decimals on the right so that, right-aligned, their decimal points line up."""
    places = [len(c.partition(".")[2]) for c in cells]
    most = max(places, default=0)
    return [
        c + (" " * (most - p + (1 if most and "." not in c else 0)))
        for c, p in zip(cells, places, strict=True)
    ]
