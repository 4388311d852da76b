#!/usr/bin/env python3
"""
redis_server.py -- a real redis-server on a free loopback port, for Python tests.

    with RedisServer() as rs:
        AuthService(redis_url=rs.url)
        rs.client().get("blacklist:jti:...")

It runs `redis-server --port N --bind 127.0.0.1 --save "" --appendonly no` in a private
temporary directory (nothing persisted, nothing left behind), waits until PING answers,
and stops it with SIGTERM, then SIGKILL. The C tests have their own starter.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time


class RedisServerError(RuntimeError):
    pass


def _free_port(host):
    # The port is free now; redis-server binds it a moment later. Another process could
    # take it in between, so start() retries with a new port when redis-server exits.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _ping(host, port, timeout=1.0):
    """True when a RESP PING on a fresh connection answers +PONG (no redis-py needed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, executable="redis-server", host="127.0.0.1", startup_timeout=15.0,
                 attempts=5):
        self.host = host
        self.proc = None
        self.port = None
        path = shutil.which(executable)
        if path is None:
            raise RedisServerError("%s not found: run scripts/install-deps.sh (Debian package"
                                   " redis-server)" % executable)
        self.dir = tempfile.mkdtemp(prefix="authsvc-redis-")
        self.logfile = os.path.join(self.dir, "redis.log")
        try:
            for _ in range(attempts):
                if self._start(path, startup_timeout):
                    break
            else:
                raise RedisServerError("redis-server did not start after %d attempts; log:\n%s"
                                       % (attempts, self.log_text()))
        except BaseException:
            self.stop()
            raise
        self.url = "redis://%s:%d" % (host, self.port)

    def _start(self, path, timeout):
        self.port = _free_port(self.host)
        cmd = [path, "--port", str(self.port), "--bind", self.host, "--save", "",
               "--appendonly", "no", "--dir", self.dir, "--logfile", self.logfile,
               "--daemonize", "no"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False                    # most likely the port was taken: retry
            if _ping(self.host, self.port):
                return True
            time.sleep(0.05)
        self._terminate()
        raise RedisServerError("redis-server did not answer PING within %.0f s; log:\n%s"
                               % (timeout, self.log_text()))

    def log_text(self):
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return "(no log)"

    def client(self, **kwargs):
        import redis  # Debian python3-redis
        return redis.Redis(host=self.host, port=self.port, **kwargs)

    def ping(self):
        return _ping(self.host, self.port)

    def _terminate(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def stop(self):
        self._terminate()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
