#!/usr/bin/env bash
# The GPU preflight on a real GPU machine, through ansible-playbook with a local connection.
#
# Run from anywhere on the GPU machine (root, NVIDIA driver, python3 with PyTorch; no Docker needed):
#   tests/device/preflight.sh
# Without Ansible installed, it installs the wheels found in $WHEELS (default .whl/ at the repository root:
# ansible-core, resolvelib, cryptography, cffi, pycparser for CPython 3.12) into a temporary folder first.
#
# Two runs of playbooks/preflight.yml:
#   run1  as a deployment would run it (profile deepseek-r1: 8 x H200, 700 GB of weights), no fabric test;
#   run2  sized to this machine (its GPU count, a small model) with the fabric test on the host's PyTorch.
# Then it checks the reports against what nvidia-smi says directly, and measures the all-reduce over 2 GPUs as
# well. Outputs (at most 8 files) go to $OUT (default tests/output/device): run1.log, run2.log,
# report-run1.json, report-run2.json, nvidia-smi.txt, bench-2gpu.json, summary.json.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${OUT:-$REPO/tests/output/device}
WHEELS=${WHEELS:-$REPO/.whl}
PYTHON=${PREFLIGHT_PYTHON:-$(command -v python3)}
NVIDIA_SMI=${PREFLIGHT_NVIDIA_SMI:-nvidia-smi}
SITE=${PREFLIGHT_SITE:-/tmp/datacrunch-sglang-device-site}
mkdir -p "$OUT"
cd "$REPO" || exit 1
export LC_ALL=C.UTF-8 LANG=C.UTF-8 PYTHONUNBUFFERED=1 ANSIBLE_NOCOLOR=1
# Never let NCCL use NVLink multicast on a shared machine (kept if the environment already says so).
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}

if [[ -n ${ANSIBLE_PLAYBOOK:-} ]]; then
    read -r -a playbook <<<"$ANSIBLE_PLAYBOOK"
elif command -v ansible-playbook >/dev/null; then
    playbook=(ansible-playbook)
else
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl ||
        exit 1
    export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
    playbook=("$PYTHON" "$SITE/bin/ansible-playbook")
fi

inventory=$(mktemp -d)/inventory.yml
cat >"$inventory" <<EOF
sglang_servers:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: $PYTHON
EOF

{
    echo "== nvidia-smi -L"; "$NVIDIA_SMI" -L
    echo "== nvidia-smi topo -m"; "$NVIDIA_SMI" topo -m
    echo "== nvidia-smi nvlink -s"; "$NVIDIA_SMI" nvlink -s
    echo "== nvidia-smi -q -x"; "$NVIDIA_SMI" -q -x
} >"$OUT/nvidia-smi.txt" 2>&1
gpus=$("$NVIDIA_SMI" -L | grep -c '^GPU ')

common=(-i "$inventory" playbooks/preflight.yml -e "gpu_host_nvidia_smi=$NVIDIA_SMI")

start=$(date +%s.%N)
"${playbook[@]}" "${common[@]}" -e gpu_host_report_dir="$OUT/run1" >"$OUT/run1.log" 2>&1
rc1=$?
end1=$(date +%s.%N)
"${playbook[@]}" "${common[@]}" -e gpu_host_report_dir="$OUT/run2" \
    -e "{\"gpu_host_gpu_count\": $gpus, \"gpu_host_model_size_gb\": 1, \"gpu_host_fabric_test\": true,
         \"gpu_host_fabric_runner\": \"host\", \"gpu_host_fabric_python\": \"$PYTHON\",
         \"gpu_host_fabric_environment\": {\"NCCL_NVLS_ENABLE\": \"$NCCL_NVLS_ENABLE\"}}" >"$OUT/run2.log" 2>&1
rc2=$?
end2=$(date +%s.%N)
mv "$OUT/run1/preflight.json" "$OUT/report-run1.json" 2>/dev/null && rmdir "$OUT/run1"
mv "$OUT/run2/preflight.json" "$OUT/report-run2.json" 2>/dev/null && rmdir "$OUT/run2"

if ((gpus >= 2)); then
    "$PYTHON" roles/gpu_host/files/allreduce_bench.py --gpus 2 --sizes-mib 1,16,256,1024 >"$OUT/bench-2gpu.json" 2>"$OUT/bench-2gpu.err"
    tail -c 2000 "$OUT/bench-2gpu.err" >&2
    rm -f "$OUT/bench-2gpu.err"
fi

"$PYTHON" - "$OUT" "$gpus" "$rc1" "$rc2" "$start" "$end1" "$end2" "$NVIDIA_SMI" <<'EOF'
import json
import subprocess
import sys
from pathlib import Path

out, gpus, rc1, rc2 = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
start, end1, end2 = (float(value) for value in sys.argv[5:8])
smi = sys.argv[8]
query = subprocess.run([smi, "--query-gpu=driver_version,uuid,name,memory.total", "--format=csv,noheader,nounits"],
                       capture_output=True, text=True, check=True).stdout.strip().splitlines()
rows = [[field.strip() for field in line.split(",")] for line in query]
summary = {"gpus": gpus, "run1_rc": rc1, "run2_rc": rc2, "run1_seconds": round(end1 - start, 1),
           "run2_seconds": round(end2 - end1, 1), "checks": []}


def verdict(name, ok, detail):
    summary["checks"].append({"check": name, "ok": bool(ok), "detail": detail})
    print(f"device-check {'PASS' if ok else 'FAIL'}: {name}: {detail}")


def statuses(report):
    host = report["hosts"]["localhost"]
    return host, {check["name"]: check for check in host["checks"]}


for run in ("run1", "run2"):
    path = out / f"report-{run}.json"
    if not path.exists():
        verdict(f"{run} report", False, f"{path} missing: see {run}.log")
        continue
    host, checks = statuses(json.loads(path.read_text()))
    fact = host["sglang_gpu"]
    summary[run] = {name: [check["status"], check["summary"]] for name, check in checks.items()}
    failed = sorted(name for name, check in checks.items() if check["status"] == "fail")
    summary[run + "_failed"] = failed
    verdict(f"{run} gpu count", fact["count"] == gpus, f"fact {fact['count']}, nvidia-smi -L {gpus}")
    verdict(f"{run} driver", fact["driver"] == rows[0][0], f"fact {fact['driver']}, nvidia-smi {rows[0][0]}")
    verdict(f"{run} uuids", fact["uuids"] == [row[1] for row in rows], f"{len(fact['uuids'])} UUIDs")
    verdict(f"{run} model", fact["model"] == rows[0][2], fact["model"])
    verdict(f"{run} nvlink", fact["nvlink_all_pairs"] is True, checks["nvlink"]["summary"])
    verdict(f"{run} docker engine fails", checks["docker engine"]["status"] == "fail",
            checks["docker engine"]["summary"] + " | fix: " + checks["docker engine"]["fix"])
    verdict(f"{run} toolkit fails", checks["nvidia toolkit"]["status"] == "fail",
            checks["nvidia toolkit"]["summary"] + " | fix: " + checks["nvidia toolkit"]["fix"])
    verdict(f"{run} playbook failed", (rc1 if run == "run1" else rc2) != 0, f"rc {rc1 if run == 'run1' else rc2}")
    if run == "run2":
        verdict("run2 only docker and toolkit fail", failed == ["docker engine", "nvidia toolkit"], str(failed))
        fabric = checks["fabric"]
        verdict("run2 fabric", fabric["status"] == ("pass" if gpus >= 2 else "skip"), fabric["summary"])
        summary["fabric"] = host["requirements"].get("fabric")
    else:
        verdict("run1 gpu count vs profile", (checks["gpus"]["status"] == "fail") == (gpus < 8),
                checks["gpus"]["summary"])
bench = out / "bench-2gpu.json"
if bench.exists() and bench.read_text().strip():
    summary["bench_2gpu"] = json.loads(bench.read_text().strip().splitlines()[-1])
    print("bench 2 GPUs:", json.dumps({r["size_bytes"]: r["busbw_gbps"] for r in summary["bench_2gpu"].get("results", [])}))
fabric = summary.get("fabric") or {}
print(f"bench {gpus} GPUs:", json.dumps({r["size_bytes"]: r["busbw_gbps"] for r in fabric.get("results", [])}))
summary["ok"] = all(check["ok"] for check in summary["checks"])
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print("device-check", "ALL PASS" if summary["ok"] else "SOME FAILED", f"run1 {summary['run1_seconds']} s,",
      f"run2 {summary['run2_seconds']} s (with fabric test)")
sys.exit(0 if summary["ok"] else 1)
EOF
