"""The start-up step a person sees while SGLang loads, read from log lines in the format SGLang 0.5.18/0.5.23 print."""

from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.startup_progress import startup_progress

# Lines as SGLang prints them (format strings from the pinned versions' source; see the module's docstring).
INIT = "[2026-12-03 10:00:01 TP0] Init torch distributed begin."
LOAD_BEGIN = "[2026-12-03 10:00:09 TP0] Load weight begin. avail mem=139.25 GB"
SHARDS = (
    "\rMulti-thread loading shards:   0% Completed | 0/163 [00:00<?, ?it/s]"
    "\rMulti-thread loading shards:  44% Completed | 72/163 [00:26<00:33,  2.71it/s]"
    "\rMulti-thread loading shards:  45% Completed | 73/163 [00:27<00:33,  2.70it/s]"
)
LOAD_END = (
    "[2026-12-03 10:01:10 TP0] Load weight end. elapsed=61.02 s, type=DeepseekV3ForCausalLM, quant=fp8, "
    "avail mem=56.71 GB, mem usage=82.54 GB."
)
JIT = (
    "[2026-12-03 10:01:12 TP0] Try DeepGEMM JIT Compiling for <GEMM_NT_F8F8BF16> N=24576, K=1536, num_groups=1 "
    "with all Ms. It only takes a little time (typically 1 sec) if you have run "
    "`python3 -m sglang.compile_deep_gemm`."
)
JIT_BAR = "\rDeepGEMM warmup:  37%|###7      | 3024/8192 [04:11<07:10, 12.01it/s]"
GRAPH_BEGIN = ("[2026-12-03 10:21:40 TP0] Capture decode CUDA graph begin. backend=full, num_tokens_per_req=1, "
               "bs=[1, 2, 4, 8], avail mem=56.20 GB")
GRAPH_BAR = "\rCapturing batches (bs=160 avail_mem=21.02 GB):   4%|4         | 1/23 [00:03<01:13,  3.35s/it]"
GRAPH_END = ("[2026-12-03 10:23:02 TP0] Capture decode CUDA graph end. elapsed=82.10 s, mem usage=36.33 GB, "
             "avail mem=19.87 GB.")
UVICORN = "[2026-12-03 10:23:10] INFO:     Uvicorn running on http://10.0.0.5:30000 (Press CTRL+C to quit)"
WARMUP = ("[2026-12-03 10:23:11 TP0] Prefill batch, #new-seq: 1, #new-token: 6, #cached-token: 0, token usage: 0.00, "
          "#running-req: 0, #queue-req: 0, #pending-token: 0, ")
READY = "[2026-12-03 10:23:14] The server is fired up and ready to roll!"


def log(*lines):
    return "\n".join(lines) + "\n"


def test_nothing_logged_yet_is_starting():
    assert startup_progress("") == ("starting", "")
    assert startup_progress("[2026-12-03 10:00:00] server_args=ServerArgs(...)\n") == ("starting", "")


def test_distributed_init():
    assert startup_progress(log(INIT))[0] == "distributed init"


def test_weight_loading_shows_the_latest_shard_count_of_the_redrawn_bar():
    assert startup_progress(log(INIT, LOAD_BEGIN, SHARDS)) == ("loading weights", "loading safetensors 73/163 (45%)")


def test_the_single_threaded_loader_bar_counts_too():
    single = "Loading safetensors checkpoint shards:  10% Completed | 16/163 [00:06<00:55,  2.64it/s]"
    assert startup_progress(log(LOAD_BEGIN, single)) == ("loading weights", "loading safetensors 16/163 (10%)")


def test_deepgemm_compilation_with_its_bar():
    assert startup_progress(log(LOAD_BEGIN, SHARDS, LOAD_END, JIT))[0] == "compiling DeepGEMM kernels"
    assert startup_progress(log(LOAD_END, JIT, JIT_BAR)) == ("compiling DeepGEMM kernels", "DeepGEMM warm-up 37%")


def test_cuda_graph_capture_names_the_batch_size():
    assert startup_progress(log(LOAD_END, GRAPH_BEGIN, GRAPH_BAR)) == (
        "capturing CUDA graphs", "capturing CUDA graphs, batch size 160")
    phase, detail = startup_progress(log(GRAPH_BEGIN, GRAPH_END))
    assert phase == "CUDA graphs captured"
    assert detail.startswith("Capture decode CUDA graph end. elapsed=82.10 s")


def test_warm_up_after_the_http_server_starts_and_then_ready():
    assert startup_progress(log(GRAPH_END, UVICORN, WARMUP))[0] == "warming up"
    assert startup_progress(log(GRAPH_END, UVICORN, WARMUP, READY)) == (
        "ready", "The server is fired up and ready to roll!")


def test_long_lines_are_shortened():
    phase, detail = startup_progress(log(LOAD_END + " " + "x" * 400))
    assert phase == "weights loaded"
    assert len(detail) <= 120 and detail.endswith("...")
