"""The site's certificate from an ACME CA, offline: golive's `site --acme`, `certificate`
and `install-certificate` steps in a scratch root, with a stand-in certbot that writes a
lineage as certbot does (a real certificate, made by openssl), and nginx and systemctl
recorded. The deploy's host read (acme.CertificateState) and golive read the same state."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from tests.unit.onhost_stubs import install_commands
from wsgistack.components.acme import CertificateState, lets_encrypt_limit_problems
from wsgistack.engine.programs import golive_zipapp
from wsgistack.onhost.golive import layout, protocol, site
from wsgistack.onhost.golive.certificate import certbot_failure, certificate_lines
from wsgistack.onhost.golive.protocol import Certificate, certificate_problem

SITE = "web"
GOLIVE = (sys.executable, "-I", str(golive_zipapp()))  # as hosts run it
DIRECTORY = "https://ca.test/dir"
NAMES = ["example.test", "www.example.test"]
DAY = 86400

# certbot as golive runs it: `certonly ... --cert-name SITE --server URL --domain NAME...
# --config-dir DIR`. Writes live/SITE/{fullchain,privkey}.pem (valid $STUB_CERT_DAYS) and
# renewal/SITE.conf; with $STUB_CERTBOT_OUTPUT set, prints it and fails instead.
CERTBOT = r'''#!{python}
import os, subprocess, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as log:
    log.write("certbot " + " ".join(args) + "\n")
if os.environ.get("STUB_CERTBOT_OUTPUT"):
    print(os.environ["STUB_CERTBOT_OUTPUT"])
    sys.exit(1)
option = lambda name: args[args.index(name) + 1]
names = [args[i + 1] for i, arg in enumerate(args) if arg == "--domain"]
config, site = Path(option("--config-dir")), option("--cert-name")
live = config / "live" / site
live.mkdir(parents=True, exist_ok=True)
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=" + names[0],
                "-days", os.environ.get("STUB_CERT_DAYS", "90"),
                "-addext", "subjectAltName=" + ",".join("DNS:" + n for n in names),
                "-keyout", str(live / "privkey.pem"), "-out", str(live / "fullchain.pem")],
               check=True, capture_output=True)
(config / "renewal").mkdir(exist_ok=True)
(config / "renewal" / (site + ".conf")).write_text(
    "version = 2.1.0\n[renewalparams]\nserver = " + option("--server") + "\n")
'''


@dataclass
class Host:
    root: Path
    environ: dict[str, str]
    log: Path

    def golive(self, *arguments: str, **environ: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*GOLIVE, "--root", str(self.root),
                               *arguments], env={**self.environ, **environ},
                              capture_output=True, text=True, timeout=60, check=False)

    def certificate(self, names: list[str] = NAMES, **environ: str
                    ) -> subprocess.CompletedProcess[str]:
        return self.golive("certificate", SITE, *(a for n in names for a in ("--name", n)),
                           "--directory", DIRECTORY, "--email", "ops@example.test", **environ)

    def recorded(self) -> list[str]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        self.log.unlink(missing_ok=True)
        return lines

    @property
    def pair(self) -> tuple[bytes, bytes]:
        return tuple(Path(path).read_bytes() for path in layout.tls_paths(SITE, self.posix))

    @property
    def posix(self) -> PurePosixPath:
        return PurePosixPath(self.root)

    def found(self) -> Certificate:
        """The certificate as the deploy's host read sees it."""
        command = CertificateState().command(SITE, self.posix)
        output = subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                                check=False).stdout
        return CertificateState().process(output.splitlines())


@pytest.fixture
def host(tmp_path: Path) -> Host:
    root = tmp_path / "root"
    (root / "etc/nginx/sites-enabled").mkdir(parents=True)
    (root / "etc/nginx/sites-available").mkdir()
    (root / "etc/nginx/nginx.conf").write_text(
        f"http {{ include {root}/etc/nginx/sites-enabled/*; }}\n")
    (root / "etc/ssl/wsgistack/private").mkdir(parents=True, mode=0o700)
    (root / "run").mkdir()  # the lock dir goes here
    certificate, key = layout.tls_paths(SITE, PurePosixPath(root))
    (root / f"etc/nginx/sites-available/{SITE}").write_text(
        f"ssl_certificate {certificate};\nssl_certificate_key {key};\n")
    (root / "etc/nginx/sites-enabled" / SITE).symlink_to(f"../sites-available/{SITE}")
    log = tmp_path / "commands.log"
    environ = {**os.environ, **install_commands(tmp_path / "bin", log)}
    certbot = tmp_path / "bin" / "certbot"
    certbot.write_text(CERTBOT.replace("{python}", sys.executable))
    certbot.chmod(0o755)
    return Host(root, environ, log)


def lines_for(server: str, names: list[str], days: float, installed: bool = True) -> list[str]:
    not_after = time.strftime("%b %d %H:%M:%S %Y GMT", time.gmtime(time.time() + days * DAY))
    return [f"server={server}", f"notAfter={not_after}", "X509v3 Subject Alternative Name: ",
            "    " + ", ".join(f"DNS:{name}" for name in names),
            *(["installed=1"] if installed else [])]


def test_a_certificate_is_renewed_for_each_reason_and_only_then() -> None:
    now = time.time()

    def problem(server: str = DIRECTORY, names: list[str] = NAMES, days: float = 80) -> str:
        found = protocol.parse_certificate(lines_for(server, list(reversed(names)), days))
        return certificate_problem(found, NAMES, DIRECTORY, now)

    assert problem() == "", "the same names in any order, 80 days left: nothing to do"
    assert certificate_problem(Certificate(), NAMES, DIRECTORY, now) == \
        f"there is no certificate from {DIRECTORY} yet"
    assert problem(server="https://other.test/dir") == \
        "the certificate is from another CA (https://other.test/dir)"
    assert problem(names=NAMES[:1]) == "the certificate is for other names (example.test)"
    assert problem(days=29).startswith("the certificate expires 20")
    assert problem(days=-1).startswith("the certificate expires"), "expired"
    assert problem(days=31) == ""


def test_certbot_failures_come_down_to_one_line_naming_each_name() -> None:
    refused = """Saving debug log to /var/log/letsencrypt/letsencrypt.log
Renewing an existing certificate for b.test and c.test

Certbot failed to authenticate some domains (authenticator: webroot). The Certificate \
Authority reported these problems:
  Domain: c.test
  Type:   connection
  Detail: 10.0.0.5: Fetching http://c.test/.well-known/acme-challenge/x: Timeout during \
connect (likely firewall problem)

Hint: The Certificate Authority failed to download the temporary challenge files.

Some challenges have failed.
Ask for help or search for solutions at https://community.letsencrypt.org."""
    assert certbot_failure(refused) == ("c.test: connection: 10.0.0.5: Fetching"
                                        " http://c.test/.well-known/acme-challenge/x: Timeout"
                                        " during connect (likely firewall problem)")
    limited = ("Saving debug log to /var/log/letsencrypt/letsencrypt.log\n"
               "An unexpected error occurred:\n"
               "Error creating new order :: too many certificates (5) already issued for this"
               " exact set of domains in the last 168 hours: b.test\n"
               "Ask for help or search for solutions at https://community.letsencrypt.org.")
    assert certbot_failure(limited).startswith("Error creating new order :: too many")
    assert certbot_failure("") == "certbot failed"
    unreachable = ("Saving debug log to /var/log/letsencrypt/letsencrypt.log\n"
                   "An unexpected error occurred:\n"
                   "ValueError: Requesting https://10.0.0.6:14000/dir: Connection refused\n"
                   "Ask for help or search for solutions at https://community.letsencrypt.org.")
    assert certbot_failure(unreachable) == (
        "An unexpected error occurred: ValueError: Requesting https://10.0.0.6:14000/dir:"
        " Connection refused"), "the heading and the reason after it"


def test_the_first_certificate_replaces_the_placeholder_and_then_nothing_is_due(
        host: Host) -> None:
    certificate, key = layout.tls_paths(SITE, host.posix)
    site.make_placeholder_pair(SITE, host.posix)
    assert "placeholder" in subprocess.run(
        ["openssl", "x509", "-in", str(certificate), "-noout", "-subject"],
        capture_output=True, text=True, check=True).stdout
    assert Path(key).stat().st_mode & 0o077 == 0, "the key is root's only"
    assert host.found() == Certificate(), "nothing from certbot yet"
    done = host.certificate()
    assert done.returncode == 0, done.stderr
    assert f"the certificate for {', '.join(NAMES)} from {DIRECTORY} is live" in done.stdout
    calls = host.recorded()
    assert [line.split()[0] for line in calls] == ["certbot", "nginx", "nginx", "systemctl"]
    assert "--force-renewal" in calls[0] and "--domain www.example.test" in calls[0]
    assert "--no-directory-hooks" in calls[0], "its deploy hook would wait for our lock"
    assert calls[-1] == "systemctl reload nginx"
    fullchain, privkey = layout.lineage(SITE, host.posix)
    assert host.pair == (Path(fullchain).read_bytes(), Path(privkey).read_bytes())
    assert oct(Path(key).stat().st_mode & 0o777) == "0o600"
    found = host.found()
    assert found.installed and found.server == DIRECTORY and list(found.names) == NAMES
    assert found == protocol.parse_certificate(certificate_lines(SITE, host.posix)), \
        "the deploy's read and golive's agree"
    assert certificate_problem(found, NAMES, DIRECTORY, time.time()) == ""
    again = host.certificate()
    assert again.returncode == 0 and host.recorded() == [], "nothing due: no certbot, no reload"


def test_new_names_get_a_new_certificate(host: Host) -> None:
    site.make_placeholder_pair(SITE, host.posix)
    assert host.certificate().returncode == 0
    host.recorded()
    done = host.certificate([*NAMES, "api.example.test"])
    assert done.returncode == 0, done.stderr
    assert "it was new: the certificate is for other names" in done.stdout
    assert "api.example.test" in host.found().names and host.found().installed


def test_a_certificate_close_to_expiry_is_renewed(host: Host) -> None:
    site.make_placeholder_pair(SITE, host.posix)
    assert host.certificate(STUB_CERT_DAYS="10").returncode == 0
    host.recorded()
    done = host.certificate()
    assert done.returncode == 0 and "it was new: the certificate expires" in done.stdout
    assert host.recorded()[0].startswith("certbot certonly")


def test_a_refused_order_is_one_line_and_the_live_pair_keeps_serving(host: Host) -> None:
    site.make_placeholder_pair(SITE, host.posix)
    before = host.pair
    failed = host.certificate(STUB_CERTBOT_OUTPUT="Some challenges have failed.\n"
                              "  Domain: www.example.test\n  Type:   dns\n"
                              "  Detail: DNS problem: NXDOMAIN looking up A for www.example.test")
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        f"no certificate for {', '.join(NAMES)} from {DIRECTORY}: www.example.test: dns: DNS"
        " problem: NXDOMAIN looking up A for www.example.test; the current certificate keeps"
        " serving"]
    assert host.pair == before
    assert not any(line.startswith("systemctl") for line in host.recorded())


def test_a_renewed_certificate_goes_live_unless_nginx_refuses_it(host: Host) -> None:
    site.make_placeholder_pair(SITE, host.posix)
    assert host.certificate().returncode == 0
    first = host.pair
    host.recorded()
    assert host.golive("install-certificate", SITE).returncode == 0
    assert host.recorded() == [], "the live pair is certbot's already: no reload"
    subprocess.run(["certbot", "certonly", "--cert-name", SITE, "--server", DIRECTORY,
                    "--domain", NAMES[0], "--config-dir", str(host.root / "etc/letsencrypt")],
                   env=host.environ, check=True)  # as certbot's timer renews
    host.recorded()
    refused = host.golive("install-certificate", SITE, STUB_EXIT_NGINX="1")
    assert refused.returncode == 1
    assert "certbot's certificate for web fails nginx -t; the live site is unchanged" \
        in refused.stderr
    assert host.pair == first, "the live pair stays"
    done = host.golive("install-certificate", SITE)
    assert done.returncode == 0 and "renewed certificate for web is live" in done.stdout
    assert host.recorded()[-1] == "systemctl reload nginx"
    assert host.found().installed and host.found().names == (NAMES[0],)


def test_a_site_with_acme_goes_live_on_a_placeholder_pair(host: Host) -> None:
    unit = layout.site_unit(SITE, host.posix, acme=True)
    assert unit.files == (host.posix / f"etc/nginx/sites-available/{SITE}",), \
        "the pair is certbot's, not a candidate"
    site = Path(unit.candidates[0])
    site.write_text(Path(unit.files[0]).read_text() + "# new\n")
    digest = hashlib.sha256(site.read_bytes()).hexdigest()
    done = host.golive("site", SITE, "--acme", "--expect", f"{site}={digest}")
    assert done.returncode == 0, done.stderr
    certificate, key = layout.tls_paths(SITE, host.posix)
    assert Path(certificate).exists() and Path(key).stat().st_mode & 0o077 == 0
    assert host.recorded()[-1] == "systemctl reload nginx"


def test_more_web_hosts_than_lets_encrypt_certifies_a_week_are_refused() -> None:
    data = {"tls_mode": "acme"}
    six = [(f"web{n}", {}) for n in range(6)]
    assert lets_encrypt_limit_problems("production", data, six[:5]) == []
    assert lets_encrypt_limit_problems("production", data, six) == [
        "group_data (production): tls_mode: acme on 6 web hosts asks Let's Encrypt for 6"
        " certificates for the same names, over its limit of 5 a week: at most 5 web hosts per"
        " environment, or tls_mode files with a certificate of your own"]
    assert lets_encrypt_limit_problems("production", {}, six) == [], "tls_mode files"
    sandbox = [(name, {"acme_directory": "https://10.9.0.6:14000/dir"}) for name, _ in six]
    assert lets_encrypt_limit_problems("production", data, sandbox) == [], "the sandbox's own CA"
    private = {**data, "acme_directory": "https://ca.test/d"}
    assert lets_encrypt_limit_problems("production", private, six) == []
