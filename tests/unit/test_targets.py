"""inventory.py's sources of hosts: the sandbox by default, a targets file for real servers."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from wsgistack.config import targets
from wsgistack.config.targets import TargetsError, load_targets, transport_sending_at_once


def test_targets_file_for_real_servers(tmp_path: Path) -> None:
    targets = tmp_path / "targets.toml"
    targets.write_text(
        '[ssh]\nuser = "deploy"\nkey = "~/.ssh/deploy"\nsudo = true\n\n'
        '[staging]\nhosts = ["stage1.example.com"]\n\n'
        '[production]\nhosts = ["web1.example.com", "web2.example.com"]\n'
        'database = "db1.example.com"\nbackup = "backup1.example.com"\n'
        '[production.ssh]\nport = 2222\n'
    )
    groups = load_targets({"WSGISTACK_TARGETS": str(targets)})
    assert [name for name, _ in groups["production"]] == [
        "web1.example.com", "web2.example.com", "db1.example.com", "backup1.example.com"], \
        "its database and backup hosts too"
    assert [name for name, _ in groups["databases"]] == ["db1.example.com"]
    assert [name for name, _ in groups["backups"]] == ["backup1.example.com"]
    assert groups["databases"][0][1]["ssh_port"] == 2222
    stage_data = groups["staging"][0][1]
    assert stage_data["ssh_user"] == "deploy" and stage_data["_sudo"] is True
    assert stage_data["_temp_dir"] == "/var/lib/wsgistack/uploads/deploy", \
        "a sudo user's uploads wait in its own dir, never /tmp"
    assert stage_data["ssh_key"] == str(Path("~/.ssh/deploy").expanduser())
    assert stage_data["ssh_strict_host_key_checking"] == "yes"
    assert stage_data["ssh_paramiko_connect_kwargs"] == {
        "timeout": 10, "banner_timeout": 10, "auth_timeout": 10,
        "transport_factory": transport_sending_at_once}
    assert groups["production"][0][1]["ssh_port"] == 2222
    assert "ssh_port" not in stage_data


@pytest.mark.parametrize("text, message", [
    ("[qa]\nhosts = []\n", "unknown tables"),
    ("[staging]\nhosts = \"one\"\n", "must be a list"),
    ("[ssh]\npassword = \"x\"\n", "unknown ssh keys"),
    ("[ssh]\nconnect_timeout = 0\n", "connect_timeout must be 1-300 seconds"),
    ("[staging\n", "targets file"),
    ("[production]\nhosts = [\"web1\"]\ndatabase = \"web1\"\n", "not one of its other hosts"),
    ("[production]\nhosts = [\"w1\"]\ndatabase = \"d1\"\nbackup = \"d1\"\n",
     "backup must be one host's name, not one of its other hosts"),
    ("[production]\nhosts = [\"web1\"]\ndatabases = [\"db\"]\n", "unknown keys"),
    ("[ssh]\nsudo = true\n[staging]\nhosts = [\"s1\"]\n", "sudo = true needs user"),
    # Whatever reaches the ssh config: a newline would start a directive of its own (the
    # review ran a ProxyCommand on the controller this way, even with --dry).
    ('[ssh]\njump = "10.0.0.6\\nProxyCommand sh -c \'id > /tmp/x\'"\n',
     r"ssh jump must be \[user@\]host\[:port\]"),
    ('[ssh]\njump = "ops@bastion:99999"\n', "ssh jump must be"),
    ('[ssh]\njump = "a b@bastion"\n', "ssh jump must be"),
    ('[ssh]\nuser = "admin\\nProxyCommand x"\n', "ssh user must be a login name"),
    ('[ssh]\nkey = "~/.ssh/id\\tProxyCommand x"\n', "ssh key must be a file's path"),
    ('[ssh]\nknown_hosts = "/k h"\n', "ssh known_hosts must be a file's path"),
    ('[ssh]\nport = "22\\nProxyCommand x"\n', "ssh port must be a port"),
    ('[ssh]\nsudo = "yes"\n', "ssh sudo must be true or false"),
    ('[staging]\nhosts = ["web1\\nProxyCommand x"]\n', "must be a list of host names"),
    ('[staging]\nhosts = ["-oProxyCommand=x"]\n', "must be a list of host names"),
    ('[production]\nhosts = ["w1"]\ndatabase = "db 1"\n', "database must be one host"),
])
def test_bad_targets_files(tmp_path: Path, text: str, message: str) -> None:
    targets = tmp_path / "targets.toml"
    targets.write_text(text)
    with pytest.raises(TargetsError, match=message):
        load_targets({"WSGISTACK_TARGETS": str(targets)})


def test_sandbox_database_and_backup_hosts_join_their_environment_and_role_groups(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "sb"
    state.mkdir()
    (state / "sandbox.json").write_text(json.dumps({
        "ssh_key": "k", "known_hosts": "h", "hosts": [
            {"name": "sb-production1", "group": "production", "address": "10.9.0.2"},
            {"name": "sb-production-db1", "group": "production-db", "address": "10.9.0.6"},
            {"name": "sb-production-backup1", "group": "production-backup",
             "address": "10.9.0.10"}]}))
    monkeypatch.setattr(targets, "SANDBOX_STATE", tmp_path)
    groups = load_targets({"WSGISTACK_SANDBOX": "sb"})
    assert [name for name, _ in groups["production"]] == [
        "sb-production1", "sb-production-db1", "sb-production-backup1"]
    assert [name for name, _ in groups["databases"]] == ["sb-production-db1"]
    assert [name for name, _ in groups["backups"]] == ["sb-production-backup1"]
    assert groups["staging"] == []


def test_a_sandbox_ca_is_no_target_and_every_host_asks_it_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "sb"
    state.mkdir()
    (state / "sandbox.json").write_text(json.dumps({
        "ssh_key": "k", "known_hosts": "h",
        "ca": {"directory": "https://10.9.0.6:14000/dir", "certificate": "/s/ca/listener.crt"},
        "hosts": [{"name": "sb-staging1", "group": "staging", "address": "10.9.0.2"},
                  {"name": "sb-ca1", "group": "ca", "address": "10.9.0.6"}]}))
    monkeypatch.setattr(targets, "SANDBOX_STATE", tmp_path)
    groups = load_targets({"WSGISTACK_SANDBOX": "sb"})
    assert {group: [name for name, _ in hosts] for group, hosts in groups.items()} == {
        "staging": ["sb-staging1"], "production": [], "databases": [], "backups": []}
    data = groups["staging"][0][1]
    assert data["acme_directory"] == "https://10.9.0.6:14000/dir", "never a real CA"
    assert data["acme_ca_certificate"] == "/s/ca/listener.crt"


def test_missing_sandbox_says_how_to_start_it() -> None:
    with pytest.raises(TargetsError, match="python -m sandbox up"):
        load_targets({"WSGISTACK_SANDBOX": "nosuchsandbox"})


def test_a_host_behind_a_jump_host_gets_an_ssh_config_with_both_hops_checked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(targets, "JUMP_CONFIGS", tmp_path / "cache")
    path = tmp_path / "targets.toml"
    path.write_text(
        '[ssh]\nuser = "admin"\nkey = "/k/id"\nknown_hosts = "/k/known"\nsudo = true\n'
        'connect_timeout = 20\n\n'
        '[production]\nhosts = ["web1.example.com"]\ndatabase = "db1.internal"\n'
        '[production.ssh]\nport = 2222\n\n'
        '[staging]\nhosts = ["stage1.internal"]\n\n'
        '[host."db1.internal"]\njump = "web1.example.com"\n\n'
        '[host."stage1.internal"]\njump = "ops@bastion.example.com:2200"\n')
    groups = load_targets({"WSGISTACK_TARGETS": str(path)})
    database = dict(groups["databases"])["db1.internal"]
    assert database is dict(groups["production"])["db1.internal"], "one host, one data"
    assert "jump" not in database and "ssh_config_file" not in dict(groups["production"])[
        "web1.example.com"]
    config = Path(database["ssh_config_file"])
    assert config == Path(dict(groups["staging"])["stage1.internal"]["ssh_config_file"])
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    assert oct(config.parent.stat().st_mode & 0o777) == "0o700"
    text = config.read_text()
    assert "Host db1.internal\n  ProxyJump web1.example.com\n" in text
    assert ("Host web1.example.com\n  HostName web1.example.com\n"
            "  StrictHostKeyChecking yes\n  ConnectTimeout 20\n  Port 2222\n  User admin\n"
            "  IdentityFile /k/id\n  IdentitiesOnly yes\n  UserKnownHostsFile /k/known\n"
            ) in text, "a target as jump host logs in as it does"
    assert "Host stage1.internal\n  ProxyJump ops@bastion.example.com:2200\n" in text
    assert ("Host bastion.example.com\n  HostName bastion.example.com\n"
            "  StrictHostKeyChecking yes\n  ConnectTimeout 20\n  Port 2200\n  User ops\n"
            ) in text
    assert database["ssh_paramiko_connect_kwargs"]["timeout"] == 20, "a group's ssh table"\
        " keeps the timeout set above it"


def test_a_host_table_must_name_a_host(tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    path.write_text('[staging]\nhosts = ["s1"]\n[host."s2"]\njump = "s1"\n')
    with pytest.raises(TargetsError, match=r'host\."s2"\] is no host of staging or production'):
        load_targets({"WSGISTACK_TARGETS": str(path)})


def test_the_transport_sends_each_packet_at_once() -> None:
    """paramiko's socket has Nagle's algorithm on: each command waited for a delayed ACK."""
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(server.getsockname()) as sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        transport = transport_sending_at_once(sock)
        try:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            assert transport.sock is sock
        finally:
            transport.close()
