"""python -m sandbox up | down | status | ssh NAME | restart NAME | stop NAME | replace NAME |
dns NAME HOST"""

from __future__ import annotations

import argparse
import os
import sys

from sandbox import ca, lifecycle
from sandbox.access import AccessFiles, load_spec
from sandbox.errors import SandboxError
from sandbox.spec import LOGINS, SandboxSpec

DEFAULT = SandboxSpec()


def parse_groups(text: str) -> dict[str, int]:
    """`staging=1,production=2` -> {"staging": 1, "production": 2}"""
    groups = {}
    for item in text.split(","):
        group, _, count = item.partition("=")
        if not count.isdigit():
            raise argparse.ArgumentTypeError(f"{item!r} is not GROUP=COUNT")
        groups[group.strip()] = int(count)
    return groups


def parse_jumps(text: str) -> dict[str, str]:
    """`production-db1=production1` -> {"production-db1": "production1"}"""
    pairs = [item.partition("=") for item in text.split(",") if item]
    if not all(hidden and sign and jump for hidden, sign, jump in pairs):
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST=JUMP,...")
    return {hidden.strip(): jump.strip() for hidden, _sign, jump in pairs}


def parser() -> argparse.ArgumentParser:
    """`--name` goes before or after the command (`--name x up` or `up --name x`)."""
    name = os.environ.get("WSGISTACK_SANDBOX", DEFAULT.name)
    cli = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    cli.add_argument("--name", default=name,
                     help="sandbox name (env WSGISTACK_SANDBOX; default %(default)s)")
    named = argparse.ArgumentParser(add_help=False)
    named.add_argument("--name", default=argparse.SUPPRESS,
                       help=f"sandbox name (env WSGISTACK_SANDBOX; default {name})")
    commands = cli.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", parents=[named],
                             help="create and boot the hosts (safe to repeat)")
    up.add_argument("--suite", default=DEFAULT.suite, help="Debian suite: bookworm or trixie")
    up.add_argument("--subnet", default=DEFAULT.subnet, help="private IPv4 subnet for the hosts")
    up.add_argument("--hosts", type=parse_groups, default=DEFAULT.groups,
                    help="hosts per inventory group, e.g. staging=1,production=2,production-db=1"
                         ",production-backup=1 (an environment's database host, its backup"
                         " host); ca=1 adds the sandbox's own ACME"
                         " CA (pebble)")
    up.add_argument("--behind", type=parse_jumps, default={}, metavar="HOST=JUMP,...",
                    help="hosts the controller cannot reach, only through another, e.g."
                         " production-db1=production1")
    up.add_argument("--login", default=DEFAULT.login, choices=LOGINS,
                    help="who logs in over SSH: root, or admin with passwordless sudo and"
                         " root's login refused, as on Debian's cloud images")
    commands.add_parser("down", parents=[named],
                        help="remove the hosts and everything the sandbox made")
    commands.add_parser("status", parents=[named], help="list the hosts, their addresses and state")
    for verb, text in [("ssh", "open a shell (or run a command) on a host"),
                       ("restart", "reboot a host, keeping its disk"),
                       ("stop", "power a host off, keeping its disk"),
                       ("replace", "a lost host replaced: a new bare one at its address,"
                                   " with new host keys")]:
        command = commands.add_parser(verb, parents=[named], help=text)
        command.add_argument("host", help="host name, e.g. staging1")
        if verb == "ssh":
            command.add_argument("args", nargs=argparse.REMAINDER, help="command to run")
    dns = commands.add_parser("dns", parents=[named],
                              help="make the sandbox CA's DNS answer a name with a host's address")
    dns.add_argument("domain", help="a site name, e.g. staging.flasktodo.test")
    dns.add_argument("host", help="host name, e.g. staging1")
    return cli


def existing(name: str) -> SandboxSpec:
    spec = load_spec(name)
    if spec is None:
        raise SandboxError(f"sandbox {name!r} is not up: run `python -m sandbox --name {name} up`")
    return spec


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "up":
            spec = SandboxSpec(args.name, args.suite, args.subnet, args.hosts, args.login,
                               args.behind)
            lifecycle.up(spec)
            print_status(spec)
        elif args.command == "down":
            removed = lifecycle.down(args.name)
            print(f"sandbox {args.name!r} {'removed' if removed else 'was not up'}")
        elif args.command == "status":
            print_status(existing(args.name))
        else:
            spec = existing(args.name)
            host = spec.host(args.host)
            if args.command == "dns":
                ca.point(spec, args.domain, host)
                print(f"{args.domain} -> {host.name} ({spec.address(host)})")
                return 0
            if args.command == "ssh":
                command = [*AccessFiles(spec.state_dir).ssh_command(), host.name, *args.args]
                os.execvp(command[0], command)
            action = {"restart": lifecycle.restart, "stop": lifecycle.stop_host,
                      "replace": lifecycle.replace_host}[args.command]
            action(spec, host)
            print_status(spec)
    except SandboxError as error:
        print(f"sandbox: {error}", file=sys.stderr)
        return 2
    return 0


def print_status(spec: SandboxSpec) -> None:
    print(f"sandbox {spec.name!r}: Debian {spec.suite}, subnet {spec.subnet}")
    for host, address, running in lifecycle.status(spec):
        state = "running" if running else "stopped"
        jump = spec.jump_of(host)
        behind = f"  (through {jump.name})" if jump else ""
        print(f"  {host.name:<24} {host.group:<12} {address:<16} {state}{behind}")


if __name__ == "__main__":
    sys.exit(main())
