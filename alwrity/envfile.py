"""Write ``.env`` from ``.env.example`` with fresh secrets: ``python -m alwrity.envfile``.

``make run`` calls it. An existing ``.env`` is never touched, so running it again is harmless. In
the copy, an empty ``SECRET_KEY``, ``LLM_ENCRYPTION_KEYS`` or ``DJANGO_SUPERUSER_PASSWORD`` line
gets a newly generated value (and an empty ``DJANGO_SUPERUSER_USERNAME`` gets ``admin``), so the
credentials ``make run`` prints stay true on every later run. It reports which names it filled,
never their values. Standard library only: it runs before Django is configured.
"""

import argparse
import base64
import os
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def new_secret_key() -> str:
    # URL-safe characters only: no "$" (django-environ would read "$NAME" as a reference to
    # another variable), no "#" or quotes, nothing a shell or the Makefile would mangle.
    return secrets.token_urlsafe(50)


def new_fernet_key() -> str:
    # The format of cryptography's Fernet.generate_key(): 32 random bytes, URL-safe base64.
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def new_password() -> str:
    return secrets.token_urlsafe(18)


GENERATED: dict[str, Callable[[], str]] = {
    "SECRET_KEY": new_secret_key,
    "LLM_ENCRYPTION_KEYS": new_fernet_key,
    "DJANGO_SUPERUSER_USERNAME": lambda: "admin",
    "DJANGO_SUPERUSER_PASSWORD": new_password,
}

# `NAME=`, `NAME=""`, `export NAME = ''`: an assignment with no value.
_EMPTY_ASSIGNMENT = re.compile(
    r"^(?P<head>\s*(?:export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=)\s*(?:\"\"|'')?\s*$"
)


def fill_template(text: str) -> tuple[str, list[str]]:
    """``text`` with its empty generated-secret lines filled, and the names that were filled."""
    values: dict[str, str] = {}
    lines = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        match = _EMPTY_ASSIGNMENT.match(body)
        if match and match["name"] in GENERATED:
            name = match["name"]
            if name not in values:
                values[name] = GENERATED[name]()
            line = f"{match['head']}{values[name]}{line[len(body) :]}"
        lines.append(line)
    return "".join(lines), list(values)


def write_env_file(template: Path, target: Path) -> list[str] | None:
    """Create ``target`` from ``template``; the names filled, or ``None`` if ``target`` exists."""
    if target.exists():
        return None
    text, filled = fill_template(template.read_text(encoding="utf-8"))
    try:
        # O_EXCL: never overwrite, even a file that appeared since the check; 0600: secrets.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return filled


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alwrity.envfile", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--template", type=Path, default=BASE_DIR / ".env.example")
    parser.add_argument("--target", type=Path, default=BASE_DIR / ".env")
    args = parser.parse_args(argv)

    if args.target.exists():
        print(f"{_shown(args.target)} exists: left as it is.")
        return 0
    if not args.template.is_file():
        print(f"error: no template at {_shown(args.template)}", file=sys.stderr)
        return 1
    filled = write_env_file(args.template, args.target)
    if filled is None:
        print(f"{_shown(args.target)} exists: left as it is.")
        return 0
    generated = ", ".join(filled) if filled else "nothing (no empty secret lines)"
    print(f"Wrote {_shown(args.target)} from {_shown(args.template)}; filled in: {generated}.")
    print(f"It holds secrets: keep {_shown(args.target)} out of version control.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
