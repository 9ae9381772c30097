"""What hf_parity.py and hf_prefill.py share: a Qwen3 config with eager attention, and saving a model as safetensors,
across the transformers versions a GPU machine may have (4.4x to 5.x)."""
from transformers import Qwen3Config


def eager_qwen3_config(**fields):
    """Qwen3Config(**fields) with eager attention, whichever field this transformers version reads it from."""
    cfg = Qwen3Config(attn_implementation="eager", **fields)
    try:  # older transformers read only the private field
        cfg._attn_implementation = "eager"
    except AttributeError:
        pass
    return cfg


def save_safetensors(model, folder):
    """model.save_pretrained(folder) in safetensors; transformers 5 always writes them and may refuse the argument."""
    try:
        model.save_pretrained(folder, safe_serialization=True)
    except TypeError:
        model.save_pretrained(folder)
