"""golive's command line: the step protocol.STEPS declares, run by its host function,
under the host's deploy lock where the step changes the host."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import PurePosixPath

from . import __doc__ as overview
from .files import Refused, deploy_lock, keep_going_without_the_controller, say
from .history import live_release, record_step
from .protocol import FLAG, NUMBER, STEPS, TEXT, Step, parser


def main(argv: list[str] | None = None) -> int:
    """0 when the step completed, else its own exit status or 1 with one reason line."""
    args = parser(overview).parse_args(argv)
    step, root = STEPS[args.step], PurePosixPath(args.root)
    function = host_function(step)
    values = {arg.name: getattr(args, arg.name) for arg in step.args}
    if not step.locked:
        return carried_out(step, function, root, values)
    keep_going_without_the_controller()
    with deploy_lock(root):
        app = values.get("app")
        before = live_release(root, app) if isinstance(app, str) else None
        status = carried_out(step, function, root, values)
        if step.recorded:
            record_step(root, step.name, shown(step, values), before,
                        "ok" if status == 0 else f"failed ({status})")
    return status


def carried_out(step: Step, function: Callable[..., int | None], root: PurePosixPath,
                values: dict[str, object]) -> int:
    """The step's exit status: 0, its own, or 1 with one reason line."""
    try:
        status = function(root, **values)
    except Refused as refusal:
        say(str(refusal), err=True)
        return 1
    except (OSError, ValueError, KeyError) as error:
        say(f"golive {step.name}: {error}", err=True)
        return 1
    return status if isinstance(status, int) else 0


def shown(step: Step, values: dict[str, object]) -> dict[str, object]:
    """The step's arguments as its history keeps them: names and numbers, not the digests of
    what it checked nor a command it ran."""
    return {arg.name: values[arg.name] for arg in step.args
            if arg.kind in (TEXT, NUMBER, FLAG) and values[arg.name] not in (None, [], False)}


def host_function(step: Step) -> Callable[..., int | None]:
    """The function that carries the step out (imported when its step runs)."""
    module, _, name = step.run.partition(":")
    return getattr(importlib.import_module(f".{module}", __package__), name)
