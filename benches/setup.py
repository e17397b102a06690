"""Benchmark fixtures: accounts and sessions, through the API and in bulk with SQL.

Standard library only. Used by benches/harness.py; the SQL writes rows shaped
exactly like the ones Tessera writes itself (crates/tessera-store/migrations).
"""
import json
import os
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request

PASSWORD = "benchmark password"
# Seeded accounts get this many sessions each on average.
SESSIONS_PER_USER = 4
# Seeded sessions were created at most this long ago (inside the 30-day lifetime).
SPREAD = 29 * 86400


class Api:
    def __init__(self, base):
        self.base = base

    def call(self, method, path, body=None, token=None):
        """Returns (status, parsed JSON body or None)."""
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = "Bearer " + token
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, None

    def register(self, name):
        status, _ = self.call("POST", "/v1/auth/register",
                              {"email": f"{name}@example.com", "username": name, "password": PASSWORD})
        if status not in (201, 409):
            raise RuntimeError(f"register {name}: HTTP {status}")

    def login(self, name):
        for _ in range(300):
            status, body = self.call("POST", "/v1/auth/login",
                                     {"login": name, "password": PASSWORD, "delivery": "body"})
            if status != 503:
                break
            # The hash queue is still full from a login flood; it drains within seconds.
            time.sleep(0.1)
        if status != 200:
            raise RuntimeError(f"login {name}: HTTP {status} {body and body.get('error')}")
        return body


# Deterministic, well-spread pseudo-random bits from a row number (Knuth's
# multiplicative hash), so the same id can be computed for users and for the
# sessions that point at them.
def _mix(i, salt, bits):
    return f"(((({i}) + {salt}) * 2654435761 % 4294967296) / {1 << (32 - bits)})"


def _uuid7_parts(ms, i, salt):
    """Expressions for a UUID v7: 48-bit ms time, version 7, 12 random-looking bits,
    variant 10, 14 random-looking bits, then 16 random-looking bits and 32 bits of the
    row number (unique per row)."""
    return (f"(({ms}) / 65536)", f"(({ms}) % 65536)", _mix(i, salt, 12),
            f"(32768 + {_mix(i, salt + 1, 14)})", _mix(i, salt + 2, 16), f"({i})")


def sqlite_uuid7(ms, i, salt):
    a, b, c, d, e, f = _uuid7_parts(ms, i, salt)
    return f"printf('%08x-%04x-7%03x-%04x-%04x%08x', {a}, {b}, {c}, {d}, {e}, {f})"


def pg_uuid7(ms, i, salt):
    a, b, c, d, e, f = _uuid7_parts(ms, i, salt)
    hexes = [f"lpad(to_hex({a}), 8, '0')", f"lpad(to_hex({b}), 4, '0')", "'7'",
             f"lpad(to_hex({c}), 3, '0')", f"lpad(to_hex({d}), 4, '0')",
             f"lpad(to_hex({e}), 4, '0')", f"lpad(to_hex({f}), 8, '0')"]
    return "(" + " || ".join(hexes) + ")::uuid"


def _user_columns(dialect, now, password_hash):
    """SELECT list for seeded user number `u`."""
    uuid = sqlite_uuid7 if dialect == "sqlite" else pg_uuid7
    created = f"({now} - 86400 * 60 - (u * 7919) % (86400 * 300))"
    ph = password_hash.replace("'", "''")
    return (f"{uuid(created + ' * 1000', 'u', 11)}, 'seed' || u || '@example.com', "
            f"'seed' || u || '@example.com', 'seed' || u, 'Seed User ' || u, '{ph}', {created}, {created}")


def _session_columns(dialect, now, users_from, users_count):
    """SELECT list for seeded session number `s` of seeded user `u`."""
    uuid = sqlite_uuid7 if dialect == "sqlite" else pg_uuid7
    created = f"({now} - (s * 104729) % {SPREAD})"
    user_created = f"({now} - 86400 * 60 - (u * 7919) % (86400 * 300))"
    used = f"({now} - (s * 15485863) % ({now} - {created} + 1))"
    revoked = f"CASE WHEN s % 20 = 0 THEN {used} END"
    reason = "CASE WHEN s % 20 = 0 THEN 'logout' END"
    return (f"{uuid(created + ' * 1000', 's', 21)}, {uuid(user_created + ' * 1000', 'u', 11)}, 'tessera', "
            f"(s * 31) % 200, {used}, {created}, {used}, "
            f"min_({used} + 864000, {created} + 2592000), {created} + 2592000, {revoked}, {reason}, "
            f"'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36', "
            f"'10.' || (s % 200) || '.' || ((s / 200) % 250) || '.' || (s % 251)")


USER_INSERT = ("INSERT INTO users (id, email, email_key, username, fullname, password_hash, "
               "created_at, updated_at) ")
SESSION_INSERT = ("INSERT INTO sessions (id, user_id, client_id, counter, rotated_at, created_at, "
                  "last_used_at, idle_expires_at, absolute_expires_at, revoked_at, revoke_reason, "
                  "user_agent, ip) ")


def seed_sql(dialect, users_from, users_to, sessions_from, sessions_to, password_hash, now):
    """SQL adding seeded users [users_from, users_to) and sessions [sessions_from,
    sessions_to); session s belongs to user users_from + s % (users_to - users_from)."""
    n_users = users_to - users_from
    stmts = []
    if dialect == "sqlite":
        rng = "WITH RECURSIVE r(n) AS (SELECT {a} UNION ALL SELECT n + 1 FROM r WHERE n + 1 < {b}) "
        stmts.append(rng.format(a=users_from, b=users_to) + USER_INSERT
                     + "SELECT " + _user_columns(dialect, now, password_hash) + " FROM (SELECT n AS u FROM r)")
        cols = _session_columns(dialect, now, users_from, n_users).replace("min_(", "min(")
        stmts.append(rng.format(a=sessions_from, b=sessions_to) + SESSION_INSERT
                     + f"SELECT {cols} FROM (SELECT n AS s, {users_from} + n % {n_users} AS u FROM r)")
    else:
        stmts.append(USER_INSERT + "SELECT " + _user_columns(dialect, now, password_hash)
                     + f" FROM generate_series({users_from}, {users_to - 1}) AS u")
        cols = _session_columns(dialect, now, users_from, n_users).replace("min_(", "least(")
        stmts.append(SESSION_INSERT + f"SELECT {cols} FROM (SELECT s, {users_from} + s % {n_users} AS u "
                     f"FROM generate_series({sessions_from}::bigint, {sessions_to - 1}) AS s) AS g")
        stmts.append("ANALYZE users")
        stmts.append("ANALYZE sessions")
    return stmts


class SqliteDb:
    def __init__(self, path):
        self.path = path

    def query(self, sql):
        with sqlite3.connect(self.path, timeout=30) as c:
            return c.execute(sql).fetchall()

    def execute(self, stmts):
        c = sqlite3.connect(self.path, timeout=30)
        try:
            with c:
                for s in stmts:
                    c.execute(s)
        finally:
            c.close()


class PostgresDb:
    """psql against one schema of a PostgreSQL database."""

    def __init__(self, url, schema):
        self.url, self.schema = url, schema

    def _psql(self, sql, schema=True):
        env = {"PGOPTIONS": f"-c search_path={self.schema}"} if schema else {}
        r = subprocess.run(["psql", self.url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
                           input=sql, text=True, capture_output=True, env={**os.environ, **env})
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr.strip()}")
        return r.stdout

    def create_schema(self):
        self._psql(f"CREATE SCHEMA {self.schema}", schema=False)

    def drop_schema(self):
        self._psql(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE", schema=False)

    def query(self, sql):
        out = self._psql(sql)
        return [tuple(line.split("|")) for line in out.splitlines() if line]

    def execute(self, stmts):
        # One transaction for the inserts; ANALYZE runs after it.
        body = [s for s in stmts if not s.startswith("ANALYZE")]
        after = [s for s in stmts if s.startswith("ANALYZE")]
        self._psql("BEGIN;\n" + ";\n".join(body) + ";\nCOMMIT;\n" + "".join(s + ";\n" for s in after))


def seed(db, dialect, users_from, users_to, sessions_from, sessions_to, password_hash):
    """Adds the seeded rows; returns the seconds it took."""
    t = time.monotonic()
    # CAST keeps PostgreSQL's arithmetic in 64 bits (a bare literal below 2^31 is int4).
    now = f"CAST({int(time.time())} AS BIGINT)"
    db.execute(seed_sql(dialect, users_from, users_to, sessions_from, sessions_to, password_hash, now))
    return time.monotonic() - t
