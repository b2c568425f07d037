#!/usr/bin/env python3
"""Prefetch throughput: hf_snapshot against parallel curl, same files, same fast static server, same run.

Not part of CI. Serves a Hub-shaped tree of static files with Debian's nginx on loopback (the Hub's API answers as
files, the Hub's headers on the file downloads: X-Repo-Commit, ETag = sha256), so that the server is not the
bottleneck. Then, alternating for --rounds rounds:

- ``hf_snapshot``: the module's entry point as Ansible runs it on a host (resolve, list, disk check, download with
  --parallelism files at once, link into the HF cache layout);
- ``curl``: the same files with ``xargs -P <parallelism> curl`` into a directory.

Each run starts alike: the other tool's files deleted, the page cache's dirty pages written back (``sync``), the
order of the two alternating between rounds.

Reports the best time of each, the throughput ratio hf_snapshot/curl (exit 1 below --min-ratio, 0.9 by default),
and the time of a no-change re-run of hf_snapshot over a 163-shard repository (DeepSeek-R1's shard count; small
shards, since only the check is timed).

Usage: .venv/bin/python benchmarks/prefetch_throughput.py [--shards 8] [--shard-mib 256] [--parallelism 8]
Needs: nginx (apt-get install nginx-light), curl. Writes under --workdir (default: a temporary directory).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MODULE = REPO_ROOT / "plugins" / "modules" / "hf_snapshot.py"
COMMIT_BIG = "b" * 40
COMMIT_163 = "c" * 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def write_repo(root: Path, repo: str, commit: str, shards: int, shard_bytes: int) -> dict[str, str]:
    """The Hub's answers for one repo as static files under root; returns {uri: etag} for nginx."""
    resolve = root / repo / "resolve" / commit
    resolve.mkdir(parents=True)
    tree, etags = [], {}
    small = {
        "config.json": json.dumps({"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3"}).encode(),
        "tokenizer_config.json": b'{"model_max_length": 163840}\n',
        "generation_config.json": b'{"temperature": 0.6}\n',
    }
    names = [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)]
    index = {"weight_map": {f"w{i}": n for i, n in enumerate(names)}}
    small["model.safetensors.index.json"] = json.dumps(index).encode()
    for name, data in small.items():
        (resolve / name).write_bytes(data)
        tree.append({"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)})
        etags[f"/{repo}/resolve/{commit}/{name}"] = git_blob_id(data)
    block = os.urandom(1 << 20)
    for i, name in enumerate(names):
        h = hashlib.sha256()
        with open(resolve / name, "wb") as fh:
            head = f"shard {i}".encode().ljust(64, b"\0")
            fh.write(head)
            h.update(head)
            left = shard_bytes - len(head)
            while left > 0:
                piece = block[: min(len(block), left)]
                fh.write(piece)
                h.update(piece)
                left -= len(piece)
        tree.append({"type": "file", "path": name, "size": shard_bytes, "oid": "0" * 40,
                     "lfs": {"oid": h.hexdigest(), "size": shard_bytes, "pointerSize": 134}})
        etags[f"/{repo}/resolve/{commit}/{name}"] = h.hexdigest()
    api = root / "api" / "models" / repo
    (api / "revision").mkdir(parents=True)
    (api / "tree").mkdir(parents=True)
    info = {"id": repo, "sha": commit, "private": False, "gated": False,
            "siblings": [{"rfilename": e["path"]} for e in tree]}
    (api / "revision" / "main").write_text(json.dumps(info))
    (api / "revision" / commit).write_text(json.dumps(info))
    (api / "tree" / commit).write_text(json.dumps(tree))
    return etags


def nginx_conf(work: Path, root: Path, port: int, etags: dict[str, str]) -> Path:
    entries = "\n".join(f'        "{uri}" "\\"{etag}\\"";' for uri, etag in etags.items())
    conf = f"""
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    map_hash_bucket_size 256;
    map_hash_max_size 8192;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {work}/nginx-temp;
    proxy_temp_path {work}/nginx-temp;
    fastcgi_temp_path {work}/nginx-temp;
    uwsgi_temp_path {work}/nginx-temp;
    scgi_temp_path {work}/nginx-temp;
    map $uri $hub_etag {{
        default "";
{entries}
    }}
    map $uri $hub_commit {{
        default "";
        "~/resolve/(?<c>[0-9a-f]{{40}})/" $c;
    }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        etag off;
        location /api/ {{ default_type application/json; }}
        location / {{
            default_type application/octet-stream;
            add_header X-Repo-Commit $hub_commit always;
            add_header ETag $hub_etag always;
        }}
    }}
}}
"""
    (work / "nginx-temp").mkdir(exist_ok=True)
    path = work / "nginx.conf"
    path.write_text(conf)
    return path


def run_hf_snapshot(endpoint: str, repo: str, hf_home: Path, parallelism: int, verify: str = "quick") -> dict:
    args = {"repo_id": repo, "hf_home": str(hf_home), "endpoint": endpoint, "parallelism": parallelism,
            "disk_reserve_gb": 0.5, "verify": verify}
    args_file = hf_home.parent / f"args-{time.monotonic_ns()}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "collections"))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, env=env,
                          check=False)
    wall = time.monotonic() - started
    result = json.loads(proc.stdout)
    if result.get("failed"):
        raise SystemExit(f"hf_snapshot failed: {result.get('msg')}")
    result["wall"] = wall
    return result


def run_curl(endpoint: str, repo: str, commit: str, names: list[str], dest: Path, parallelism: int) -> float:
    dest.mkdir(parents=True)
    urls = "".join(f"{endpoint}/{repo}/resolve/{commit}/{n}\n" for n in names)
    started = time.monotonic()
    proc = subprocess.run(
        ["xargs", "-P", str(parallelism), "-n", "1", "curl", "-sSf", "--remote-name", "--output-dir", str(dest)],
        input=urls, text=True, capture_output=True, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"parallel curl failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--shard-mib", type=int, default=256)
    parser.add_argument("--parallelism", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--min-ratio", type=float, default=0.9)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    for tool in ("nginx", "curl", "xargs"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is needed: apt-get install nginx-light curl")
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"

    work = args.workdir or Path(tempfile.mkdtemp(prefix="prefetch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # nginx's workers run as an unprivileged user and must read the files
    root = work / "www"
    if root.exists():
        shutil.rmtree(root)
    big, many = "bench/deepseek-like", "bench/deepseek-163"
    etags = write_repo(root, big, COMMIT_BIG, args.shards, args.shard_mib << 20)
    etags.update(write_repo(root, many, COMMIT_163, 163, 64 << 10))
    port = free_port()
    conf = nginx_conf(work, root, port, etags)
    endpoint = f"http://127.0.0.1:{port}"
    nginx = subprocess.Popen([nginx_bin, "-c", str(conf), "-g", "daemon off;"])
    try:
        for _attempt in range(50):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if nginx.poll() is not None:
                raise SystemExit(f"nginx exited: see {work}/nginx-error.log (use --workdir to keep it)")
            time.sleep(0.1)
        names = [e["path"] for e in json.loads((root / "api/models" / big / "tree" / COMMIT_BIG).read_text())]
        total = sum((root / big / "resolve" / COMMIT_BIG / n).stat().st_size for n in names)
        # Source files in the page cache for both tools alike.
        subprocess.run(["cat", *[str(root / big / "resolve" / COMMIT_BIG / n) for n in names]],
                       stdout=subprocess.DEVNULL, check=True)

        hf_times, curl_times = [], []
        for rnd in range(args.rounds):
            dest = work / f"round{rnd}"
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir()
            # Same start for both tools: the other tool's files gone and no dirty pages left to write back (2 GiB
            # written just before would otherwise be flushed, and throttle the writer, during the next run). The
            # order alternates between rounds.
            for tool in (("curl", "hf") if rnd % 2 == 0 else ("hf", "curl")):
                for leftover in dest.iterdir():
                    if leftover.is_dir():
                        shutil.rmtree(leftover)
                    else:
                        leftover.unlink()
                os.sync()
                if tool == "curl":
                    curl_times.append(run_curl(endpoint, big, COMMIT_BIG, names, dest / "curl", args.parallelism))
                else:
                    result = run_hf_snapshot(endpoint, big, dest / "hf", args.parallelism)
                    assert result["complete"] and result["bytes_downloaded"] == total, result
                    hf_times.append(result["wall"])
            shutil.rmtree(dest)
            print(f"round {rnd + 1}: curl {curl_times[-1]:.2f} s, hf_snapshot {hf_times[-1]:.2f} s "
                  f"(module's own download phase {result['download_seconds']:.2f} s)")

        hf_best, curl_best = min(hf_times), min(curl_times)
        ratio = curl_best / hf_best
        gib = total / 1024**3
        print(f"\n{len(names)} files, {gib:.2f} GiB, {args.parallelism} in parallel, nginx on loopback")
        print(f"  parallel curl : {curl_best:6.2f} s  {gib / curl_best:6.2f} GiB/s")
        print(f"  hf_snapshot   : {hf_best:6.2f} s  {gib / hf_best:6.2f} GiB/s  "
              f"(whole module run, best of {args.rounds})")
        print(f"  ratio hf_snapshot/curl throughput: {ratio:.2f} (minimum {args.min_ratio})")

        hf_home = work / "many" / "hf"
        hf_home.parent.mkdir(parents=True, exist_ok=True)
        first = run_hf_snapshot(endpoint, many, hf_home, args.parallelism)
        again = run_hf_snapshot(endpoint, many, hf_home, args.parallelism)
        assert first["changed"] and not again["changed"] and again["bytes_downloaded"] == 0
        print(f"\nno-change re-run over {again['files']} files (163 shards): {again['seconds']:.3f} s in the module, "
              f"{again['wall']:.2f} s with process start (python, ansible, huggingface_hub imports)")
        shutil.rmtree(work / "many")
        return 0 if ratio >= args.min_ratio else 1
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
