"""PostgreSQL connection strings as people paste them: parsed once into libpq keywords, shown without the password.

A ``DATABASE_URL`` is ``postgresql://user:password@host:port/dbname?param=value``.
People paste passwords with ``@ : / ? # %`` in them, not percent-encoded (a
Supabase dashboard password often has them).  libpq would cut such a URL at
the wrong ``@`` and its error would print part of the password (``failed to
resolve host 'Secret@127.0.0.1'``).  So nwlib parses the URL itself:

* first as libpq does: the user information ends at the first ``@`` before
  any ``/``.  When that reading is a valid URL (a host, a numeric port, known
  parameters), it is the one used, so every URL libpq reads means the same here;
* otherwise the user information ends at the **last** ``@`` followed by a
  valid host, so the password may hold any character;
* a URL both readings accept differently (a database name with an ``@`` in
  it, which is what a pasted password ``pa@ss/1`` looks like) is refused;
* a password holding a character a URL cannot carry unencoded (``@ / ? # :``,
  a ``%`` not followed by two hex digits, a space) is taken as written;
  otherwise it is percent-decoded, as libpq does (``p%40ss`` is ``p@ss``, and
  so ``ab%41cd`` is ``abAcd``: write such a password with ``%25`` for ``%``,
  or in DB_PASSWORD);
* parameters must be libpq's; those ORMs add (Prisma's ``pgbouncer=true``,
  ``connection_limit`` …) are dropped, and ``schema=`` is refused (DB_SCHEMA
  says where nw writes);
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
_HOST = r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]*)"
_HOSTPART = re.compile(rf"^{_HOST}(:\d+)?(,{_HOST}(:\d+)?)*([/?]|$)")
_UNSAFE = re.compile(r"[@/?#:\s]|%(?![0-9A-Fa-f]{2})")

# URL parameters ORMs and poolers' docs add that libpq does not know: dropped (Prisma, Supabase's Prisma guide).
ORM_PARAMS = ("pgbouncer", "connection_limit", "pool_timeout", "statement_cache_size", "socket_timeout", "sslaccept",
              "sslidentity", "pool_mode")

# How the connection reaches PostgreSQL (shown by `nw status`; nwlib works the same through all three).
DIRECT, SESSION_POOLER, TRANSACTION_POOLER = "direct", "session pooler", "transaction pooler"
UNKNOWN = "no pooler recognised"
POOL_MODES = {"direct": DIRECT, "session": SESSION_POOLER, "transaction": TRANSACTION_POOLER}


def _refuse(what: str) -> ConfigError:
    if "parameter" in what:
        return ConfigError(f"DATABASE_URL {what}", "remove it (libpq's parameters include sslmode, sslrootcert, connect_timeout, "
                                                   "application_name, options)")
    return ConfigError(f"DATABASE_URL {what}",
                       "write it as postgresql://user:password@host:5432/dbname (percent-encode the password, "
                       "or set DB_HOST, DB_USER and DB_PASSWORD separately)")


class _Unreadable(Exception):
    """This reading of the URL does not work (the message names no part of the password)."""


def _libpq_keywords() -> frozenset[str] | None:
    try:
        from psycopg import pq
    except ImportError:
        return None
    return frozenset(o.keyword.decode() for o in pq.Conninfo.get_defaults())


def _read(userinfo: str | None, hostpart: str, keywords: frozenset[str] | None) -> dict[str, str]:
    """libpq keywords of one reading (user information, then the rest), or _Unreadable."""
    m = _HOSTPART.match(hostpart)
    if not m:
        raise _Unreadable("has no valid host (and numeric port) after the user name and password")
    params: dict[str, str] = {}
    if userinfo is not None:
        user, sep, password = userinfo.partition(":")
        params["user"] = unquote(user)
        if sep and password:
            params["password"] = password if _UNSAFE.search(password) else unquote(password)
    path, _, query = hostpart.partition("?")
    hosts, _, dbname = path.partition("/")
    if "#" in dbname or "#" in query:
        raise _Unreadable("has a '#' outside the password")
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
        if key in ORM_PARAMS:
            continue
        if key == "schema":
            raise ConfigError("DATABASE_URL has schema=… (an ORM's parameter): nw writes to DB_SCHEMA",
                              "remove schema=… from DATABASE_URL and set DB_SCHEMA instead")
        if keywords is not None and key not in keywords:
            raise _Unreadable(f"has a parameter {key!r} that is not a PostgreSQL connection option")
        params[key] = value
    if userinfo and "password" in params and not params.get("host") and not params.get("hostaddr"):
        raise _Unreadable("has a password but no host after it (cut off when pasted?)")
    return params


def parse_url(url: str) -> dict[str, str]:
    """libpq keywords of a ``postgresql://`` URL (see the module's rules); never echoes the password."""
    text = url.strip()
    scheme = next((s for s in SCHEMES if text.lower().startswith(s)), None)
    if scheme is None:
        raise _refuse("does not start with postgresql://")
    rest = text[len(scheme):]
    if not rest or rest in ("/", "@"):
        raise _refuse("has no host or database after postgresql://")
    keywords = _libpq_keywords()
    first = rest.find("@", 0, rest.find("/") if "/" in rest else len(rest))
    ats = [first] + [m.start() for m in reversed(list(re.finditer("@", rest))) if m.start() != first]
    readings: list[tuple[str | None, str]] = [(rest[:at], rest[at + 1:]) if at >= 0 else (None, rest) for at in ats]
    # Why it fails is told from the reading that ends the user information at the last '@': everything after
    # that '@' is surely not the password, so the reason can name a parameter or a port without showing any of it.
    last = rest.rfind("@")
    why = None
    for i, (userinfo, hostpart) in enumerate(readings):
        try:
            params = _read(userinfo, hostpart, keywords)
        except _Unreadable as exc:
            if ats[i] == last:
                why = str(exc)
            continue
        if i == 0 and "@" in params.get("dbname", ""):
            # A database name with an '@' — or a pasted password 'pa@ss/…' read the libpq way: if another reading
            # works too, there is no telling which was meant.
            for other_userinfo, other_hostpart in readings[1:]:
                try:
                    _read(other_userinfo, other_hostpart, keywords)
                except _Unreadable:
                    continue
                raise _refuse("can be read two ways (a password with an unencoded '@' and '/'?)")
        return params
    raise _refuse(why or "does not parse")


def raw_passwords(url: str, schemeless: bool = False) -> list[str]:
    """Every string that may be the password in a URL's user information, whatever ``@`` ends it (for a URL that
    does not parse, or any URL besides the database's): redaction hides them all.  ``schemeless``: also in
    ``user:secret@host`` written without a scheme (an endpoint, not a path)."""
    _, sep, rest = url.strip().partition("://")
    if not sep:
        if not schemeless:
            return []
        rest = url.strip()
    return [p for p in (rest[:m.start()].partition(":")[2] for m in re.finditer("@", rest)) if p]


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


def mask_userinfo(text: str) -> str:
    """Every ``scheme://user:password@`` in ``text`` as ``scheme://user:***@`` (whatever the URL: a last line of defence)."""
    return re.sub(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s@:]*):[^/\s@]*@", r"\1:***@", text)


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


def connection_mode(params: dict[str, str], override: str | None = None, url: str | None = None) -> str:
    """Direct, session pooler or transaction pooler: DB_POOL_MODE when set; else Supabase's conventions
    (port 6543: transaction mode; a ``pooler.supabase.com`` host on another port: session mode; a
    ``db.<ref>.supabase.co`` host: direct) or a URL's ``pgbouncer=true``; else "no pooler recognised".
    Only shown: nwlib works the same through all three."""
    if override:
        return POOL_MODES[override]
    host = params.get("host", "").lower()
    port = params.get("port", "5432").split(",")[0]
    if port == "6543" or (url and re.search(r"[?&]pgbouncer=true\b", url, re.IGNORECASE)):
        return TRANSACTION_POOLER
    if "pooler.supabase.com" in host:
        return SESSION_POOLER
    if host.endswith(".supabase.co"):
        return DIRECT
    return UNKNOWN
