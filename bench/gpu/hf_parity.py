#!/usr/bin/env python3
"""Parity of `e3 forward` with Hugging Face transformers on the same random Qwen3 weights.

Builds a random Qwen3 from a config with transformers, saves it (safetensors, in --dtype), runs `e3 forward` on it for
each device given, with no layer dropped and with layers 2 and 5 dropped, and compares the logits with transformers'
own eager forward. Writes one JSON object; the exit code is 1 when a run failed or a check is past its bound.

The reference is transformers in float32 on the weights exactly as saved (bf16 weights are widened, which is exact),
so both sides compute the same function and only their arithmetic differs. Error = max |e3 - ref| / max |ref| (and
the same with means), on the logit scale of this model.
  - cpu: e3 computes in float32, like the reference; only the summation order differs, which costs a few ulps per
    operation (about 1e-6 relative over this model's 8 layers). The bound is 1e-4: a hundredfold margin on that, and
    still a hundredfold below what one rounding to bf16 anywhere in the model costs (about 1e-2), so an fp32 path that
    silently drops to bf16 fails it.
  - cuda: e3 keeps bf16 activations with fp32 accumulation, so its error is bf16 rounding. The yardstick is
    transformers' own bf16 forward of the same weights, against the same fp32 reference. The bound is twice that
    error on the mean and four times it on the max: the two round at comparable points (every activation stored in
    bf16, products summed in fp32), and a factor of two leaves room for rounding at different places. The max over
    400,000 logits is an extreme value of each side's own rounding, which varies far more between two such runs than
    the mean does, hence the wider factor there. A real mistake (a wrong RoPE pair, a skipped norm, the wrong layer
    dropped) moves the logits by a sizeable fraction of their scale, far past both.
Usage: hf_parity.py E3_BINARY OUT_JSON [--devices cpu,cuda] [--dtype float32|bfloat16] [--tokens 100]
"""
import argparse, copy, json, os, subprocess, sys, tempfile, time

import numpy as np
import torch
from transformers import Qwen3ForCausalLM

from hf_common import eager_qwen3_config, save_safetensors

CPU_BOUND = 1e-4
BF16_FACTOR = 2.0      # on the mean error
BF16_MAX_FACTOR = 4.0  # on the max error


def reference_logits(cfg, state, dtype, drop, ids):
    """transformers' forward in `dtype` with the layers in `drop` removed (it has no layer mask)."""
    # A copy: recent transformers keeps the config object it is given, and the layers are cut from it below.
    model = Qwen3ForCausalLM(copy.deepcopy(cfg)).eval()
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()})
    model = model.to(dtype)
    keep = [i for i in range(cfg.num_hidden_layers) if i not in drop]
    model.model.layers = torch.nn.ModuleList([model.model.layers[i] for i in keep])
    for new_idx, layer in enumerate(model.model.layers):
        layer.self_attn.layer_idx = new_idx
    model.config.num_hidden_layers = len(keep)
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = [model.config.layer_types[i] for i in keep]
    with torch.no_grad():
        return model(ids[None], use_cache=False).logits[0].float().numpy()


def write(path, result):
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(path + ".tmp", path)


def errors(ours, ref):
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    scale = np.abs(ref.astype(np.float64))
    return {"max_rel": float(diff.max() / scale.max()), "mean_rel": float(diff.mean() / scale.mean()),
            "max_abs_diff": float(diff.max()), "top1_agreement": float((ours.argmax(-1) == ref.argmax(-1)).mean())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("e3")
    ap.add_argument("out")
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--tokens", type=int, default=100)
    args = ap.parse_args()

    torch.manual_seed(0)
    # rope_theta is left at Qwen3's default: both sides read it back from the saved config.json, and newer
    # transformers moved it into rope_parameters, which e3 reads as well. head_dim 128, as in every Qwen3, is the size
    # e3's tensor-core prefill handles on a GPU; 100 tokens span two of its 64-row blocks.
    cfg = eager_qwen3_config(vocab_size=4096, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                             num_attention_heads=8, num_key_value_heads=2, head_dim=128, max_position_embeddings=4096,
                             rms_norm_eps=1e-6, tie_word_embeddings=False, initializer_range=0.05)
    saved_dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    model = Qwen3ForCausalLM(cfg).eval().to(saved_dtype)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    result = {"weights_dtype": args.dtype, "layers": cfg.num_hidden_layers, "tokens": args.tokens,
              "bounds": {"cpu_max_rel": CPU_BOUND, "cuda_mean_factor_over_transformers_bf16": BF16_FACTOR,
                         "cuda_max_factor_over_transformers_bf16": BF16_MAX_FACTOR}, "checks": []}
    failed = False
    with tempfile.TemporaryDirectory() as d:
        save_safetensors(model, d)
        del model
        ids = torch.randint(0, cfg.vocab_size, (args.tokens,), generator=torch.Generator().manual_seed(1))
        for drop in [[], [2, 5]]:
            try:
                ref = reference_logits(cfg, state, torch.float32, drop, ids)
                hf_bf16 = errors(reference_logits(cfg, state, torch.bfloat16, drop, ids), ref)
            except Exception as e:  # the reference failed: record it, keep the other case's figures
                result["checks"].append({"dropped": drop, "ok": False, "error": f"transformers reference: {type(e).__name__}: {e}"})
                failed = True
                continue
            for dev in [x for x in args.devices.split(",") if x]:
                out = os.path.join(d, f"logits-{dev}-{len(drop)}.npy")
                cmd = [args.e3, "forward", "--model", d, "--tokens", ",".join(map(str, ids.tolist())), "--device", dev, "--out", out]
                if drop:
                    cmd += ["--drop", ",".join(map(str, drop))]
                t0 = time.time()
                p = subprocess.run(cmd, capture_output=True, text=True)
                check = {"device": dev, "dropped": drop, "seconds": time.time() - t0, "exit_code": p.returncode,
                         "transformers_bf16": hf_bf16}
                if p.returncode != 0:
                    check["error"] = p.stderr.strip()[-2000:]
                    check["ok"] = False
                else:
                    e = errors(np.load(out), ref)
                    check["e3"] = e
                    if dev == "cpu":
                        check["bound"] = {"max_rel": CPU_BOUND}
                        check["ok"] = e["max_rel"] <= CPU_BOUND
                    else:
                        bound = {"max_rel": BF16_MAX_FACTOR * hf_bf16["max_rel"], "mean_rel": BF16_FACTOR * hf_bf16["mean_rel"]}
                        check["bound"] = bound
                        check["ok"] = e["max_rel"] <= bound["max_rel"] and e["mean_rel"] <= bound["mean_rel"]
                failed |= not check["ok"]
                result["checks"].append(check)
                write(args.out, result)  # so far, in case a later step is cut off
    result["ok"] = not failed
    write(args.out, result)
    print(json.dumps(result, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
