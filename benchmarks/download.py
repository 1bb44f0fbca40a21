"""Benchmark: download + verify of a large image from a local HTTP server (issue 4).

Measures, in one run and against one server process:
  (a) in-memory hashlib SHA-512 over a buffer of the same total size,
  (b) ``curl -s -o f URL && sha512sum f``,
  (c) ``download_image`` (in a child process: its time and peak RSS),
and checks the targets: (c) runs at >= 85% of (a)'s rate, is >= 1.3x faster
than (b), and stays under 150 MB of RSS.

    .venv/bin/python benchmarks/download.py --size 2GiB --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 1 << 20
RSS_LIMIT = 150 * 10**6
RATE_TARGET = 0.85
CURL_TARGET = 1.3
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1 << 10, "m": 10**6, "mb": 10**6,
          "mib": 1 << 20, "g": 10**9, "gb": 10**9, "gib": 1 << 30}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 2GiB, 512MiB, 1000000)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


# --- the image and the server -------------------------------------------


def make_image(path: Path, size: int) -> str:
    """Write ``size`` real (not sparse) bytes; every block differs. Return SHA-512."""
    block = bytearray(os.urandom(16 * MIB))
    digest = hashlib.sha512()
    with path.open("wb") as out:
        written = 0
        index = 0
        while written < size:
            block[:8] = index.to_bytes(8, "big")
            piece = memoryview(block)[:min(len(block), size - written)]
            out.write(piece)
            digest.update(piece)
            written += len(piece)
            index += 1
    return digest.hexdigest()


def serve(directory: Path) -> None:
    """Child process: serve ``directory`` with sendfile, print the port, run forever."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = directory / self.path.lstrip("/")
            with path.open("rb") as image:
                size = os.fstat(image.fileno()).st_size
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                self.wfile.flush()
                self.connection.sendfile(image)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


# --- the three measurements ---------------------------------------------


def hash_in_memory(size: int, chunk: int) -> float:
    """Seconds for hashlib SHA-512 over ``size`` bytes held in memory."""
    buffer = memoryview(bytearray(os.urandom(64 * MIB)))
    digest = hashlib.sha512()
    started = time.perf_counter()
    left = size
    while left:
        for offset in range(0, len(buffer), chunk):
            piece = buffer[offset:offset + min(chunk, left)]
            digest.update(piece)
            left -= len(piece)
            if not left:
                break
    return time.perf_counter() - started


def curl_then_sha512sum(url: str, out: Path, expected: str) -> float:
    started = time.perf_counter()
    subprocess.run(["curl", "-s", "-f", "-o", out, url], check=True)
    line = subprocess.run(["sha512sum", out], check=True, capture_output=True, text=True).stdout
    elapsed = time.perf_counter() - started
    if line.split()[0] != expected:
        raise SystemExit(f"curl baseline got a wrong SHA-512 for {url}")
    out.unlink()
    return elapsed


def gitreg_download(url: str, work: Path, size: int, expected: str) -> tuple[float, int]:
    """Run download_image in a fresh process; return (seconds, peak RSS in bytes)."""
    child = subprocess.run(
        [sys.executable, __file__, "--child", url, str(work), str(size), expected],
        check=True, capture_output=True, text=True,
    )
    report = json.loads(child.stdout)
    return report["seconds"], report["maxrss"]


def child(url: str, work: Path, size: int, expected: str) -> None:
    from gitreg.transport.download import download_image

    final = work / "cache" / "image"
    started = time.perf_counter()
    download_image(url, work / "partial" / "image", final, size=size, sha512=expected,
                   deadline=3600.0, min_rate=10 * 1024)
    seconds = time.perf_counter() - started
    final.unlink()
    print(json.dumps({"seconds": seconds, "maxrss": peak_rss()}))


def peak_rss() -> int:
    """Peak RSS of this process in bytes.

    Linux keeps ru_maxrss across fork and exec, so a child started by a big
    parent reports the parent's size; VmHWM belongs to this process's own
    address space. ru_maxrss (KiB) only where /proc is missing.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- the run -------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("2GiB"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the image is written (default: a new temporary directory)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gitreg-bench-download-", dir=args.dir))
    server = None
    try:
        print(f"machine: {machine()}")
        print(f"image: {args.size} bytes in {work}")
        expected = make_image(work / "image.raw", args.size)
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(work)],
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}/image.raw"

        hashing, curl, ours, rss = [], [], [], []
        for run in range(1, args.repeat + 1):
            hashing.append(hash_in_memory(args.size, MIB))
            curl.append(curl_then_sha512sum(url, work / "curl.out", expected))
            seconds, peak = gitreg_download(url, work, args.size, expected)
            ours.append(seconds)
            rss.append(peak)
            print(f"run {run}: hashlib {hashing[-1]:.3f} s, curl+sha512sum {curl[-1]:.3f} s, "
                  f"download_image {seconds:.3f} s, peak RSS {peak / 1e6:.1f} MB")

        rate = {name: args.size / min(times) / MIB
                for name, times in (("hashlib", hashing), ("curl", curl), ("gitreg", ours))}
        rate_ratio = min(hashing) / min(ours)
        speedup = min(curl) / min(ours)
        peak = max(rss)
        checks = [
            (f"download_image rate / in-memory hashlib rate = {rate_ratio:.2f}",
             f">= {RATE_TARGET}", rate_ratio >= RATE_TARGET),
            (f"curl+sha512sum time / download_image time = {speedup:.2f}",
             f">= {CURL_TARGET}", speedup >= CURL_TARGET),
            (f"peak RSS of the downloading process = {peak / 1e6:.1f} MB",
             f"< {RSS_LIMIT / 1e6:.0f} MB", peak < RSS_LIMIT),
        ]
        print(f"\nbest of {args.repeat} (MiB/s): hashlib in memory {rate['hashlib']:.0f}, "
              f"curl+sha512sum {rate['curl']:.0f}, download_image {rate['gitreg']:.0f}")
        print(f"median (s): hashlib {statistics.median(hashing):.3f}, "
              f"curl+sha512sum {statistics.median(curl):.3f}, "
              f"download_image {statistics.median(ours):.3f}")
        for text, target, passed in checks:
            print(f"{'PASS' if passed else 'FAIL'}: {text} (target {target})")
        return 0 if all(passed for _, _, passed in checks) else 1
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(Path(sys.argv[2]))
    elif len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        sys.exit(main())
