"""Glance adapter: calls per image, and upload rate and memory against python-glanceclient.

Targets (issue 10): registering N images costs O(N) Glance calls and a no-op
sync makes no write (N = 10 and 100); uploading a 2 GiB image runs at >= 80%
of the rate of ``glance image-create --file`` for the same file in the same
run, with a peak RSS under 150 MB.

A real Glance 33 (tests/fixtures/glance.py, installed by scripts/glance-setup)
runs on 127.0.0.1 with SQLite and the file store. The call counts come from
``gitreg.adapters.reconcile.Reconciler`` driving ``GlanceBackend`` (the
code a site sync runs after its apply step) over N verified raw images of
64 KiB in a temporary site state. The upload compares ``glance
image-create`` (python-glanceclient, in the Glance venv) with
``GlanceBackend.upload`` in a fresh child process, whose ``VmHWM`` is its
peak RSS. Exit status 0 = every target met, 1 = one missed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import say
from tests.fixtures.glance import GlanceServer

CHILD = r"""
import json, os, sys, time
from pathlib import Path
from gitreg.adapters.glance import GlanceBackend
from gitreg.adapters.interface import Upload
from gitreg.site.cloud_config import CloudConfig
path, sha512 = Path(sys.argv[1]), sys.argv[2]
backend = GlanceBackend.from_config(CloudConfig(name="bench", type="glance", cloud="bench"))
started = time.perf_counter()
remote = backend.upload(Upload(path, "raw", path.stat().st_size, sha512), name="gitreg-2g",
                        visibility="private", properties={"gitreg_cloud": "bench"})
wall = time.perf_counter() - started
hwm = [l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM")]
print(json.dumps({"wall": wall, "ok": remote.sha512 == sha512, "id": remote.id,
                  "hwm_kb": int(hwm[0].split()[1])}))
"""


def calls(glance: GlanceServer, root: Path, count: int) -> dict[str, int]:
    from gitreg.adapters.glance import GlanceBackend
    from gitreg.adapters.interface import VerifiedImage
    from gitreg.adapters.reconcile import Reconciler
    from gitreg.adapters.records import CloudRecords
    from gitreg.site.cloud_config import CloudConfig
    from gitreg.site.state import SiteState

    name = f"bench-{count}"
    config = CloudConfig(name=name, type="glance", cloud="bench")
    images = []
    for i in range(count):
        body = os.urandom(64 * 1024)
        path = root / f"{name}-{i}.img"
        path.write_bytes(body)
        images.append(VerifiedImage(
            uuid=f"00000000-0000-4000-8000-{count:04d}{i:08d}", registry="bench",
            list_uuid="11111111-1111-4111-8111-111111111111", list_version="1",
            sha512=hashlib.sha512(body).hexdigest(), size=len(body), path=path,
            metadata={"dc:title": f"image {i}", "hv:version": "1", "hv:format": "raw",
                      "sl:arch": "x86_64", "sl:os": "Linux", "sl:osname": "Ubuntu"},
            list_keys={"dc:identifier": "11111111-1111-4111-8111-111111111111"}, vo=None))
    figures: dict[str, int] = {}
    with SiteState.open(root / f"{name}.sqlite") as state:
        for run in ("first", "noop"):
            backend = GlanceBackend.from_config(config)
            outcome = Reconciler(config, backend, CloudRecords(state, name), work_dir=root,
                                 now=datetime.now(UTC)).run(images)
            if outcome.error or outcome.failed:
                raise SystemExit(f"reconcile failed: {outcome.error} {outcome.failed}")
            figures[f"{run}_reads"], figures[f"{run}_writes"] = outcome.reads, outcome.writes
    return figures


def upload(glance: GlanceServer, root: Path, size: int) -> dict[str, float]:
    path = root / "big.img"
    digest = hashlib.sha512()
    with path.open("wb") as f:
        block = os.urandom(16 * 1024 * 1024)
        for i in range(size // len(block)):
            chunk = i.to_bytes(8, "big") + block[8:]
            digest.update(chunk)
            f.write(chunk)
    sha512 = digest.hexdigest()
    say("glance image-create --file ...")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    started = time.perf_counter()
    done = subprocess.run(
        [str(glance.bin / "glance"), "--os-image-url", glance.url, "--os-auth-token", "x",
         "image-create", "--name", "glanceclient-2g", "--disk-format", "raw",
         "--container-format", "bare", "--file", str(path)],
        capture_output=True, text=True, check=False, env=env)
    baseline = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"glance image-create failed: {done.stderr[-2000:]}")
    say("GlanceBackend.upload ...")
    child = subprocess.run([sys.executable, "-c", CHILD, str(path), sha512], capture_output=True,
                           text=True, check=True)
    result = json.loads(child.stdout)
    if not result["ok"]:
        raise SystemExit("gitreg upload: os_hash_value differs")
    return {"size": size, "glanceclient_s": baseline, "gitreg_s": result["wall"],
            "ratio": baseline / result["wall"], "peak_rss_mb": result["hwm_kb"] / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="10,100")
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitreg-bench-glance-") as scratch:
        root = Path(scratch)
        glance = GlanceServer(root / "glance")
        glance.start()
        clouds = glance.clouds_yaml(root / "clouds.yaml", name="bench")
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(clouds)
        try:
            results: dict[str, object] = {}
            for count in (int(c) for c in args.counts.split(",")):
                say(f"reconciling {count} images ...")
                results[f"calls_{count}"] = calls(glance, root, count)
            if args.size_mib:
                results["upload"] = upload(glance, root, args.size_mib * 1024 * 1024)
        finally:
            glance.stop()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    ok = all(v["noop_writes"] == 0 for k, v in results.items()  # type: ignore[index]
             if k.startswith("calls_"))
    if "upload" in results:
        up = results["upload"]
        ok = ok and up["ratio"] >= 0.8 and up["peak_rss_mb"] < 150  # type: ignore[index]
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
