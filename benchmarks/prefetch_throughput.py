#!/usr/bin/env python3
"""Prefetch throughput: hf_snapshot against parallel curl and aria2c, same files, same local server, same run.

Not part of CI. Serves a Hub-shaped tree of static files with Debian's nginx on loopback (the Hub's API answers as
files, the Hub's headers on the file downloads: X-Repo-Commit, ETag = sha256) twice: once uncapped, once with
``limit_rate`` capping every connection, as CDNs and mirrors do. Files of --file-gib GiB each (at least 1).

In each case, one after the other, each run starting alike (the previous tool's files deleted, dirty pages written
back, source files in the page cache), best of --rounds:

- ``curl``: ``xargs -P <files> curl`` (one stream per file);
- ``aria2c``: ``aria2c -j <files> -x16 -s16`` (16 ranged connections per file), capped case only;
- ``hf_snapshot``: the module's entry point as Ansible runs it on a host (resolve, list, disk check, download,
  link into the HF cache layout) with --connections-per-file (16 by default, as aria2c's -x16).

Prints MiB/s and CPU seconds per GiB of each tool's process tree (user + system time of the process and the children
it waited for, from the kernel's rusage). Refuses a capped run where parallel curl is not within 10 % of
files x cap (the cap does not bind: pick a lower --cap-mib). Goals (exit 1 when one is missed): capped, hf_snapshot
>= 0.9x aria2c; uncapped, hf_snapshot >= 0.9x parallel curl; hf_snapshot's CPU seconds per GiB within 2x of curl's.
Then times a no-change re-run of hf_snapshot over a 163-shard repository (DeepSeek-R1's shard count).

Usage: .venv/bin/python benchmarks/prefetch_throughput.py [--files 2] [--file-gib 1] [--cap-mib 32]
Needs: nginx, curl, aria2c (apt-get install nginx-light curl aria2). Writes under --workdir (default: a temporary
directory).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
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


def nginx_conf(work: Path, root: Path, port: int, capped_port: int, cap_bytes: int, etags: dict[str, str]) -> Path:
    entries = "\n".join(f'        "{uri}" "\\"{etag}\\"";' for uri, etag in etags.items())
    conf = f"""
worker_processes 2;
worker_rlimit_nofile 4096;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 1024; }}
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
    server {{
        listen 127.0.0.1:{capped_port};
        root {root};
        etag off;
        location /api/ {{ default_type application/json; }}
        location / {{
            default_type application/octet-stream;
            limit_rate {cap_bytes};
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


class Measured:
    """Wall time and CPU time (user + system) of the children this process waited for during a block."""

    def __enter__(self):
        self.cpu0 = self._cpu()
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.wall = time.monotonic() - self.t0
        self.cpu = self._cpu() - self.cpu0

    @staticmethod
    def _cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime


def run_hf_snapshot(endpoint: str, repo: str, hf_home: Path, parallelism: int, connections: int = 8,
                    verify: str = "quick") -> dict:
    args = {"repo_id": repo, "hf_home": str(hf_home), "endpoint": endpoint, "parallelism": parallelism,
            "connections_per_file": connections, "disk_reserve_gb": 0.5, "verify": verify}
    hf_home.parent.mkdir(parents=True, exist_ok=True)
    args_file = hf_home.parent / f"args-{time.monotonic_ns()}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "collections"))
    with Measured() as m:
        proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, env=env,
                              check=False)
    result = json.loads(proc.stdout)
    if result.get("failed"):
        raise SystemExit(f"hf_snapshot failed: {result.get('msg')}")
    result["wall"], result["cpu"] = m.wall, m.cpu
    return result


def run_curl(urls: list[str], dest: Path, parallelism: int) -> Measured:
    dest.mkdir(parents=True)
    with Measured() as m:
        proc = subprocess.run(
            ["xargs", "-P", str(parallelism), "-n", "1", "curl", "-sSf", "--remote-name", "--output-dir", str(dest)],
            input="".join(u + "\n" for u in urls), text=True, capture_output=True, check=False,
        )
    if proc.returncode != 0:
        raise SystemExit(f"parallel curl failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return m


def run_aria2c(urls: list[str], dest: Path, files: int) -> Measured:
    dest.mkdir(parents=True)
    with Measured() as m:
        proc = subprocess.run(
            ["aria2c", "-q", "-j", str(files), "-x16", "-s16", "--file-allocation=none", "--allow-overwrite=true",
             "--auto-file-renaming=false", "-d", str(dest), "-i", "-"],
            input="".join(u + "\n" for u in urls), text=True, capture_output=True, check=False,
        )
    if proc.returncode != 0:
        raise SystemExit(f"aria2c failed ({proc.returncode}): {(proc.stdout + proc.stderr).strip()[-2000:]}")
    return m


def clean(dest: Path) -> None:
    for leftover in dest.iterdir():
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    os.sync()


def compare(case: str, endpoint: str, repo: str, names: list[str], total: int, work: Path, args,
            tools: tuple[str, ...]) -> dict[str, dict]:
    """Best wall time (and its CPU time) of each tool over the rounds, order rotating between rounds."""
    urls = [f"{endpoint}/{repo}/resolve/{COMMIT_BIG}/{n}" for n in names]
    best: dict[str, dict] = {}
    dest = work / f"dl-{case}"
    for rnd in range(args.rounds):
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir()
        order = tools[rnd % len(tools):] + tools[:rnd % len(tools)]
        line = []
        for tool in order:
            clean(dest)
            if tool == "curl":
                m = run_curl(urls, dest / "curl", args.files)
                wall, cpu = m.wall, m.cpu
            elif tool == "aria2c":
                m = run_aria2c(urls, dest / "aria2c", args.files)
                wall, cpu = m.wall, m.cpu
            else:
                r = run_hf_snapshot(endpoint, repo, dest / "hf", args.files, args.connections_per_file)
                assert r["complete"] and r["bytes_downloaded"] >= total, r
                wall, cpu = r["wall"], r["cpu"]
            line.append(f"{tool} {wall:.2f} s")
            if tool not in best or wall < best[tool]["wall"]:
                best[tool] = {"wall": wall, "cpu": cpu}
        shutil.rmtree(dest)
        print(f"  {case} round {rnd + 1}: " + ", ".join(line), flush=True)
    return best


def report(case: str, best: dict[str, dict], total: int) -> None:
    gib = total / 1024**3
    for tool, b in best.items():
        print(f"  {case:8s} {tool:12s}: {b['wall']:7.2f} s  {total / 2**20 / b['wall']:8.1f} MiB/s  "
              f"{b['cpu'] / gib:6.2f} CPU s/GiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--files", type=int, default=2, help="files, and files fetched at once by every tool")
    parser.add_argument("--file-gib", type=float, default=1.0)
    parser.add_argument("--cap-mib", type=float, default=32, help="per-connection cap of the capped server, MiB/s")
    parser.add_argument("--connections-per-file", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-uncapped", action="store_true")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    if args.file_gib < 1:
        raise SystemExit(f"--file-gib={args.file_gib}: use at least 1 (GiB-sized files, as model shards are)")
    for tool in ("nginx", "curl", "xargs", "aria2c"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is needed: apt-get install nginx-light curl aria2")
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"

    work = args.workdir or Path(tempfile.mkdtemp(prefix="prefetch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # nginx's workers run as an unprivileged user and must read the files
    root = work / "www"
    if root.exists():
        shutil.rmtree(root)
    big, many = "bench/deepseek-like", "bench/deepseek-163"
    etags = write_repo(root, big, COMMIT_BIG, args.files, int(args.file_gib * 1024**3))
    etags.update(write_repo(root, many, COMMIT_163, 163, 64 << 10))
    port, capped_port = free_port(), free_port()
    cap = int(args.cap_mib * 2**20)
    conf = nginx_conf(work, root, port, capped_port, cap, etags)
    nginx = subprocess.Popen([nginx_bin, "-c", str(conf), "-g", "daemon off;"])
    goals = []
    try:
        for _attempt in range(50):
            with socket.socket() as s, socket.socket() as s2:
                if s.connect_ex(("127.0.0.1", port)) == 0 and s2.connect_ex(("127.0.0.1", capped_port)) == 0:
                    break
            if nginx.poll() is not None:
                raise SystemExit(f"nginx exited: see {work}/nginx-error.log (use --workdir to keep it)")
            time.sleep(0.1)
        tree = json.loads((root / "api/models" / big / "tree" / COMMIT_BIG).read_text())
        names = [e["path"] for e in tree]
        total = sum(e["size"] for e in tree)
        subprocess.run(["cat", *[str(root / big / "resolve" / COMMIT_BIG / n) for n in names]],
                       stdout=subprocess.DEVNULL, check=True)
        print(f"{args.files} files of {args.file_gib:g} GiB (+ 4 small), {total / 2**30:.2f} GiB; nginx on loopback; "
              f"{os.cpu_count()} CPUs; hf_snapshot with {args.connections_per_file} connections per file")

        print(f"\ncapped: nginx limit_rate {args.cap_mib:g} MiB/s per connection; {args.files} files x cap = "
              f"{args.files * args.cap_mib:g} MiB/s for one stream per file")
        capped = compare("capped", f"http://127.0.0.1:{capped_port}", big, names, total, work, args,
                         ("curl", "aria2c", "hf_snapshot"))
        report("capped", capped, total)
        curl_rate = total / 2**20 / capped["curl"]["wall"]
        if abs(curl_rate - args.files * args.cap_mib) > 0.1 * args.files * args.cap_mib:
            print(f"REFUSED: parallel curl reached {curl_rate:.1f} MiB/s, not within 10 % of files x cap = "
                  f"{args.files * args.cap_mib:g} MiB/s: the cap does not decide the rate (above: it does not bind; "
                  "below: "
                  "this machine cannot even carry the capped streams, e.g. when other work takes its cores); lower "
                  "--cap-mib or run on an idle machine")
            return 2
        ratio = capped["aria2c"]["wall"] / capped["hf_snapshot"]["wall"]
        goals.append(("capped: hf_snapshot / aria2c throughput", ratio, 0.9))

        if not args.skip_uncapped:
            print("\nuncapped:")
            free = compare("uncapped", f"http://127.0.0.1:{port}", big, names, total, work, args,
                           ("curl", "hf_snapshot"))
            report("uncapped", free, total)
            goals.append(("uncapped: hf_snapshot / curl throughput", free["curl"]["wall"] / free["hf_snapshot"]["wall"],
                          0.9))
            goals.append(("uncapped: curl / hf_snapshot CPU per GiB", free["curl"]["cpu"] / free["hf_snapshot"]["cpu"],
                          0.5))
        goals.append(("capped: curl / hf_snapshot CPU per GiB", capped["curl"]["cpu"] / capped["hf_snapshot"]["cpu"],
                      0.5))

        hf_home = work / "many" / "hf"
        first = run_hf_snapshot(f"http://127.0.0.1:{port}", many, hf_home, 8)
        again = run_hf_snapshot(f"http://127.0.0.1:{port}", many, hf_home, 8)
        assert first["changed"] and not again["changed"] and again["bytes_downloaded"] == 0
        print(f"\nno-change re-run over {again['files']} files (163 shards): {again['seconds']:.3f} s in the module, "
              f"{again['wall']:.2f} s with process start (python, ansible, huggingface_hub imports)")
        shutil.rmtree(work / "many")

        print("\ngoals:")
        for label, value, minimum in goals:
            print(f"  {label}: {value:.2f} (minimum {minimum}) {'ok' if value >= minimum else 'MISSED'}")
        return 0 if all(value >= minimum for _label, value, minimum in goals) else 1
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
