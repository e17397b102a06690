#!/usr/bin/env python3
"""Tessera's benchmark harness; start it with benches/run.sh, which builds the binary.

Runs every scenario of BENCHMARKS.md against real servers on loopback (wrk as the
load generator, SQLite and PostgreSQL as the databases), takes the median of RUNS
runs, reads the servers' memory from /proc, runs the tessera-verify criterion
benchmark, and writes the report. Standard library only.
"""
import base64
import datetime
import http.client
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import setup  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benches"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def env_int(name, default):
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


def seconds(raw):
    raw = raw.strip()
    return int(raw[:-1]) if raw.endswith("s") else int(raw)


@dataclass
class Settings:
    quick: bool
    duration: int
    runs: int
    conns: int
    login_conns: int
    small_sessions: int
    large_sessions: int
    db: str
    bin: str
    out: Path
    criterion_profile: str
    criterion_rounds: int

    @classmethod
    def from_env(cls):
        quick = os.environ.get("QUICK", "") not in ("", "0")
        return cls(
            quick=quick,
            duration=seconds(os.environ.get("DURATION") or ("2s" if quick else "10s")),
            runs=env_int("RUNS", 1 if quick else 3),
            conns=env_int("CONNS", 32),
            login_conns=env_int("LOGIN_CONNS", 64),
            small_sessions=env_int("SMALL_SESSIONS", 1000),
            large_sessions=env_int("LARGE_SESSIONS", 20_000 if quick else 1_000_000),
            db=os.environ.get("DB", ""),
            bin=str(Path(os.environ["BIN"]).resolve()),
            out=Path(os.environ["OUT"]),
            criterion_profile=os.environ.get("CRITERION_PROFILE", "release"),
            criterion_rounds=env_int("CRITERION_ROUNDS", 1 if quick else 7),
        )


# ---------------------------------------------------------------- machine


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def mem_total_mib():
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def loadavg():
    return Path("/proc/loadavg").read_text().split()[0]


def cpu_times():
    """(busy, total) jiffies of the whole machine."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + f[4]
    total = sum(f[:8])
    return total - idle, total


# ---------------------------------------------------------------- server


class Server:
    """One `tessera serve` process on loopback."""

    def __init__(self, h, name, data_dir, port, extra_env=None, database_url=None):
        self.h, self.name, self.data_dir, self.port = h, name, data_dir, port
        self.env = dict(h.server_env)
        self.env.update(extra_env or {})
        if database_url:
            self.env["TESSERA_DATABASE_URL"] = database_url
        self.base = f"http://127.0.0.1:{port}"
        self.api = setup.Api(self.base)
        self.proc = None

    def start(self):
        logf = open(self.h.work / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(
            [self.h.s.bin, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir)],
            stdout=logf, stderr=subprocess.STDOUT, env=self.env)
        self.h.servers.append(self)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if self.api.call("GET", "/healthz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        tail = (self.h.work / f"{self.name}.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"server {self.name} did not start:\n{tail}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self in self.h.servers:
            self.h.servers.remove(self)

    def status(self, key):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def rss_mib(self):
        return self.status("VmRSS") / 1024

    def peak_mib(self):
        return self.status("VmHWM") / 1024

    def reset_peak(self):
        # Writing 5 to clear_refs resets the peak resident set size (VmHWM).
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def cpu_seconds(self):
        f = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / CLK_TCK


# ---------------------------------------------------------------- wrk


class Wrk:
    """One wrk process; `finish()` returns its numbers (from benches/common.lua)."""

    def __init__(self, h, url, script, conns, threads, duration, env=None):
        self.h = h
        self.cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency", "--timeout", "10s",
                    "-s", str(BENCH_DIR / script), url]
        self.errf = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self.errf,
                                     env={**os.environ, "BENCH_DIR": str(BENCH_DIR), **(env or {})})

    def finish(self):
        out = self.proc.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.errf.seek(0)
        err = self.errf.read().decode(errors="replace")
        line = next((ln for ln in out.splitlines() if ln.startswith("BENCH ")), None)
        if self.proc.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({' '.join(self.cmd)}):\n{out}\n{err}")
        r = json.loads(line[len("BENCH "):])
        r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
        r["wrk_cpu"] = usage.ru_utime + usage.ru_stime
        return r


@dataclass
class Measurement:
    """RUNS runs of one load against one server, with its memory and CPU use."""
    name: str
    runs: list = field(default_factory=list)
    peak_mib: float = 0.0
    rss_before_mib: float = 0.0
    notes: list = field(default_factory=list)

    def median(self, key):
        return statistics.median(r[key] for r in self.runs)

    def total(self, key):
        return sum(r.get(key, 0) for r in self.runs)

    def count(self, key):
        return sum(r["counts"].get(key, 0) for r in self.runs)


# ---------------------------------------------------------------- harness


@dataclass
class Fixture:
    """A running server with its database, the password hash of its accounts, an
    access token of a live session, and how many seeded accounts it has logged in."""
    srv: "Server"
    db: object
    dialect: str
    password_hash: str = ""
    access: str = ""
    cursor: int = 0


class Harness:
    def __init__(self, s):
        self.s = s
        self.work = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
        self.servers = []
        self.results = {}
        self.schemas = []
        self.next_port = 18180
        self.server_env = {
            **os.environ,
            "TESSERA_LOG": "warn",
            "REFRESH_TOKEN_SECRET": "benchmark-refresh-secret-0123456789abcdef",
            # Instances sharing a PostgreSQL database must open each other's sealed
            # signing keys (the revocation check starts a second one).
            "TESSERA_MASTER_KEY": "benchmark-master-key-0123456789abcdef0123",
            "TESSERA_ISSUER": "http://bench.tessera",
            # One client address generates all the load here; per-address limits
            # would measure the throttle, not the server.
            "TESSERA_LOGIN_LIMIT_IP": "off", "TESSERA_LOGIN_LIMIT_ACCOUNT": "off",
            "TESSERA_LOGIN_LIMIT_ACCOUNT_IP": "off", "TESSERA_REGISTER_LIMIT_IP": "off",
            "TESSERA_REFRESH_LIMIT_IP": "off",
        }
        for k in ("TESSERA_DATABASE_URL", "ACCESS_TOKEN_SECRET", "TESSERA_SIGNING_ALG"):
            self.server_env.pop(k, None)
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.load_samples = [loadavg()]
        self.hash_workers = self.hash_queue = None
        self.seeded_users = max(s.small_sessions // setup.SESSIONS_PER_USER, 64)
        self.users_file = self.work / "users.txt"
        self.users_file.write_text("".join(f"seed{i}\n" for i in range(min(self.seeded_users, 256))))

    def port(self):
        self.next_port += 1
        return self.next_port

    def cleanup(self):
        for srv in list(self.servers):
            srv.stop()
        for pg in self.schemas:
            try:
                pg.drop_schema()
            except Exception as e:  # noqa: BLE001 - best effort on the way out
                log(f"could not drop schema {pg.schema}: {e}")
        shutil.rmtree(self.work, ignore_errors=True)

    # -- measuring

    def run_once(self, m, srv, load, before=None):
        """One run of `load()` (a started-and-finished wrk) against `srv`, after
        `before()` when given (whose result `load` then takes). Records the server's
        RSS before the run, its peak during it, and the machine's CPU use."""
        ctx = before() if before else None
        m.rss_before_mib = max(m.rss_before_mib, srv.rss_mib())
        srv.reset_peak()
        busy0, total0 = cpu_times()
        srv_cpu0, t0 = srv.cpu_seconds(), time.monotonic()
        r = load(ctx) if before else load()
        m.peak_mib = max(m.peak_mib, srv.peak_mib())
        busy1, total1 = cpu_times()
        elapsed = time.monotonic() - t0
        r["machine_busy"] = (busy1 - busy0) / max(total1 - total0, 1) * os.cpu_count()
        r["server_cpu_s"] = srv.cpu_seconds() - srv_cpu0
        r["server_cpu"] = r["server_cpu_s"] / elapsed
        r["other_cpu"] = max(r["machine_busy"] - r["server_cpu"] - r["wrk_cpu"] / elapsed, 0.0)
        m.runs.append(r)
        log(f"  {m.name} run {len(m.runs)}: {r['rps']:.0f} req/s, p99 {r['p99_us'] / 1000:.2f} ms, "
            f"other load {r['other_cpu']:.2f} cores")

    def measure(self, plan, runs=None):
        """Runs every load of `plan` — (name, server, load, before) — once per round,
        round after round: loads compared with each other see the same machine."""
        ms = {name: Measurement(name) for name, *_ in plan}
        for _ in range(runs or self.s.runs):
            for name, srv, load, before in plan:
                self.run_once(ms[name], srv, load, before)
        self.load_samples.append(loadavg())
        self.results.update(ms)
        return ms

    def wrk(self, srv, path, script, conns=None, threads=2, duration=None, env=None):
        return Wrk(self, srv.base + path, script, conns or self.s.conns, threads,
                   duration or self.s.duration, env)

    def healthz_load(self, fx):
        return (lambda: self.wrk(fx.srv, "/healthz", "plain.lua").finish()), None

    def me_load(self, fx):
        return (lambda: self.wrk(fx.srv, "/v1/me", "me.lua", env={"BENCH_ACCESS_TOKEN": fx.access}).finish()), None

    def refresh_load(self, fx):
        return (lambda path: self.refresh_chains(fx.srv, path).finish()), (lambda: self.chain_sessions(fx))

    def sessions_file(self, fx, count, tag):
        """Logs `count` seeded accounts in; one fresh refresh token per line."""
        tokens = [fx.srv.api.login(f"seed{(fx.cursor + i) % self.seeded_users}")["refresh_token"]
                  for i in range(count)]
        fx.cursor += count
        path = self.work / f"tokens-{tag}.txt"
        path.write_text("\n".join(tokens) + "\n")
        return path

    def chain_sessions(self, fx):
        return self.sessions_file(fx, 16, "refresh")

    def refresh_chains(self, srv, path, duration=None):
        """A refresh-chain wrk (16 connections, 2 threads, one session each), started."""
        return self.wrk(srv, "/v1/auth/refresh", "refresh.lua", conns=16, threads=2, duration=duration,
                        env={"BENCH_TOKENS_FILE": str(path), "BENCH_FAMILIES_PER_THREAD": "8"})

    def login_flood(self, srv, conns, threads=1, duration=None):
        return self.wrk(srv, "/v1/auth/login", "login.lua", conns=conns, threads=threads, duration=duration,
                        env={"BENCH_USERS_FILE": str(self.users_file), "BENCH_PASSWORD": setup.PASSWORD})

    def drained(self, srv):
        """Waits until the hashes queued by an earlier flood (including the ones wrk
        abandoned at its end) have run: the pool admits in order, so once a login is
        admitted and answered, everything queued before it is done."""
        srv.api.login("bench0")

    # -- fixtures

    def start(self, name, data_dir, extra_env=None, database_url=None):
        srv = Server(self, name, data_dir, self.port(), extra_env, database_url).start()
        self.results[f"{name} start MiB"] = srv.rss_mib()
        return srv

    def prepare(self, fx):
        """One registered account (for the password hash), then seeded accounts and
        sessions up to SMALL_SESSIONS, and an access token of a fresh session."""
        fx.srv.api.register("bench0")
        fx.password_hash = fx.db.query("SELECT password_hash FROM users WHERE username = 'bench0'")[0][0]
        t = setup.seed(fx.db, fx.dialect, 0, self.seeded_users, 0, self.s.small_sessions, fx.password_hash)
        log(f"  {fx.srv.name}: seeded {self.seeded_users} accounts and {self.s.small_sessions} sessions "
            f"in {t:.1f} s")
        self.check_seeded(fx, 0)
        fx.access = fx.srv.api.login("bench0")["access_token"]
        self.results[f"{fx.srv.name} idle MiB"] = fx.srv.rss_mib()
        self.results[f"{fx.srv.name} sessions"] = self.session_count(fx.db)
        return fx

    def grow(self, fx):
        """Stops the server, seeds accounts and sessions until the database holds
        LARGE_SESSIONS, and starts it again."""
        name, data_dir, env = fx.srv.name, fx.srv.data_dir, fx.srv.env
        fx.srv.stop()
        have = int(fx.db.query("SELECT count(*) FROM sessions")[0][0])
        want = max(self.s.large_sessions, have)
        users_to = max(want // setup.SESSIONS_PER_USER, self.seeded_users)
        t = setup.seed(fx.db, fx.dialect, self.seeded_users, users_to, self.s.small_sessions,
                       self.s.small_sessions + want - have, fx.password_hash)
        log(f"  {name}: seeded up to {want} sessions in {t:.1f} s")
        self.results[f"{name} seed seconds"] = t
        srv = Server(self, name, data_dir, self.port())
        srv.env = env
        fx.srv = srv.start()
        self.results[f"{name} start MiB"] = fx.srv.rss_mib()
        self.check_seeded(fx, self.seeded_users)
        fx.access = fx.srv.api.login("bench0")["access_token"]
        self.results[f"{name} idle MiB"] = fx.srv.rss_mib()
        self.results[f"{name} sessions"] = self.session_count(fx.db)
        return fx

    def check_seeded(self, fx, first_user):
        """The operator CLI reads a seeded account's sessions through Tessera's own
        store: the seeded rows must be rows Tessera understands. Checks the first
        account from seed<first_user> on that has live sessions."""
        now = int(time.time())
        live = f"s.revoked_at IS NULL AND s.idle_expires_at > {now} AND s.absolute_expires_at > {now}"
        names = ", ".join(f"'seed{i}'" for i in range(first_user, first_user + 20))
        user = fx.db.query(f"SELECT min(u.username) FROM sessions s JOIN users u ON u.id = s.user_id "
                           f"WHERE {live} AND u.username IN ({names})")[0][0]
        want = {r[0] for r in fx.db.query(
            f"SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = '{user}' AND {live}")}
        r = subprocess.run([self.s.bin, "session", "list", user, "--data-dir", str(fx.srv.data_dir)],
                           capture_output=True, text=True, env=fx.srv.env)
        listed = {i for i in want if i in r.stdout}
        if r.returncode != 0 or not want or listed != want:
            raise RuntimeError(f"seeded sessions of {user} do not read back through `tessera session list` "
                               f"(exit {r.returncode}, {len(listed)} of {len(want)} listed): {r.stderr.strip()}")

    def session_count(self, db):
        now = int(time.time())
        total, live = db.query(
            "SELECT count(*), coalesce(sum(CASE WHEN revoked_at IS NULL AND idle_expires_at > "
            f"{now} AND absolute_expires_at > {now} THEN 1 ELSE 0 END), 0) FROM sessions")[0]
        return int(total), int(live)

    def sqlite_fixture(self, name, extra_env=None):
        data = self.work / name
        srv = self.start(name, data, extra_env)
        return self.prepare(Fixture(srv, setup.SqliteDb(str(data / "tessera.db")), "sqlite"))

    def pg_fixture(self, name):
        schema = f"tessera_bench_{os.getpid()}_{name.replace(' ', '_')}"
        pg = setup.PostgresDb(self.s.db, schema)
        pg.drop_schema()
        pg.create_schema()
        self.schemas.append(pg)
        sep = "&" if urllib.parse.urlsplit(self.s.db).query else "?"
        srv = self.start(name, self.work / name, database_url=f"{self.s.db}{sep}options[search_path]={schema}")
        return self.prepare(Fixture(srv, pg, "postgres"))

    # -- scenarios

    def revocation_check(self, fx, via, name):
        """Under a /v1/me load with token A, A's session is logged out through `via`
        (this or another instance); the very next request with A must get 401."""
        srv = fx.srv
        trials = []
        for _ in range(max(self.s.runs, 1)):
            access = srv.api.login("bench0")["access_token"]
            load_s = max(4, self.s.duration // 2)
            load = self.wrk(srv, "/v1/me", "me.lua", duration=load_s, env={"BENCH_ACCESS_TOKEN": access})
            started = time.monotonic()
            time.sleep(1.5)
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)

            def me():
                conn.request("GET", "/v1/me", headers={"authorization": "Bearer " + access})
                r = conn.getresponse()
                body = r.read()
                return r.status, body

            before = [me()[0] for _ in range(5)]
            status, _ = via.api.call("POST", "/v1/auth/logout", {}, token=access)
            t = time.monotonic()
            during_load = t - started < load_s
            after, body = me()
            gap_ms = (time.monotonic() - t) * 1000
            later = [me()[0] for _ in range(20)]
            conn.close()
            r = load.finish()
            code = json.loads(body).get("error") if body else None
            ok = (all(b == 200 for b in before) and status == 204 and after == 401 and during_load
                  and all(x == 401 for x in later) and r["non_2xx_3xx"] > 0)
            trials.append({"before_ok": sum(b == 200 for b in before), "logout": status, "next": after,
                           "during_load": during_load,
                           "next_error": code, "next_ms": gap_ms, "later_401": sum(x == 401 for x in later),
                           "load_2xx": r["requests"] - r["non_2xx_3xx"], "load_refused": r["non_2xx_3xx"],
                           "ok": ok})
            log(f"  revocation check ({name}): logout {status}, next request {after} {code} "
                f"({gap_ms:.1f} ms), wrk refused {r['non_2xx_3xx']} of {r['requests']}")
        self.results["revocation " + name] = trials
        return trials

    def throughput(self):
        """Sections 1, 2 and 4: every server is up at once and the loads take turns,
        so /v1/me and its /healthz, EdDSA and HS256, SQLite and PostgreSQL, and the
        small and the large database are compared under the same machine load."""
        s = self.s
        log("servers: SQLite (EdDSA, 1k and 1M sessions; HS256)" + (", PostgreSQL (1k and 1M)" if s.db else ""))
        small = self.sqlite_fixture("sqlite")
        large = self.grow(self.sqlite_fixture("sqlite large"))
        hs = self.sqlite_fixture("hs256", {"ACCESS_TOKEN_SECRET": "benchmark-access-secret-0123456789abcdef"})
        alg = json.loads(base64.urlsafe_b64decode(hs.access.split(".")[0] + "=="))["alg"]
        if alg != "HS256":
            raise RuntimeError(f"the HS256 server signed with {alg}")
        fixtures = [("sqlite", small), ("sqlite large", large), ("hs256", hs)]
        if s.db:
            fixtures += [("pg", self.pg_fixture("pg")), ("pg large", self.grow(self.pg_fixture("pg large")))]
        self.results["sqlite db MiB"] = (large.srv.data_dir / "tessera.db").stat().st_size / 2**20
        plan = []
        for name, fx in fixtures:
            plan.append((f"{name} healthz", fx.srv, *self.healthz_load(fx)))
            plan.append((f"{name} me", fx.srv, *self.me_load(fx)))
        for name, fx in fixtures:
            if name != "hs256":
                plan.append((f"{name} refresh", fx.srv, *self.refresh_load(fx)))
        self.measure(plan)
        self.revocation_check(small, small.srv, "SQLite, same instance")
        if s.db:
            pg = dict(fixtures)["pg"]
            other = Server(self, "pg second", self.work / "pg second", self.port(), database_url=pg.srv.env[
                "TESSERA_DATABASE_URL"]).start()
            self.revocation_check(pg, other, "PostgreSQL, logout through a second instance")
            other.stop()
        for name, fx in fixtures:
            if fx is not small:
                fx.srv.stop()
        return small

    def logins(self, fx):
        """Section 3, on the small SQLite server."""
        s, srv = self.s, fx.srv
        log("logins")
        # Each login load starts once the hash queue is empty again (`drained`).
        drained = lambda: self.drained(srv)  # noqa: E731
        self.measure([("sqlite login c1", srv, lambda _: self.login_flood(srv, conns=1).finish(), drained)])
        self.measure([("sqlite login flood", srv, lambda _: self.login_flood(srv, conns=s.login_conns).finish(),
                       drained)])
        # As many connections as the pool admits (running + waiting): no 503s.
        self.measure([("sqlite login queue", srv,
                       lambda _: self.login_flood(srv, conns=self.hash_workers + self.hash_queue).finish(),
                       drained)])

        def flood_and_refresh(path):
            flood = self.login_flood(srv, conns=s.login_conns, duration=s.duration + 2)
            time.sleep(1.0)
            chains = self.refresh_chains(srv, path)
            r = chains.finish()
            r["flood"] = flood.finish()
            r["wrk_cpu"] += r["flood"]["wrk_cpu"]
            return r
        # Refresh chains alone and during a flood take turns. Sessions first
        # (`chain_sessions`): during the flood a login may well get 503.
        self.measure([("sqlite refresh idle", srv, *self.refresh_load(fx)),
                      ("sqlite refresh during flood", srv, flood_and_refresh, lambda: self.chain_sessions(fx))])
        srv.stop()

    # glibc malloc settings tried against the server's memory use (section 5).
    MEMORY_VARIANTS = [
        ("MALLOC_ARENA_MAX=2", {"MALLOC_ARENA_MAX": "2"}),
        ("MALLOC_MMAP_THRESHOLD_=1048576", {"MALLOC_MMAP_THRESHOLD_": "1048576"}),
    ]

    def memory_variants(self):
        """The SQLite loads once more (one run each) with each malloc setting."""
        for label, env in self.MEMORY_VARIANTS:
            log(f"SQLite, EdDSA, {label}")
            fx = self.sqlite_fixture(label, env)
            srv = fx.srv
            self.measure([
                (f"{label} me", srv, *self.me_load(fx)),
                (f"{label} refresh", srv, *self.refresh_load(fx)),
                (f"{label} login flood", srv,
                 lambda _: self.login_flood(srv, conns=self.s.login_conns).finish(), lambda: self.drained(srv)),
            ], runs=1)
            srv.stop()

    def hash_pool_setting(self):
        """(hash_workers, hash_queue) as the servers will run them."""
        out = subprocess.run([self.s.bin, "config", "show"], capture_output=True, text=True,
                             env=self.server_env, cwd=self.work, check=True).stdout
        values = dict(line.split(" = ", 1) for line in out.splitlines() if " = " in line)
        try:
            return int(values["hash_workers"]), int(values["hash_queue"])
        except KeyError as e:
            raise RuntimeError(f"`tessera config show` did not list {e}") from None

    CRITERION = ("ed25519_signature_only", "tessera_jose_distinct_tokens", "verifier_distinct_tokens",
                 "tessera_jose_repeated_token", "verifier_repeated_token")

    def criterion(self):
        """The tessera-verify benchmark, CRITERION_ROUNDS rounds of short measurements:
        the two sides of each comparison run next to each other in every round, so a
        machine whose load drifts within a minute still compares like with like."""
        log("tessera-verify criterion benchmark")
        # The release profile (rather than cargo bench's own `bench`) reuses what the
        # release build of the server compiled.
        args = ["cargo", "bench", "--quiet", "-p", "tessera-verify", "--bench", "verifier",
                "--profile", self.s.criterion_profile, "--"]
        if self.s.quick:
            args += ["--warm-up-time", "0.3", "--measurement-time", "1"]
        else:
            args += ["--warm-up-time", "0.5", "--measurement-time", "1.5"]
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        rounds = []
        for _ in range(self.s.criterion_rounds):
            subprocess.run(args, cwd=ROOT, check=True, stdout=sys.stderr)
            rounds.append({name: json.loads((target / "criterion" / "verify_eddsa" / name / "new" /
                                             "estimates.json").read_text())["median"]["point_estimate"]
                           for name in self.CRITERION})
        self.results["criterion"] = rounds

    def run(self):
        self.hash_workers, self.hash_queue = self.hash_pool_setting()
        small = self.throughput()
        self.logins(small)
        self.memory_variants()
        self.criterion()
        self.finished = datetime.datetime.now(datetime.timezone.utc)
        self.load_samples.append(loadavg())


# ---------------------------------------------------------------- report


def fmt_rps(x):
    return f"{x:,.0f}".replace(",", "\u202f")


def fmt_ms(us):
    return f"{us / 1000:.2f} ms"


def verdict(ok):
    return "met" if ok else "**not met**"


def snapshot(h):
    """Everything the report needs, as JSON: the figures and where they were taken."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(h.s).items()},
        "results": {k: vars(v) if isinstance(v, Measurement) else v for k, v in h.results.items()},
        "started": h.started.isoformat(), "finished": h.finished.isoformat(),
        "load_samples": h.load_samples, "hash_workers": h.hash_workers, "hash_queue": h.hash_queue,
        "seeded_users": h.seeded_users,
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "command": " ".join(f"{k}={os.environ[k]}" for k in ("QUICK", "DURATION", "RUNS", "CONNS", "DB")
                            if os.environ.get(k)) + " benches/run.sh",
        "machine": f"{os.cpu_count()} cores, {cpu_model()}, {mem_total_mib() / 1024:.0f} GiB, "
                   f"Linux {platform.release()}",
    }


def write_report(snap, out):
    """Renders BENCHMARKS.md from a snapshot (see `snapshot`)."""
    from types import SimpleNamespace
    s = SimpleNamespace(**snap["settings"])
    R = {k: Measurement(**v) if isinstance(v, dict) and "runs" in v else v for k, v in snap["results"].items()}
    h = SimpleNamespace(**{k: snap[k] for k in ("load_samples", "hash_workers", "hash_queue", "seeded_users")},
                        started=datetime.datetime.fromisoformat(snap["started"]),
                        finished=datetime.datetime.fromisoformat(snap["finished"]))
    lines = []
    w = lines.append
    commit, dirty, cmd = snap["commit"], snap["dirty"], snap["command"]
    binary = "debug" if "/debug/" in s.bin else "release"
    w("# Benchmarks")
    w("")
    w("Written by `benches/run.sh` (see its header for the knobs); every figure is the median")
    w(f"of {s.runs} run(s) of {s.duration} s, wrk on loopback against a {binary} build. Older")
    w("results: [benches/RESULTS.md](benches/RESULTS.md).")
    w("")
    if s.quick:
        w("**QUICK run: a tiny configuration that checks the harness works; these figures are not")
        w(f"measurements** ({s.large_sessions:,} instead of 1,000,000 sessions, short criterion runs).")
        w("")
    w("| | |")
    w("|---|---|")
    w(f"| command | `{cmd.strip()}` |")
    w(f"| date | {h.started:%Y-%m-%d %H:%M} – {h.finished:%H:%M} UTC |")
    w(f"| commit | `{commit}`{' (with uncommitted changes)' if dirty else ''} |")
    w(f"| machine | {snap['machine']} |")
    w(f"| binary | `{s.bin}` ({binary}) |")
    w(f"| load average during the run | {', '.join(h.load_samples)} (sampled after each scenario) |")
    w(f"| hash pool | `hash_workers` = {h.hash_workers} (the default: cores − 1), `hash_queue` = {h.hash_queue} |")
    w("")
    w("wrk, the server and (for PostgreSQL) the database share the same cores. *Other load*")
    w("is the CPU used during a run by everything except the server and wrk (other users'")
    w("processes; for PostgreSQL runs also the database), in cores: it shows how noisy a figure is.")
    w("Throttling is off (all load comes from one address); everything else is the default")
    w("configuration.")
    w("")

    def other(m):
        return f"{statistics.median(r['other_cpu'] for r in m.runs):.2f}"

    def paired(m, base):
        """Median of the per-round ratios: both loads ran in the same rounds."""
        return statistics.median(a["rps"] / b["rps"] for a, b in zip(m.runs, base.runs))

    def row(label, m, base=None, extra=""):
        ratio = f"{paired(m, base):.1%}" if base else ""
        return (f"| {label} | {fmt_rps(m.median('rps'))} | {ratio} | {fmt_ms(m.median('p99_us'))} | "
                f"{m.peak_mib:.1f} | {other(m)} |{extra}")

    header = "| load | req/s | vs `/healthz` | p99 | peak RSS MiB | other load |"
    sep = "|---|---|---|---|---|---|"

    # 1. /v1/me
    w("## 1. `GET /v1/me`: EdDSA and HS256")
    w("")
    w(f"{s.conns} connections, 2 wrk threads, one access token for all requests (so the")
    w("server's verified-token cache answers the signature check after the first request;")
    w("the session row is read on every request). An EdDSA and an HS256 server, each with its")
    w("own `/healthz` figure; all servers of sections 1, 2 and 4 run at once and their loads")
    w("take turns, one run each per round, so compared figures share the machine's load. A")
    w("ratio is the median of the per-round ratios.")
    w("")
    w(header)
    w(sep)
    w(row("`GET /healthz` (EdDSA server)", R["sqlite healthz"]))
    w(row("`GET /v1/me`, EdDSA", R["sqlite me"], R["sqlite healthz"]))
    w(row("`GET /healthz` (HS256 server)", R["hs256 healthz"]))
    w(row("`GET /v1/me`, HS256", R["hs256 me"], R["hs256 healthz"]))
    if "pg me" in R:
        w(row("`GET /healthz` (PostgreSQL)", R["pg healthz"]))
        w(row("`GET /v1/me`, EdDSA, PostgreSQL", R["pg me"], R["pg healthz"]))
    w("")
    w("**A revoked session is refused at once under load.** During a `/v1/me` load with token A,")
    w("a check script (in `benches/harness.py`) logs A's session out and sends the next request")
    w("with A on its own connection:")
    w("")
    w("| where | trials | logout | next request with A | later requests | wrk load: 200 / refused | result |")
    w("|---|---|---|---|---|---|---|")
    for key in [k for k in R if k.startswith("revocation ")]:
        trials = R[key]
        w(f"| {key[len('revocation '):]} | {len(trials)} | "
          f"{', '.join(str(t['logout']) for t in trials)} | "
          f"{', '.join('%s `%s`' % (t['next'], t['next_error']) for t in trials)} | "
          f"{sum(t['later_401'] for t in trials)}/{20 * len(trials)} got 401 | "
          f"{sum(t['load_2xx'] for t in trials)} / {sum(t['load_refused'] for t in trials)} | "
          f"{'all refused at once' if all(t['ok'] for t in trials) else '**FAILED**'} |")
    w("")

    # 2. refresh chains
    w("## 2. Refresh chains")
    w("")
    w("16 connections, 2 wrk threads (`-c16 -t2`), 16 sessions freshly logged in for each run:")
    w("one session per connection, every request presenting the refresh token the previous")
    w("response returned (`benches/refresh.lua`: wrk has no per-connection state, so each")
    w("thread pools its 8 sessions; a session is never refreshed twice at once). A failed")
    w("refresh would inflate the rate with cheap 401s: failures are counted and flagged.")
    w("")
    w("| database | refresh/s | p99 | failed refreshes | peak RSS MiB | other load | vs SQLite |")
    w("|---|---|---|---|---|---|---|")

    def refresh_row(label, m, base=None):
        failed = m.count("failed") + m.count("starved")
        ratio = f"{paired(m, base):.1%}" if base else ""
        return (f"| {label} | {fmt_rps(m.median('rps'))} | {fmt_ms(m.median('p99_us'))} | "
                f"{failed if failed == 0 else f'**{failed} — figure invalid**'} | {m.peak_mib:.1f} | "
                f"{other(m)} | {ratio} |")
    w(refresh_row("SQLite", R["sqlite refresh"]))
    if "pg refresh" in R:
        w(refresh_row("PostgreSQL (one instance)", R["pg refresh"], R["sqlite refresh"]))
    else:
        w("| PostgreSQL | not run: set `DB=postgres://…` | | | | | |")
    w("")

    # 3. logins
    c1, flood, during = R["sqlite login c1"], R["sqlite login flood"], R["sqlite refresh during flood"]
    # CPU time, not latency: at concurrency 1 on a busy machine a login also waits
    # for its thread to be scheduled, which is not the cost of the hash.
    hash_ms = statistics.median(r["server_cpu_s"] / max(r["counts"].get("status_200", 0), 1)
                                for r in c1.runs) * 1000
    latency_ms = c1.median("mean_us") / 1000
    limit = h.hash_workers / (hash_ms / 1000)

    def logins_per_s(m):
        return statistics.median(r["counts"].get("status_200", 0) / (r["duration_us"] / 1e6) for r in m.runs)
    flood_rate = logins_per_s(flood)
    queue = R["sqlite login queue"]
    queue_rate = logins_per_s(queue)

    def responses(m):
        ok, busy = m.count("status_200"), m.count("status_503")
        others = sum(v for r in m.runs for k, v in r["counts"].items() if k not in ("status_200", "status_503"))
        return f"{ok} × 200, {busy} × 503" + (f", **{others} other**" if others else "")
    during_flood = statistics.median(
        r["flood"]["counts"].get("status_200", 0) / (r["flood"]["duration_us"] / 1e6) for r in during.runs)
    idle = R["sqlite refresh idle"]
    idle_p99 = idle.median("p99_us")
    during_p99 = during.median("p99_us")
    p99_ratio = statistics.median(a["p99_us"] / b["p99_us"] for a, b in zip(during.runs, idle.runs))
    during_failed = during.count("failed") + during.count("starved")
    w("## 3. Password logins under a login flood (SQLite)")
    w("")
    w("The hash time is the server's CPU time per login in a run of logins at concurrency 1:")
    w("one Argon2id hash at the default OWASP parameters (19 MiB, 2 passes, 1 lane) plus a")
    w("login's few database rows and one signature, so it slightly overstates the hash and")
    w("understates the limit. (CPU time rather than latency: on a busy machine a lone login")
    w(f"also waits to be scheduled.) The flood is {s.login_conns} connections on one wrk thread")
    w(f"cycling through {min(h.seeded_users, 256)} accounts; only 200s count as logins (the")
    w("server answers 503 at once when the hash queue is full, and wrk sends the next login")
    w(f"right away). A second load with {h.hash_workers + h.hash_queue} connections (hash_workers")
    w("+ hash_queue, so every login is admitted) tells the hashing itself from the cost of")
    w("answering the 503s. Last, refresh chains (as in section 2) alone and during the flood")
    w("take turns; the p99 ratio is the median of the per-round ratios.")
    w("")
    w("| figure | value | target | |")
    w("|---|---|---|---|")
    w(f"| server CPU per login at concurrency 1 (≈ one hash) | {hash_ms:.1f} ms | | |")
    w(f"| login latency at concurrency 1 (mean) | {latency_ms:.1f} ms ({logins_per_s(c1):.1f} logins/s) | | |")
    w(f"| Argon2id limit = hash_workers / hash time | {limit:.1f} logins/s | | |")
    w(f"| logins/s under the flood | {flood_rate:.1f} ({flood_rate / limit:.1%} of the limit) | ≥ 90 % | "
      f"{verdict(flood_rate / limit >= 0.9)} |")
    w(f"| responses under the flood | {responses(flood)} | | |")
    w(f"| logins/s, {h.hash_workers + h.hash_queue} connections (no 503) | {queue_rate:.1f} "
      f"({queue_rate / limit:.1%} of the limit) | | |")
    w(f"| responses with {h.hash_workers + h.hash_queue} connections | {responses(queue)} | | |")
    w(f"| peak RSS under the flood | {flood.peak_mib:.1f} MiB | ≤ 64 MB | {verdict(flood.peak_mib * 1.048576 <= 64)} |")
    w(f"| refresh p99 without the flood | {fmt_ms(idle_p99)}, {fmt_rps(idle.median('rps'))} refresh/s | | |")
    w(f"| refresh p99 during the flood | {fmt_ms(during_p99)} ({p99_ratio:.1f}× per round), "
      f"{fmt_rps(during.median('rps'))} refresh/s, {during_failed} failed | ≤ 3× | "
      f"{verdict(p99_ratio <= 3 and during_failed == 0)} |")
    w(f"| logins/s while the refresh chains ran | {during_flood:.1f} | | |")
    w("")

    # 4. 1M sessions
    w("## 4. A million sessions")
    w("")
    w("Accounts and sessions are seeded in bulk with SQL (`benches/setup.py`: UUID v7 ids,")
    w(f"{setup.SESSIONS_PER_USER} sessions per account, created over the last 29 days, some")
    w("idle-expired or logged out, as Tessera writes them), then the server is restarted.")
    w("")
    w("| database | sessions (live) | load | req/s | vs small database | p99 | peak RSS MiB | other load |")
    w("|---|---|---|---|---|---|---|---|")
    for db, label in (("sqlite", "SQLite"), ("pg", "PostgreSQL")):
        if f"{db} large me" not in R:
            continue
        small, large = R[f"{db} sessions"], R[f"{db} large sessions"]
        for load, name in (("healthz", "`GET /healthz`"), ("me", "`GET /v1/me`"), ("refresh", "refresh chains")):
            a, b = R[f"{db} {load}"], R[f"{db} large {load}"]
            for m, n in ((a, small), (b, large)):
                ratio = f"{paired(b, a):.1%}" if m is b else ""
                w(f"| {label} | {n[0]:,} ({n[1]:,}) | {name} | {fmt_rps(m.median('rps'))} | {ratio} | "
                  f"{fmt_ms(m.median('p99_us'))} | {m.peak_mib:.1f} | {other(m)} |")
    w("")
    w(f"Seeding took {R['sqlite large seed seconds']:.0f} s on SQLite"
      + (f" and {R['pg large seed seconds']:.0f} s on PostgreSQL" if "pg large seed seconds" in R else "")
      + f"; the SQLite file is then {R['sqlite db MiB']:.0f} MiB.")
    w("")

    # 5. memory
    w("## 5. Memory")
    w("")
    w("Resident set size of the server process: right after start-up, idle after the setup")
    w("(a registration and a few logins), and the peak (`VmHWM`, reset through")
    w("`/proc/PID/clear_refs` before each run) over all runs of a load, next to the RSS")
    w("just before the load (after its own preparation: each refresh run first logs in the")
    w("16 sessions it rotates). Target: at most 64 MB (61.0 MiB) under each load. The last")
    w("rows repeat loads (one run each) on fresh servers started with glibc malloc settings")
    w("in the environment.")
    w("")
    w("| server | at start MiB | idle MiB | load | RSS before the load MiB | peak MiB | ≤ 64 MB |")
    w("|---|---|---|---|---|---|---|")
    mem_rows = [
        ("SQLite, 1k sessions", "sqlite",
         ["sqlite healthz", "sqlite me", "sqlite refresh", "sqlite login c1", "sqlite login flood",
          "sqlite login queue", "sqlite refresh idle", "sqlite refresh during flood"]),
        ("SQLite, 1M sessions", "sqlite large",
         ["sqlite large healthz", "sqlite large me", "sqlite large refresh"]),
        ("SQLite, HS256", "hs256", ["hs256 healthz", "hs256 me"]),
        ("PostgreSQL, 1k sessions", "pg", ["pg healthz", "pg me", "pg refresh"]),
        ("PostgreSQL, 1M sessions", "pg large", ["pg large healthz", "pg large me", "pg large refresh"]),
    ] + [(f"SQLite, `{label}`", label, [f"{label} me", f"{label} refresh", f"{label} login flood"])
         for label, _ in Harness.MEMORY_VARIANTS]
    for label, prefix, loads in mem_rows:
        if f"{prefix} idle MiB" not in R:
            continue
        start_mib = R.get(f"{prefix} start MiB")
        start_txt = f"{start_mib:.1f}" if start_mib else ""
        idle_txt = f"{R[prefix + ' idle MiB']:.1f}"
        for i, key in enumerate(loads):
            m = R[key]
            first = i == 0
            w(f"| {label if first else ''} | {start_txt if first else ''} | {idle_txt if first else ''} | "
              f"{key[len(prefix) + 1:]} | {m.rss_before_mib:.1f} | {m.peak_mib:.1f} | {verdict(m.peak_mib * 1.048576 <= 64)} |")
    w("")

    # 6. criterion
    rounds = R["criterion"]

    def us(name):
        return statistics.median(r[name] for r in rounds) / 1000

    def over(name, base):
        return statistics.median(r[name] / r[base] for r in rounds) - 1
    w("## 6. `tessera-verify`: verifying one token")
    w("")
    w("`cargo bench -p tessera-verify --bench verifier` (criterion), run "
      f"{len(rounds)} time(s); each figure is the")
    w("median over those rounds of criterion's median, each ratio the median of the per-round")
    w("ratios (the two sides of a comparison run one after the other). The `Verifier` is built")
    w("with `Verifier::connect` against a local issuer (JWKS with one Ed25519 key, a feed of")
    w("1,000 revoked sessions), so every measured call is local work. *Distinct* cycles")
    w("through 4,096 different tokens; *repeated* verifies the same token every time.")
    w("")
    w("| what | time per token | target |")
    w("|---|---|---|")
    d = over("verifier_distinct_tokens", "tessera_jose_distinct_tokens")
    rp = over("verifier_repeated_token", "tessera_jose_repeated_token")
    w(f"| Ed25519 signature check alone (aws-lc-rs) | {us('ed25519_signature_only'):.2f} µs | |")
    w(f"| `tessera_jose::PublicKeys::verify`, distinct tokens | {us('tessera_jose_distinct_tokens'):.2f} µs | |")
    w(f"| `Verifier::verify`, distinct tokens | {us('verifier_distinct_tokens'):.2f} µs "
      f"({d:+.1%} over `tessera_jose`) | ≤ +20 %: {verdict(d <= 0.2)} |")
    w(f"| `tessera_jose::PublicKeys::verify`, repeated token | {us('tessera_jose_repeated_token'):.2f} µs | |")
    w(f"| `Verifier::verify`, repeated token | {us('verifier_repeated_token'):.2f} µs ({rp:+.1%}) | "
      f"< 2 µs: {verdict(us('verifier_repeated_token') < 2)} |")
    w("")
    w("`Verifier` has no cache of verified tokens: a repeated token costs a full verification.")
    w("")
    analysis = BENCH_DIR / "analysis.md"
    if analysis.exists() and not s.quick:
        w(analysis.read_text().rstrip())
        w("")
    Path(out).write_text("\n".join(lines) + "\n")
    log(f"wrote {out}")


def main():
    if sys.argv[1:2] == ["--report"]:
        # Renders the report again from a saved snapshot (after editing analysis.md).
        write_report(json.loads(Path(sys.argv[2]).read_text()), os.environ.get("OUT", ROOT / "BENCHMARKS.md"))
        return
    s = Settings.from_env()
    h = Harness(s)
    log(f"work directory {h.work}; {s.runs} run(s) of {s.duration} s per load")

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    try:
        h.run()
        snap = snapshot(h)
        saved = ROOT / "target" / ("benchmarks-quick.json" if s.quick else "benchmarks.json")
        saved.parent.mkdir(exist_ok=True)
        saved.write_text(json.dumps(snap, indent=1))
        log(f"saved the figures to {saved} (python3 benches/harness.py --report {saved} renders them again)")
        write_report(snap, s.out)
    finally:
        h.cleanup()


if __name__ == "__main__":
    main()
