#!/usr/bin/env python3
"""Prefill speed of `e3` on cuda against transformers' eager bf16 forward, on the same random Qwen3 weights.

Builds a Qwen3 with the Qwen3-8B layer shapes (hidden 4096, 32 x 128 heads, 8 kv heads, MLP 12288, vocab 151936) and
fewer layers (default 8) in bf16 on the GPU, and saves it. Then, for each batch size:
  - transformers: model(input_ids, use_cache=True, logits_to_keep=1) under no_grad, eager attention, bf16; CUDA is
    synchronised around each call; 3 warm-up calls, then the median of --repeats;
  - e3: `e3 bench speedup --model DIR --prune 0.25 --prefill T --decode 0 --batch B --device cuda --json`; its
    prefill.full_tps is the full model's prefill (median of its repeats, after its own warm-up).
Both compute logits for the last position only. transformers runs first and is freed before e3 starts, so each
has the whole GPU. Writes one JSON object; the exit code is 1 when e3 is slower at any batch size or a run failed.
Usage: hf_prefill.py E3_BINARY OUT_JSON [--layers 8] [--tokens 512] [--batches 1,8] [--repeats 10]
"""
import argparse, gc, json, statistics, subprocess, sys, tempfile, time

import torch
from transformers import Qwen3ForCausalLM

from hf_common import eager_qwen3_config, save_safetensors


def time_transformers(model, vocab, batch, tokens, repeats):
    ids = torch.randint(0, vocab, (batch, tokens), device="cuda", generator=torch.Generator(device="cuda").manual_seed(batch))
    kwargs = {"input_ids": ids, "use_cache": True, "logits_to_keep": 1}
    logits = "last"
    with torch.no_grad():
        try:
            model(**kwargs)
        except TypeError:  # an older transformers without logits_to_keep
            kwargs.pop("logits_to_keep")
            logits = "all"
        for _ in range(3):
            model(**kwargs)
        torch.cuda.synchronize()
        seconds = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(**kwargs)
            torch.cuda.synchronize()
            seconds.append(time.perf_counter() - t0)
    median = statistics.median(seconds)
    return {"tokens_per_second": batch * tokens / median, "median_seconds": median, "repeats": repeats, "logits": logits}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("e3")
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",") if b]

    cfg = eager_qwen3_config(vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=args.layers,
                             num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                             rms_norm_eps=1e-6, tie_word_embeddings=False, initializer_range=0.02)
    result = {"shape": "qwen3-8b layers", "layers": args.layers, "tokens": args.tokens, "attention": "eager", "dtype": "bfloat16",
              "runs": []}
    failed = False
    with tempfile.TemporaryDirectory() as d:
        torch.manual_seed(0)
        torch.set_default_dtype(torch.bfloat16)
        with torch.device("cuda"):
            model = Qwen3ForCausalLM(cfg).eval()
        torch.set_default_dtype(torch.float32)
        save_safetensors(model, d)
        hf = {b: time_transformers(model, cfg.vocab_size, b, args.tokens, args.repeats) for b in batches}
        del model
        gc.collect()
        torch.cuda.empty_cache()

        for b in batches:
            cmd = [args.e3, "bench", "speedup", "--model", d, "--prune", "0.25", "--prefill", str(args.tokens), "--decode", "0",
                   "--batch", str(b), "--repeats", str(args.repeats), "--device", "cuda", "--json"]
            p = subprocess.run(cmd, capture_output=True, text=True)
            run = {"batch": b, "transformers": hf[b], "e3_exit_code": p.returncode}
            if p.returncode != 0:
                run["e3_error"] = p.stderr.strip()[-2000:]
                failed = True
            else:
                e3 = json.loads(p.stdout)
                tps = e3["prefill"]["full_tps"]
                run["e3"] = {"tokens_per_second": tps, "pruned_tokens_per_second": e3["prefill"]["pruned_tps"], "repeats": e3["repeats"]}
                run["e3_over_transformers"] = tps / hf[b]["tokens_per_second"]
                run["e3_faster"] = tps > hf[b]["tokens_per_second"]
                failed |= not run["e3_faster"]
            result["runs"].append(run)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
