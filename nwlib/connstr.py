"""PostgreSQL connection strings as people paste them: parsed once into libpq keywords, shown without the password.

A ``DATABASE_URL`` is ``postgresql://user:password@host:port/dbname?param=value``.
People paste passwords with ``@ : / ? # %`` in them, not percent-encoded (a
Supabase dashboard password often has them).  libpq would cut such a URL at
the wrong ``@`` and its error would print part of the password (``failed to
resolve host 'Secret@127.0.0.1'``).  So nwlib parses the URL itself:

* the user information ends at the **last** ``@`` that is followed by a
  host (a host name, an IPv4/IPv6 address or nothing, an optional port, then
  ``/``, ``?`` or the end), so the password may hold any character;
* a password holding a character a URL cannot carry unencoded (``@ / ? # :``,
  a ``%`` not followed by two hex digits, a space) is taken as written;
  otherwise it is percent-decoded, as libpq does (``p%40ss`` is ``p@ss``);
* anything that still does not parse is refused with one line that names no
  character of the password.

The result is a dict of libpq keywords (``host``, ``port``, ``dbname``,
``user``, ``password``, ``sslmode`` …) handed to the driver as keywords, so the
password never travels inside a string libpq parses or echoes.
"""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote

from .errors import ConfigError

SCHEMES = ("postgresql://", "postgres://")
_HOSTPART = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]*)(:\d+)?(,(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+)(:\d+)?)*([/?]|$)")
_UNSAFE = re.compile(r"[@/?#:\s]|%(?![0-9A-Fa-f]{2})")

# How the connection reaches PostgreSQL (shown by `nw status`; nwlib works the same through all three).
DIRECT, SESSION_POOLER, TRANSACTION_POOLER = "direct", "session pooler", "transaction pooler"
POOL_MODES = {"direct": DIRECT, "session": SESSION_POOLER, "transaction": TRANSACTION_POOLER}


def _refuse(what: str) -> ConfigError:
    return ConfigError(f"DATABASE_URL {what}",
                       "write it as postgresql://user:password@host:5432/dbname (percent-encode the password, "
                       "or set DB_HOST, DB_USER and DB_PASSWORD separately)")


def parse_url(url: str) -> dict[str, str]:
    """libpq keywords of a ``postgresql://`` URL (see the module's rules); never echoes the password."""
    text = url.strip()
    scheme = next((s for s in SCHEMES if text.lower().startswith(s)), None)
    if scheme is None:
        raise _refuse("does not start with postgresql://")
    rest = text[len(scheme):]
    userinfo, hostpart = "", rest
    for at in (m.start() for m in reversed(list(re.finditer("@", rest)))):
        if _HOSTPART.match(rest[at + 1:]):
            userinfo, hostpart = rest[:at], rest[at + 1:]
            break
    else:
        if "@" in rest:
            raise _refuse("has an '@' but no host after it")
    params: dict[str, str] = {}
    if userinfo:
        user, sep, password = userinfo.partition(":")
        params["user"] = unquote(user)
        if sep and password:
            params["password"] = password if _UNSAFE.search(password) else unquote(password)
    m = _HOSTPART.match(hostpart)
    if not m:
        raise _refuse("has no valid host after the user name and password")
    hosts, _, tail = hostpart.partition("/") if "/" in hostpart.split("?", 1)[0] else (hostpart.split("?", 1)[0], "", "")
    query = hostpart.split("?", 1)[1] if "?" in hostpart else ""
    if "?" in hosts:
        hosts = hosts.split("?", 1)[0]
    dbname = tail.split("?", 1)[0]
    if hosts:
        names, ports = [], []
        for item in hosts.split(","):
            host, port = item, ""
            if item.startswith("["):
                host, _, after = item[1:].partition("]")
                port = after[1:] if after.startswith(":") else ""
            elif ":" in item:
                host, _, port = item.rpartition(":")
            names.append(unquote(host))
            ports.append(port)
        if any(names):
            params["host"] = ",".join(names)
        if any(ports):
            params["port"] = ",".join(p or "5432" for p in ports)
    if dbname:
        params["dbname"] = unquote(dbname)
    for key, value in parse_qsl(query, keep_blank_values=True):
        params[key] = value
    return params


def raw_passwords(url: str) -> list[str]:
    """Every string that may be (part of) the password of ``url`` as written, whatever ``@`` ends it:
    redaction hides them all, also when the URL is refused."""
    _, sep, rest = url.strip().partition("://")
    if not sep:
        return []
    out = []
    for at in (m.start() for m in re.finditer("@", rest)):
        password = rest[:at].partition(":")[2]
        if password:
            out.append(password)
            out.extend(piece for piece in password.split("@") if len(piece) >= 4)
    return out


def from_parts(host: str | None, port: int, dbname: str, user: str, password: str | None,
               sslmode: str | None, sslrootcert: str | None) -> dict[str, str]:
    params = {"host": host or "", "port": str(port), "dbname": dbname, "user": user}
    if password:
        params["password"] = password
    if sslmode:
        params["sslmode"] = sslmode
    if sslrootcert:
        params["sslrootcert"] = sslrootcert
    return {k: v for k, v in params.items() if v != ""}


def display(params: dict[str, str]) -> str:
    """A URL for messages and `nw status`: the password as ``***``, secrets in parameters masked."""
    user = quote(params.get("user", ""), safe="")
    auth = (user + (":***" if params.get("password") else "") + "@") if user or params.get("password") else ""
    host = params.get("host", "")
    socket = host.startswith("/")
    where = "" if socket else ",".join(f"[{h}]" if ":" in h else h for h in host.split(",")) if host else ""
    if params.get("port") and not socket:
        where += ":" + params["port"].split(",")[0]
    extra = {k: ("***" if k in ("password", "sslpassword") else v) for k, v in params.items()
             if k not in ("user", "password", "host", "port", "dbname")}
    if socket:
        extra = {"host": host, **extra}
    query = "&".join(f"{k}={quote(str(v), safe='/')}" for k, v in extra.items())
    return f"postgresql://{auth}{where}/{quote(params.get('dbname', ''), safe='')}" + (f"?{query}" if query else "")


def redact_url(url: str) -> str:
    """``url`` with its password as ``***`` — also when it does not parse (then all user information goes)."""
    try:
        return display(parse_url(url))
    except ConfigError:
        scheme, sep, rest = url.partition("://")
        if not sep:
            return "***"
        at = rest.rfind("@")
        return f"{scheme}://***@{rest[at + 1:]}" if at >= 0 else f"{scheme}://{rest}"


def connection_mode(params: dict[str, str], override: str | None = None) -> str:
    """Direct, session pooler or transaction pooler: DB_POOL_MODE when set, else Supabase's conventions
    (port 6543: transaction mode; a ``pooler.supabase.com`` host on another port: session mode).  Only shown:
    nwlib works the same through all three."""
    if override:
        return POOL_MODES[override]
    host = params.get("host", "").lower()
    port = params.get("port", "5432").split(",")[0]
    if port == "6543":           # Supabase's transaction-mode port, on its pooler host or a custom domain
        return TRANSACTION_POOLER
    if "pooler.supabase.com" in host:
        return SESSION_POOLER
    return DIRECT
