#!/usr/bin/env python3
"""bench_python.py -- the iam_client package against what a Python service does without it.

    PYTHONPATH=build/normal/python /usr/bin/python3 bench/bench_python.py [--quick]

Prints a Markdown table of median microseconds per call, measured in the same run over
interleaved batches (each batch times N calls; the median is over batches):

* cache hit: `await AsyncIAMClient.get_user(token, secret)` for a token seen before, and the
  blocking IAMClientSync.get_user, next to the first SDK's hit path: a redis-py GET of
  `iam:<token>` from a real redis-server started here, plus json.loads;
* first sight (HS256): get_user of a token never seen (verify, then cache), next to PyJWT's
  jwt.decode alone (signature, exp, aud, iss), and next to the first SDK's whole miss path:
  GET (miss), jwt.decode, SETEX.

Without redis-server the Redis columns are left out. Tokens carry the platform's real claim
set (CONTRACT.md), minted with PyJWT.
"""
import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid

import jwt

import iam_client

SECRET = "bench-secret-0123456789abcdef0123456789abcdef"


def claims(i):
    return {
        "sub": str(1000 + i), "email": f"user{i}@example.org", "roles": ["user", "scientist"],
        "permissions": ["dataset.read", "model.use", "workflow.execute"], "org_id": 7,
        "org_role": ["member"], "team_id": None, "team_role": None, "auth_method": "password",
        "idp_org_id": None, "token_version": 2, "mfa_verified": True,
        "exp": int(time.time()) + 3600, "type": "access", "jti": str(uuid.uuid4()),
        "iss": "omnibioai-auth", "aud": "omnibioai-platform",
    }


def mint(i):
    return jwt.encode(claims(i), SECRET, algorithm="HS256")


def pyjwt_decode(token):
    return jwt.decode(token, SECRET, algorithms=["HS256"], audience="omnibioai-platform",
                      issuer="omnibioai-auth")


def start_redis():
    exe = shutil.which("redis-server") or ("/usr/bin/redis-server"
                                           if os.path.exists("/usr/bin/redis-server") else None)
    if not exe:
        return None, None
    try:
        import redis
    except ImportError:
        return None, None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    r = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.time() + 10
    while True:
        try:
            r.ping()
            return proc, r
        except redis.exceptions.ConnectionError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                return None, None
            time.sleep(0.02)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a few small batches (smoke run)")
    args = ap.parse_args()
    batches, n = (5, 200) if args.quick else (31, 2000)

    proc, r = start_redis()
    # With redis-server, the package runs its Redis tier too (a first sight then includes
    # the blacklist:jti round trip, as in production); without it, local-only.
    net = ({"redis_url": "redis://127.0.0.1:%d" % r.connection_pool.connection_kwargs["port"]}
           if r is not None else {"mode": "local-only"})
    aclient = iam_client.AsyncIAMClient("http://auth-service:8001", secret=SECRET,
                                        cache_max_entries=1_000_000, **net)
    sclient = iam_client.IAMClientSync("http://auth-service:8001", secret=SECRET, **net)
    loop = asyncio.new_event_loop()
    results = {}  # name -> list of per-call microseconds, one per batch

    def record(name, seconds):
        results.setdefault(name, []).append(seconds / n * 1e6)

    hot = [mint(i) for i in range(n)]
    for t in hot:  # seen once: every later call is a hit
        assert loop.run_until_complete(aclient.get_user(t, SECRET)) is not None
        assert sclient.get_user(t) is not None
        if r is not None:
            r.setex(f"iam:{t}", 300, json.dumps(
                {"user_id": claims(0)["sub"], "email": "e", "roles": ["user"],
                 "permissions": ["dataset.read"], "valid": True}))

    async def async_hits(tokens):
        get_user = aclient.get_user
        start = time.perf_counter()
        for t in tokens:
            await get_user(t, SECRET)
        return time.perf_counter() - start

    async def async_first_sight(tokens):
        get_user = aclient.get_user
        start = time.perf_counter()
        for t in tokens:
            await get_user(t, SECRET)
        return time.perf_counter() - start

    for b in range(batches):
        fresh = [mint(100000 + b * n + i) for i in range(n)]
        fresh_old = [mint(900000 + b * n + i) for i in range(n)]

        record("hit_async", loop.run_until_complete(async_hits(hot)))
        start = time.perf_counter()
        for t in hot:
            sclient.get_user(t)
        record("hit_sync", time.perf_counter() - start)
        if r is not None:
            start = time.perf_counter()
            for t in hot:
                json.loads(r.get(f"iam:{t}"))
            record("hit_redis", time.perf_counter() - start)

        record("first_async", loop.run_until_complete(async_first_sight(fresh)))
        start = time.perf_counter()
        for t in fresh:
            pyjwt_decode(t)
        record("first_pyjwt", time.perf_counter() - start)
        if r is not None:
            start = time.perf_counter()
            for t in fresh_old:
                if r.get(f"iam:{t}") is None:
                    p = pyjwt_decode(t)
                    r.setex(f"iam:{t}", 300, json.dumps(
                        {"user_id": p["sub"], "email": p.get("email"), "roles": p.get("roles", []),
                         "permissions": p.get("permissions", []), "valid": True}))
            record("first_old_sdk", time.perf_counter() - start)
        aclient.invalidate_all()  # keep the cache's size steady across batches
        for t in hot:
            sclient.get_user(t)
            loop.run_until_complete(aclient.get_user(t, SECRET))

    med = {k: statistics.median(v) for k, v in results.items()}

    def row(case, ours, peer_name, peer):
        if peer not in med:
            return
        print(f"| {case} | {med[ours]:.2f} µs | {peer_name}: {med[peer]:.2f} µs | "
              f"{med[peer] / med[ours]:.1f}x |")

    print(f"iam_client {iam_client.__version__} over libiamclient {iam_client.LIBRARY_VERSION}; "
          f"Python {sys.version.split()[0]}, PyJWT {jwt.__version__}; "
          f"{batches} batches of {n} calls, medians; token {len(hot[0])} bytes (HS256)")
    print()
    print("| case | iam_client | without it, same run | speed-up |")
    print("|---|---:|---|---:|")
    row("cache hit, `await get_user(token, secret)`", "hit_async",
        "redis-py GET `iam:<token>` + json.loads (the first SDK's hit)", "hit_redis")
    row("cache hit, `IAMClientSync.get_user(token)`", "hit_sync",
        "redis-py GET + json.loads", "hit_redis")
    row("first sight, `await get_user` (HS256 verify, blacklist:jti round trip, cache)", "first_async",
        "PyJWT `jwt.decode` alone", "first_pyjwt")
    row("first sight, `await get_user`", "first_async",
        "GET (miss) + `jwt.decode` + SETEX (the first SDK's miss)", "first_old_sdk")
    if r is None:
        print()
        print("(no redis-server: the Redis baselines were not measured)")
        row("cache hit, `await get_user`", "hit_async", "PyJWT `jwt.decode` (no cache at all)",
            "first_pyjwt")
    def iqr(name):  # interquartile range of the batches, relative to their median
        q = statistics.quantiles(results[name], n=4)
        return (q[2] - q[0]) / med[name]

    print()
    print("noise: interquartile range across batches / median: " +
          ", ".join(f"{k} {iqr(k) * 100:.0f}%" for k in sorted(results)))

    loop.close()
    aclient.close()
    sclient.close()
    if proc is not None:
        r.close()
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
