"""golive's command line: the step protocol.STEPS declares, run by its host function,
under the host's deploy lock where the step changes the host."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import PurePosixPath

from . import __doc__ as overview
from .files import Refused, deploy_lock, keep_going_without_the_controller, say
from .protocol import STEPS, Step, parser


def main(argv: list[str] | None = None) -> int:
    """0 when the step completed, else its own exit status or 1 with one reason line."""
    args = parser(overview).parse_args(argv)
    step, root = STEPS[args.step], PurePosixPath(args.root)
    function = host_function(step)
    values = {arg.name: getattr(args, arg.name) for arg in step.args}
    try:
        if not step.locked:
            status = function(root, **values)
        else:
            keep_going_without_the_controller()
            with deploy_lock(root):
                status = function(root, **values)
    except Refused as refusal:
        say(str(refusal), err=True)
        return 1
    except (OSError, ValueError, KeyError) as error:
        say(f"golive {step.name}: {error}", err=True)
        return 1
    return status if isinstance(status, int) else 0


def host_function(step: Step) -> Callable[..., int | None]:
    """The function that carries the step out (imported when its step runs)."""
    module, _, name = step.run.partition(":")
    return getattr(importlib.import_module(f".{module}", __package__), name)
