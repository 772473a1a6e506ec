"""GGUF file → ordinary safetensors model directory that `transformers serve` loads.

transformers de-quantizes a GGUF on load, but the loaded model keeps a `quantization_config`
and refuses `save_pretrained`. Copying its weights into a model built from the same config
without that entry gives a plain checkpoint. Sampling is switched on in the directory's
generation_config.json: `transformers serve` samples only when the model's generation config
says `do_sample`, and would otherwise answer every temperature > 0 request greedily.

The heavy imports (torch, transformers) happen only inside `convert_gguf`, so the rest of
rebase never pays for them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from rebase_cli.models.errors import ModelError

INSTALL_HINT = "install them with `pip install 'rebase-cli[transformers]'`"
# Distribution names; transformers needs a major version with GGUF loading and `serve`.
REQUIRED = ("torch", "transformers", "gguf", "accelerate")
MIN_TRANSFORMERS_MAJOR = 5


def missing_requirements(required: tuple[str, ...] = REQUIRED) -> list[str]:
    """The distributions of `required` that are not installed (or too old), in order."""
    missing = []
    for name in required:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        if name == "transformers" and _major(version) < MIN_TRANSFORMERS_MAJOR:
            missing.append(f"transformers>={MIN_TRANSFORMERS_MAJOR} (found {version})")
    return missing


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def check_requirements(required: tuple[str, ...] = REQUIRED) -> None:
    """Raise a one-line ModelError naming what is missing, before any download starts."""
    missing = missing_requirements(required)
    if missing:
        raise ModelError(f"preparing a model needs {', '.join(missing)}", INSTALL_HINT)


def convert_gguf(gguf: Path, out_dir: Path, dtype: str) -> None:
    """Write a safetensors model directory (weights in `dtype`, tokenizer, sampling on) built
    from the GGUF file `gguf` into the existing, empty folder `out_dir`."""
    with _quiet_tqdm():
        import torch
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    # The CLI shows its own progress; transformers' bars and notices would interleave with it.
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ModelError(f"unknown dtype {dtype!r}", "use bfloat16, float16 or float32")
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    settings = {k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"}
    config = AutoConfig.for_model(**settings)
    config.dtype = dtype
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    # strict: every tensor of the fresh model must come from the GGUF, none left random.
    model.load_state_dict(loaded.state_dict(), strict=True)
    generation = loaded.generation_config
    generation.do_sample = True
    model.generation_config = generation
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


@contextmanager
def _quiet_tqdm() -> Iterator[None]:
    """Import tqdm with its bars off: the GGUF reader uses tqdm directly, past transformers'
    switch, and tqdm reads TQDM_* variables once, at import."""
    if "tqdm" in sys.modules or "TQDM_DISABLE" in os.environ:
        yield
        return
    os.environ["TQDM_DISABLE"] = "1"
    try:
        import tqdm  # noqa: F401

        yield
    finally:
        os.environ.pop("TQDM_DISABLE", None)
