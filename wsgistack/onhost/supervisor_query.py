#!/usr/bin/python3
"""supervisor-query: one program's state and pid, asked of supervisord over its socket.

Installed by wsgistack as /usr/local/lib/wsgistack/supervisor-query (python3 standard
library only). Every converge runs its process_info, in the one command that reads a host
(inside the health probe's process: wsgistack.engine.health), so it imports nothing but
`re` and `socket`: supervisorctl costs ~190 ms of CPU to start, this ~15 ms. golive asks
it too, for the pid of the herder supervisor runs.

    supervisor-query PROGRAM [--conf /etc/supervisor/supervisord.conf]
        prints "STATENAME PID" (e.g. "RUNNING 1325"), or nothing if supervisor does not
        answer or knows no such program.
"""

import re
import socket
import sys

CONF = "/etc/supervisor/supervisord.conf"
PROGRAM = re.compile(r"^[a-z][a-z0-9-]{0,30}$")  # an app name: nothing to escape in XML


def supervisor_socket(conf: str) -> str:
    """The socket supervisorctl uses (serverurl in supervisord.conf)."""
    try:
        with open(conf) as file:
            found = re.search(r"(?m)^serverurl\s*=\s*unix://(\S+)", file.read())
    except OSError:
        found = None
    return found.group(1) if found else "/var/run/supervisor.sock"


def process_info(program: str, conf: str = CONF) -> dict:
    """supervisor.getProcessInfo(program): {"statename": ..., "pid": ...}; {} if none."""
    body = ("<?xml version='1.0'?><methodCall><methodName>supervisor.getProcessInfo"
            f"</methodName><params><param><value><string>{program}</string></value></param>"
            "</params></methodCall>")
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(supervisor_socket(conf))
            sock.sendall(("POST /RPC2 HTTP/1.0\r\nContent-Type: text/xml\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
            reply = b"".join(iter(lambda: sock.recv(65536), b"")).decode(errors="replace")
    except OSError:
        return {}
    if "<fault>" in reply:
        return {}
    return dict(re.findall(r"<name>(\w+)</name>\s*<value><(?:string|int)>([^<]*)</", reply))


def main(argv: list) -> int:
    if len(argv) not in (1, 3) or not PROGRAM.match(argv[0]) or argv[1:2] not in ([], ["--conf"]):
        sys.stderr.write(__doc__)
        return 2
    info = process_info(argv[0], argv[2] if len(argv) == 3 else CONF)
    if info.get("statename"):
        print(info["statename"], info.get("pid", "0"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
