"""Real ``slapd`` servers for the directory tests (never ldap3's MOCK strategies).

Each instance is a foreground ``slapd`` started by the test process from a generated
``slapd.conf`` (no system instance, no cn=config of the host is touched), listening on
ephemeral ports bound to 127.0.0.1, with its MDB databases seeded by ``slapadd`` once per
tree and copied for every further instance of that tree.  Copying keeps start-up fast and
gives all instances of a tree the same ``entryUUID`` values, as replicas fed by syncrepl
would have, so that failover from one server to another finds the same people.

Trees (``tests/data/ldap/*.ldif`` plus the additions below, kept here so the shared data
stays untouched):

* ``hrss`` — OpenLDAP shape: inetOrgPerson under ou=people, ``uid`` login, groupOfNames,
  a ``description: account disabled`` entry, read through a service account.  LDAPS and
  StartTLS with a certificate from the session's test CA (``localhost`` only).
* ``nr`` — nested ous, ``mail`` login, posixGroup/memberUid, anonymous search allowed.
* ``ad`` — imitates Active Directory: ``sAMAccountName`` login, binary ``objectGUID``,
  ``userAccountControl`` with the disabled bit, ``memberOf`` on the user, and the server
  accepts unauthenticated binds (a DN with an empty password) as AD does.

Outside CI a missing ``slapd`` skips the tests that need it, saying why; with ``CI=true``
it fails them instead, so a broken runner can never pass by skipping.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parent.parent / "data" / "ldap"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIRS = (Path("/usr/lib/ldap"), Path("/usr/lib/openldap"), Path("/usr/libexec/openldap"))
ROOT_PASSWORD = "root-secret"
SERVICE_PASSWORD = "svc-secret-2024"

HRSS = "dc=hrss,dc=ln,dc=gov,dc=cn"
NR = "dc=nr,dc=ln,dc=gov,dc=cn"
AD = "dc=ga,dc=ln,dc=gov,dc=cn"


def _guid(n: int) -> uuid.UUID:
    return uuid.UUID(f"6f1c1e1a-0000-4000-8000-{n:012d}")


def _guid_b64(n: int) -> str:
    # AD stores objectGUID as the little-endian byte layout (Microsoft GUID structure).
    return base64.b64encode(_guid(n).bytes_le).decode()


AD_GUIDS = {"liu.yang": _guid(1), "zhang.min": _guid(2), "ex.staff": _guid(3), "svc": _guid(9)}

# Entries added to the shared trees: the service account, a "jdoe" in both departments
# (checklist 91), a DN with an escaped comma and Chinese characters, two entries sharing a
# mail address (a search that finds more than one must fail, checklist 87).
HRSS_EXTRA = f"""
dn: cn=yitong-reader,{HRSS}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: yitong-reader
userPassword: {SERVICE_PASSWORD}

dn: uid=jdoe,ou=people,{HRSS}
objectClass: inetOrgPerson
uid: jdoe
cn: John Doe (HRSS)
sn: Doe
mail: jdoe@hrss.ln.gov.example
employeeNumber: HRSS-0042
userPassword: Jd-hrss-secret!
"""

NR_EXTRA = f"""
dn: cn=John Doe,ou=survey,ou=staff,{NR}
objectClass: inetOrgPerson
objectClass: posixAccount
cn: John Doe
sn: Doe
uid: jdoe
uidNumber: 20042
gidNumber: 20042
homeDirectory: /home/jdoe
mail: jdoe@nr.ln.gov.example
userPassword: Jd-nr-secret!

dn: cn=Zhang\\, Wei (张伟),ou=survey,ou=staff,{NR}
objectClass: inetOrgPerson
objectClass: posixAccount
cn: Zhang, Wei (张伟)
sn: Zhang
uid: zwei
uidNumber: 20003
gidNumber: 20003
homeDirectory: /home/zwei
mail: zhang.wei@nr.ln.gov.example
title:: 6auY57qn5rWL57uY5biI
userPassword: 张伟-2017-secret!

dn: cn=Twin One,ou=survey,ou=staff,{NR}
objectClass: inetOrgPerson
objectClass: posixAccount
cn: Twin One
sn: One
uid: twin1
uidNumber: 20051
gidNumber: 20051
homeDirectory: /home/twin1
mail: twins@nr.ln.gov.example
userPassword: Tw-2017-secret!

dn: cn=Twin Two,ou=survey,ou=staff,{NR}
objectClass: inetOrgPerson
objectClass: posixAccount
cn: Twin Two
sn: Two
uid: twin2
uidNumber: 20052
gidNumber: 20052
homeDirectory: /home/twin2
mail: twins@nr.ln.gov.example
userPassword: Tw-2017-secret!
"""

AD_LDIF = f"""
dn: {AD}
objectClass: dcObject
objectClass: organization
o: Liaoning Department of Public Security
dc: ga

dn: cn=Users,{AD}
objectClass: organizationalRole
cn: Users

dn: cn=svc-yitong,cn=Users,{AD}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: svc-yitong
userPassword: {SERVICE_PASSWORD}

dn: cn=刘洋,cn=Users,{AD}
objectClass: inetOrgPerson
objectClass: yitongAdUser
cn: 刘洋
sn: 刘
displayName: 刘洋
sAMAccountName: liu.yang
userPrincipalName: liu.yang@ga.ln.gov.example
mail: liu.yang@ga.ln.gov.example
telephoneNumber: +86 24 8600 0001
title: 科长
objectGUID:: {_guid_b64(1)}
userAccountControl: 512
memberOf: cn=Dept Admins,cn=Users,{AD}
memberOf: cn=Officers,cn=Users,{AD}
userPassword: Ly-2017-secret!

dn: cn=Zhang Min,cn=Users,{AD}
objectClass: inetOrgPerson
objectClass: yitongAdUser
cn: Zhang Min
sn: Zhang
sAMAccountName: zhang.min
mail: zhang.min@ga.ln.gov.example
objectGUID:: {_guid_b64(2)}
userAccountControl: 66048
memberOf: cn=Officers,cn=Users,{AD}
userPassword: Zm-2017-secret!

dn: cn=Former Staff,cn=Users,{AD}
objectClass: inetOrgPerson
objectClass: yitongAdUser
cn: Former Staff
sn: Staff
sAMAccountName: ex.staff
objectGUID:: {_guid_b64(3)}
userAccountControl: 514
userPassword: Ex-2017-secret!

dn: cn=Dept Admins,cn=Users,{AD}
objectClass: groupOfNames
cn: Dept Admins
member: cn=刘洋,cn=Users,{AD}

dn: cn=Officers,cn=Users,{AD}
objectClass: groupOfNames
cn: Officers
member: cn=刘洋,cn=Users,{AD}
member: cn=Zhang Min,cn=Users,{AD}
"""

# The few Active Directory attributes the "ad" tree needs, under their real AD OIDs.
AD_SCHEMA = """
attributetype ( 1.2.840.113556.1.4.2 NAME 'objectGUID' EQUALITY octetStringMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName' EQUALITY caseIgnoreMatch
  SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.656 NAME 'userPrincipalName' EQUALITY caseIgnoreMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl' EQUALITY integerMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.2.102 NAME 'memberOf' EQUALITY distinguishedNameMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 )
objectclass ( 1.3.6.1.4.1.32473.1.1 NAME 'yitongAdUser' AUXILIARY
  MAY ( objectGUID $ sAMAccountName $ userPrincipalName $ userAccountControl $ memberOf ) )
"""

_READER_ACL = """
access to attrs=userPassword
  by anonymous auth
  by * none
access to *
  by dn.exact="{reader}" read
  by self read
  by * none
"""

_OPEN_ACL = """
access to attrs=userPassword
  by anonymous auth
  by * none
access to *
  by * read
"""


@dataclass(frozen=True)
class Tree:
    """One directory tree: its suffix, LDIF and access rules."""

    name: str
    suffix: str
    ldif: str
    acl: str

    @property
    def root_dn(self) -> str:
        return f"cn=admin,{self.suffix}"


def _read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def hrss_tree(extra: str = "") -> Tree:
    return Tree(
        "hrss",
        HRSS,
        _read("hrss.ldif") + "\n" + HRSS_EXTRA + extra,
        _READER_ACL.format(reader=f"cn=yitong-reader,{HRSS}"),
    )


def nr_tree(extra: str = "") -> Tree:
    return Tree("nr", NR, _read("nr.ldif") + "\n" + NR_EXTRA + extra, _OPEN_ACL)


def ad_tree(extra: str = "") -> Tree:
    return Tree(
        "ad", AD, AD_LDIF + extra, _READER_ACL.format(reader=f"cn=svc-yitong,cn=Users,{AD}")
    )


# ----------------------------------------------------------------------------- test CA
@dataclass
class LdapTestCA:
    """A throwaway CA, a server certificate for ``localhost`` and an unrelated second CA."""

    directory: Path
    ca_file: Path
    other_ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def create(cls, directory: Path) -> LdapTestCA:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = dt.datetime.now(dt.UTC)

        def name(cn: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

        def make_ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = (
                x509.CertificateBuilder()
                .subject_name(name(cn))
                .issuer_name(name(cn))
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(
                    x509.KeyUsage(
                        digital_signature=True,
                        content_commitment=False,
                        key_encipherment=False,
                        data_encipherment=False,
                        key_agreement=False,
                        key_cert_sign=True,
                        crl_sign=True,
                        encipher_only=False,
                        decipher_only=False,
                    ),
                    critical=True,
                )
                .add_extension(
                    x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
                )
                .sign(key, hashes.SHA256())
            )
            return cert, key

        ca_cert, ca_key = make_ca("Yitong Test LDAP CA")
        other_cert, _ = make_ca("Unrelated Test CA")
        server_key = ec.generate_private_key(ec.SECP256R1())
        server_cert = (
            x509.CertificateBuilder()
            .subject_name(name("localhost"))
            .issuer_name(ca_cert.subject)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        directory.mkdir(parents=True, exist_ok=True)
        paths = {
            "ca": directory / "ca.pem",
            "other": directory / "other-ca.pem",
            "cert": directory / "server.pem",
            "key": directory / "server.key",
        }
        paths["ca"].write_bytes(ca_cert.public_bytes(pem))
        paths["other"].write_bytes(other_cert.public_bytes(pem))
        paths["cert"].write_bytes(server_cert.public_bytes(pem))
        paths["key"].write_bytes(
            server_key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        paths["key"].chmod(0o600)
        return cls(directory, paths["ca"], paths["other"], paths["cert"], paths["key"])


# ----------------------------------------------------------------------------- slapd
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _module_dir() -> Path | None:
    for d in MODULE_DIRS:
        if (d / "back_mdb.so").exists() or (d / "back_mdb.la").exists():
            return d
    return None


@dataclass
class Slapd:
    """One running slapd; ``stop``/``pause`` let a test take it away mid-run."""

    name: str
    workdir: Path
    trees: tuple[Tree, ...]
    ldap_port: int
    ldaps_port: int | None
    log_level: str = "stats"  # "stats" logs every operation; "0" keeps quiet (benchmarks)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "slapd.log"

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.ldap_port}"

    @property
    def starttls_url(self) -> str:
        """The plain port under the certificate's name, for StartTLS."""
        return f"ldap://localhost:{self.ldap_port}"

    @property
    def ldaps_url(self) -> str:
        assert self.ldaps_port is not None, f"{self.name} has no LDAPS listener"
        return f"ldaps://localhost:{self.ldaps_port}"

    @property
    def ldaps_url_by_ip(self) -> str:
        """The LDAPS port under a name the certificate does not carry (wrong hostname)."""
        assert self.ldaps_port is not None
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def tree(self, name: str) -> Tree:
        return next(t for t in self.trees if t.name == name)

    def _listen(self) -> str:
        urls = [f"ldap://127.0.0.1:{self.ldap_port}/"]
        if self.ldaps_port is not None:
            urls.append(f"ldaps://127.0.0.1:{self.ldaps_port}/")
        return " ".join(urls)

    def start(self, timeout: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                _slapd_binary(),
                "-d",
                self.log_level,
                "-f",
                str(self.workdir / "slapd.conf"),
                "-h",
                self._listen(),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"slapd {self.name} exited ({code}):\n{self.log_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.ldap_port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"slapd {self.name} did not listen within {timeout}s")

    def stop(self) -> None:
        """Stop the server (connections are refused afterwards)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def pause(self) -> None:
        """Freeze the server: TCP connections still open, but nothing answers (a hung DC)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_mark(self) -> int:
        """The current end of the log, to look only at what happens after it."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, mark: int, settle: float = 0.1) -> str:
        """The log after ``mark``, once slapd had ``settle`` seconds to write its last lines.

        slapd writes a RESULT line just after it answers, so a test that checks for the
        *absence* of something waits a moment first.
        """
        time.sleep(settle)
        with self.log_path.open("rb") as fh:
            fh.seek(mark)
            return fh.read().decode("utf-8", errors="replace")

    def wait_for(self, mark: int, *needles: str, timeout: float = 5.0) -> str:
        """The log after ``mark`` as soon as it contains every needle (or fail saying so)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_since(mark, settle=0.0)
            if all(n in text for n in needles) or time.monotonic() > deadline:
                missing = [n for n in needles if n not in text]
                assert not missing, f"slapd {self.name} never logged {missing}:\n{text[-2000:]}"
                return text
            time.sleep(0.02)

    def binds_since(self, mark: int) -> list[str]:
        """The BIND lines slapd logged after ``mark`` (proof that a bind did or did not happen)."""
        return [ln for ln in self.log_since(mark).splitlines() if " BIND " in ln]

    def admin(self, tree: str | None = None) -> object:
        """An ldap3 connection bound as the tree's rootdn, for changing data in a test."""
        import ldap3

        t = self.trees[0] if tree is None else self.tree(tree)
        return ldap3.Connection(
            ldap3.Server(self.url, get_info=ldap3.NONE, connect_timeout=2),
            user=t.root_dn,
            password=ROOT_PASSWORD,
            auto_bind=True,
            receive_timeout=5,
        )


def _slapd_binary() -> str:
    return shutil.which("slapd") or shutil.which("slapd", path="/usr/sbin:/usr/local/sbin") or ""


def require_slapd() -> str:
    """The slapd path; otherwise skip (locally) or fail (``CI=true``) with the reason."""
    binary = _slapd_binary()
    reason = ""
    if not binary:
        reason = "slapd is not installed (apt-get install slapd ldap-utils)"
    elif _module_dir() is None:
        reason = "slapd's back_mdb module was not found"
    elif not (SCHEMA_DIR / "inetorgperson.schema").exists():
        reason = f"the OpenLDAP schema files are not in {SCHEMA_DIR}"
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return binary


class SlapdFactory:
    """Starts slapd instances for the session; every tree is slapadd-ed once and copied."""

    def __init__(self, base: Path, ca: LdapTestCA) -> None:
        self.base = base
        self.ca = ca
        self.instances: list[Slapd] = []
        self._seeds: dict[tuple[str, str], Path] = {}
        self._counter = 0

    def _config(self, workdir: Path, trees: tuple[Tree, ...], *, tls: bool, allow: str) -> str:
        module_dir = _module_dir()
        lines = [
            f"include {SCHEMA_DIR / s}"
            for s in ("core.schema", "cosine.schema", "inetorgperson.schema", "nis.schema")
        ]
        lines += [
            AD_SCHEMA,
            f"modulepath {module_dir}",
            "moduleload back_mdb",
            f"pidfile {workdir / 'slapd.pid'}",
            f"argsfile {workdir / 'slapd.args'}",
            "sizelimit 500",
        ]
        if allow:
            lines.append(f"allow {allow}")
        if tls:
            lines += [
                f"TLSCACertificateFile {self.ca.ca_file}",
                f"TLSCertificateFile {self.ca.cert_file}",
                f"TLSCertificateKeyFile {self.ca.key_file}",
            ]
        for t in trees:
            lines += [
                "database mdb",
                f'suffix "{t.suffix}"',
                f'rootdn "{t.root_dn}"',
                f"rootpw {ROOT_PASSWORD}",
                f"directory {workdir / t.name}",
                "maxsize 16777216",
                "index objectClass eq",
                "index uid,mail,cn eq",
                "index entryUUID eq",
                t.acl,
            ]
        return "\n".join(lines) + "\n"

    def _seed(self, tree: Tree) -> Path:
        """A database directory loaded with the tree, made once per distinct tree."""
        key = (tree.name, tree.ldif)
        if key in self._seeds:
            return self._seeds[key]
        seed = self.base / f"seed-{tree.name}-{len(self._seeds)}"
        (seed / tree.name).mkdir(parents=True)
        (seed / "slapd.conf").write_text(
            self._config(seed, (tree,), tls=False, allow=""), encoding="utf-8"
        )
        ldif = seed / "data.ldif"
        ldif.write_text(tree.ldif, encoding="utf-8")
        proc = subprocess.run(
            [
                _slapd_binary(),
                "-T",
                "add",
                "-q",
                "-f",
                str(seed / "slapd.conf"),
                "-b",
                tree.suffix,
                "-l",
                str(ldif),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"slapadd {tree.name} failed:\n{proc.stdout}\n{proc.stderr}")
        self._seeds[key] = seed / tree.name
        return seed / tree.name

    def start(
        self,
        name: str,
        *trees: Tree,
        tls: bool = False,
        allow: str = "",
        log_level: str = "stats",
    ) -> Slapd:
        """Start a new instance serving ``trees``; stopped at the end of the session."""
        self._counter += 1
        workdir = self.base / f"{name}-{self._counter}"
        workdir.mkdir(parents=True)
        for t in trees:
            shutil.copytree(self._seed(t), workdir / t.name)
        (workdir / "slapd.conf").write_text(
            self._config(workdir, trees, tls=tls, allow=allow), encoding="utf-8"
        )
        last_error: Exception | None = None
        for _attempt in range(3):  # an ephemeral port may be taken between probe and bind
            instance = Slapd(
                name, workdir, trees, _free_port(), _free_port() if tls else None, log_level
            )
            try:
                instance.start()
            except RuntimeError as exc:
                last_error = exc
                continue
            self.instances.append(instance)
            return instance
        raise RuntimeError(f"could not start slapd {name}: {last_error}")

    def stop_all(self) -> None:
        for instance in self.instances:
            instance.stop()


# ----------------------------------------------------------------------------- directory tables
# The ``[directories.<id>]`` tables that point Yitong at these trees (docs/directories.md).

FAST = {
    "connect_timeout": 1.0,
    "receive_timeout": 1.0,
    "timeout": 2.5,
    "circuit_reset_seconds": 0.5,
}


def hrss_table(
    server: Slapd | list[str], ca: LdapTestCA | None, **overrides: Any
) -> dict[str, Any]:
    """OpenLDAP shape over LDAPS, service account, groupOfNames, disabled by description."""
    urls = [server.ldaps_url] if isinstance(server, Slapd) else server
    table: dict[str, Any] = {
        "display_name": "人力资源和社会保障厅",
        "urls": urls,
        "tls": "ldaps",
        "ca_file": str(ca.ca_file) if ca else None,
        "bind_dn": f"cn=yitong-reader,{HRSS}",
        "bind_password": SERVICE_PASSWORD,
        "user_base": f"ou=people,{HRSS}",
        "user_filter": "(objectClass=inetOrgPerson)",
        "login_attribute": "uid",
        "disabled_filter": "(description=account disabled)",
        "group_mode": "search",
        "group_base": f"ou=groups,{HRSS}",
        "role_map": {"it-admins": ["department_admin"]},
        **FAST,
    }
    if table["ca_file"] is None:
        del table["ca_file"]
    table.update(overrides)
    return table


def nr_table(server: Slapd | list[str], **overrides: Any) -> dict[str, Any]:
    """Nested ous, mail login, posixGroup/memberUid, anonymous search, plaintext (dev)."""
    urls = [server.url] if isinstance(server, Slapd) else server
    table: dict[str, Any] = {
        "display_name": "自然资源厅",
        "urls": urls,
        "tls": "none",
        "allow_plaintext": True,
        "anonymous_search": True,
        "user_base": f"ou=staff,{NR}",
        "user_filter": "(objectClass=inetOrgPerson)",
        "login_attribute": "mail",
        "group_mode": "search",
        "group_base": f"ou=roles,{NR}",
        "group_filter": "(objectClass=posixGroup)",
        "group_member_attribute": "memberUid",
        "group_member_value": "uid",
        "role_map": {"approvers": "approver"},
        **FAST,
    }
    table.update(overrides)
    return table


def ad_table(server: Slapd | list[str], **overrides: Any) -> dict[str, Any]:
    """Active Directory shape: sAMAccountName/UPN, objectGUID, memberOf, userAccountControl."""
    urls = [server.url] if isinstance(server, Slapd) else server
    table: dict[str, Any] = {
        "display_name": "公安厅",
        "urls": urls,
        "tls": "none",
        "allow_plaintext": True,
        "bind_dn": f"cn=svc-yitong,cn=Users,{AD}",
        "bind_password": SERVICE_PASSWORD,
        "user_base": f"cn=Users,{AD}",
        "user_filter": "(objectClass=inetOrgPerson)",
        "login_attribute": ["sAMAccountName", "userPrincipalName"],
        "key_attribute": "objectGUID",
        "disabled_filter": "(userAccountControl:1.2.840.113556.1.4.803:=2)",
        "identity_check": "read_entry",
        "group_mode": "member_of",
        "role_map": {"Dept Admins": "department_admin"},
        **FAST,
    }
    table.update(overrides)
    return table


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def ldap_test_ca(tmp_path_factory: pytest.TempPathFactory) -> LdapTestCA:
    """The CA that signed the slapd server certificate, and an unrelated CA."""
    return LdapTestCA.create(tmp_path_factory.mktemp("ldap-ca"))


@pytest.fixture(scope="session")
def slapd_factory(ldap_test_ca: LdapTestCA) -> Iterator[SlapdFactory]:
    require_slapd()
    # A short path: slapd and the unix-socket limits dislike long pytest temp paths.
    base = Path(tempfile.mkdtemp(prefix="yitong-slapd-"))
    factory = SlapdFactory(base, ldap_test_ca)
    try:
        yield factory
    finally:
        factory.stop_all()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def slapd_hrss(slapd_factory: SlapdFactory) -> Slapd:
    """HRSS directory with LDAPS and StartTLS (certificate for ``localhost``)."""
    return slapd_factory.start("hrss", hrss_tree(), tls=True)


@pytest.fixture(scope="session")
def slapd_hrss_replica(slapd_factory: SlapdFactory) -> Slapd:
    """A second HRSS server with the same data and entryUUIDs, for failover."""
    return slapd_factory.start("hrss-replica", hrss_tree(), tls=True)


@pytest.fixture(scope="session")
def slapd_nr(slapd_factory: SlapdFactory) -> Slapd:
    """Natural Resources directory: plain LDAP only (no TLS configured), anonymous search."""
    return slapd_factory.start("nr", nr_tree())


@pytest.fixture(scope="session")
def slapd_ad(slapd_factory: SlapdFactory) -> Slapd:
    """The AD-shaped directory, accepting unauthenticated binds as Active Directory does.

    ``bind_anon_dn`` is the OpenLDAP switch for RFC 4513 §5.1.2 unauthenticated binds (a DN
    with an empty password); ``bind_anon_cred`` (credentials with an empty DN) is allowed too.
    """
    return slapd_factory.start("ad", ad_tree(), allow="bind_anon_cred bind_anon_dn")


@pytest.fixture
def make_slapd(slapd_factory: SlapdFactory) -> Iterator[Callable[..., Slapd]]:
    """Start throwaway instances that a test may stop, freeze or change; cleaned up after it."""
    started: list[Slapd] = []

    def make(name: str, *trees: Tree, tls: bool = False, allow: str = "") -> Slapd:
        instance = slapd_factory.start(name, *trees, tls=tls, allow=allow)
        started.append(instance)
        return instance

    yield make
    for instance in started:
        instance.stop()
