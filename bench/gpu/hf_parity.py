#!/usr/bin/env python3
"""Parity of `e3 forward` with Hugging Face transformers on the same random Qwen3 weights.

Builds a random Qwen3 from a config with transformers, saves it (safetensors), runs `e3 forward` on it for each
device given, and compares the logits with transformers' own forward (fp32 eager attention). Writes one JSON object.
Usage: hf_parity.py E3_BINARY OUT_JSON [--devices cpu,cuda] [--dtype float32|bfloat16]
"""
import argparse, json, os, subprocess, sys, tempfile, time

import numpy as np
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("e3")
    ap.add_argument("out")
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()

    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=4096, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                      num_attention_heads=8, num_key_value_heads=2, head_dim=64, max_position_embeddings=4096,
                      rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=False, initializer_range=0.05)
    cfg._attn_implementation = "eager"
    model = Qwen3ForCausalLM(cfg).eval()
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    model = model.to(dtype)
    result = {"transformers_dtype": args.dtype, "layers": cfg.num_hidden_layers, "tokens": args.tokens, "checks": []}
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d, safe_serialization=True)
        ids = torch.randint(0, cfg.vocab_size, (args.tokens,), generator=torch.Generator().manual_seed(1))
        drops = [[], [2, 5]]
        for drop in drops:
            # transformers has no layer mask: drop layers by removing them from the module list.
            ref_model = Qwen3ForCausalLM(cfg).eval().to(dtype)
            ref_model.load_state_dict(model.state_dict())
            keep = [i for i in range(cfg.num_hidden_layers) if i not in drop]
            ref_model.model.layers = torch.nn.ModuleList([ref_model.model.layers[i] for i in keep])
            for new_idx, layer in enumerate(ref_model.model.layers):
                layer.self_attn.layer_idx = new_idx
            ref_model.config.num_hidden_layers = len(keep)
            if hasattr(ref_model.config, "layer_types") and ref_model.config.layer_types:
                ref_model.config.layer_types = [ref_model.config.layer_types[i] for i in keep]
            with torch.no_grad():
                ref = ref_model(ids[None]).logits[0].float().numpy()
            for dev in [x for x in args.devices.split(",") if x]:
                out = os.path.join(d, f"logits-{dev}-{len(drop)}.npy")
                cmd = [args.e3, "forward", "--model", d, "--tokens", ",".join(map(str, ids.tolist())), "--device", dev, "--out", out]
                if drop:
                    cmd += ["--drop", ",".join(map(str, drop))]
                t0 = time.time()
                p = subprocess.run(cmd, capture_output=True, text=True)
                check = {"device": dev, "dropped": drop, "seconds": time.time() - t0, "exit_code": p.returncode}
                if p.returncode != 0:
                    check["error"] = p.stderr.strip()[-2000:]
                else:
                    ours = np.load(out)
                    diff = np.abs(ours - ref)
                    check.update({"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
                                  "max_abs_logit": float(np.abs(ref).max()),
                                  "top1_agreement": float((ours.argmax(-1) == ref.argmax(-1)).mean())})
                result["checks"].append(check)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    return 0 if all(c.get("exit_code") == 0 for c in result["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
