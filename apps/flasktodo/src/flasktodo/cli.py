"""`flasktodo migrate`: bring the database to this release's schema.

A deploy runs it as a release command, as the app's user, with the new release and its
config and environment, before the release goes live.
"""

from __future__ import annotations

import argparse

from flasktodo import create_app, db


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flasktodo", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply the migrations the database lacks")
    parser.parse_args(argv)
    app = create_app()
    with app.app_context():
        applied = db.migrate()
    done = ", ".join(map(str, applied)) or "none needed"
    print(f"flasktodo: schema at version {db.SCHEMA_VERSION} (applied: {done})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
