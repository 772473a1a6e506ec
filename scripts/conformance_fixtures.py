"""Write the wire-protocol conformance fixtures from the real servers' wheels.

    pip download --no-deps sglang==0.5.23 vllm==0.33.0 -d WHEELS
    python scripts/conformance_fixtures.py WHEELS

For each server, the request and response classes our clients and simulator speak (pydantic
models, dataclasses and msgspec structs) are read from the wheel's source with `ast`, without
importing the package (neither sglang nor vllm installs on a CPU-only machine), and written to
tests/fixtures/conformance/<package>-<version>.json: every field with its annotation, whether
it is required, its default, and the fields inherited from base classes in the same files;
plus the values of the Literal type aliases named below and the type aliases the annotations
use. The wheel's file name, sha256 and the
source files read are recorded with them. tests/test_conformance.py checks our request bodies
and the simulator's responses against these fixtures.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "conformance"

SPECS: dict[str, dict] = {
    "sglang": {
        "version": "0.5.23",
        "files": {
            "sglang/srt/entrypoints/openai/protocol.py": [
                "CompletionRequest",
                "CompletionResponse",
                "CompletionResponseChoice",
                "UsageInfo",
                "ScoringRequest",
                "ScoringResponse",
                "ErrorResponse",
            ],
            "sglang/srt/managers/io_struct.py": ["GenerateReqInput", "EmbeddingReqInput"],
            "sglang/srt/sampling/sampling_params.py": ["SamplingParams"],
        },
        "literals": {},
    },
    "vllm": {
        "version": "0.33.0",
        "files": {
            "vllm/entrypoints/openai/completion/protocol.py": [
                "CompletionRequest",
                "CompletionResponse",
                "CompletionResponseChoice",
            ],
            "vllm/entrypoints/pooling/pooling/protocol.py": [
                "PoolingCompletionRequest",
                "PoolingResponse",
                "PoolingResponseData",
            ],
            "vllm/entrypoints/pooling/base/protocol.py": [],  # base mixins only
            "vllm/entrypoints/serve/engine/protocol.py": [
                "UsageInfo",
                "ErrorResponse",
                "ErrorInfo",
            ],
        },
        "literals": {"vllm/tasks.py": ["PoolingTask"]},
        "alias_files": ["vllm/entrypoints/generate/base/protocol.py", "vllm/tasks.py"],
    },
}


def _default(node: ast.expr | None) -> tuple[bool, str | None]:
    """(required, default source) of a field's assigned value."""
    if node is None:
        return True, None
    if isinstance(node, ast.Call):
        name = ast.unparse(node.func)
        if name in ("Field", "field", "msgspec.field"):
            for keyword in node.keywords:
                if keyword.arg in ("default", "default_factory"):
                    return False, ast.unparse(keyword.value)
            if node.args and not (
                isinstance(node.args[0], ast.Constant) and node.args[0].value is ...
            ):
                return False, ast.unparse(node.args[0])
            return True, None
    return False, ast.unparse(node)


def _class_info(node: ast.ClassDef) -> dict:
    fields: dict[str, dict] = {}
    extra = None
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            annotation = ast.unparse(item.annotation)
            if annotation.startswith("ClassVar"):
                continue
            required, default = _default(item.value)
            fields[item.target.id] = {
                "annotation": annotation,
                "required": required,
                "default": default,
            }
        elif (
            isinstance(item, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "model_config" for t in item.targets)
            and isinstance(item.value, ast.Call)
        ):
            for keyword in item.value.keywords:
                if keyword.arg == "extra":
                    extra = ast.literal_eval(keyword.value)
    bases = [ast.unparse(b).split("[")[0] for b in node.bases]
    return {"bases": bases, "own_fields": fields, "extra": extra}


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Module-level type aliases (`X: TypeAlias = ...`, `X = Union[...]`/`Literal[...]`)."""
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if ast.unparse(node.annotation).endswith("TypeAlias") and node.value is not None:
                out[node.target.id] = ast.unparse(node.value)
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Subscript | ast.BinOp)
        ):
            text = ast.unparse(node.value)
            if text.startswith(("Union", "Optional", "Literal", "typing.")) or "|" in text:
                out[node.targets[0].id] = text
    return out


def _literal_values(tree: ast.Module, name: str, aliases: dict[str, list]) -> list:
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
            if isinstance(target, ast.Name) and target.id == name and node.value is not None:
                return _literal(node.value, aliases)
    raise SystemExit(f"literal {name} not found")


def _literal(value: ast.expr, aliases: dict[str, list]) -> list:
    if isinstance(value, ast.Subscript) and ast.unparse(value.value).endswith("Literal"):
        items = value.slice.elts if isinstance(value.slice, ast.Tuple) else [value.slice]
        out: list = []
        for item in items:
            if isinstance(item, ast.Constant):
                out.append(item.value)
            elif isinstance(item, ast.Name) and item.id in aliases:
                out.extend(aliases[item.id])
        return out
    return []


def resolve(classes: dict[str, dict], name: str) -> dict:
    """Fields of `name` including those of its bases (bases first, own fields win)."""
    info = classes[name]
    fields: dict[str, dict] = {}
    unresolved = []
    extra = info["extra"]
    for base in reversed(info["bases"]):
        if base in classes:
            inherited = resolve(classes, base)
            fields.update(inherited["fields"])
            unresolved += inherited["unresolved_bases"]
            extra = extra or inherited["extra"]
        elif base not in ("BaseModel", "Generic", "msgspec.Struct", "object"):
            unresolved.append(base)
    fields.update(info["own_fields"])
    return {
        "bases": info["bases"],
        "fields": fields,
        "extra": extra,
        "unresolved_bases": sorted(set(unresolved)),
    }


def build(package: str, wheel: Path) -> dict:
    spec = SPECS[package]
    classes: dict[str, dict] = {}
    where: dict[str, str] = {}
    literals: dict[str, list] = {}
    aliases: dict[str, str] = {}
    with zipfile.ZipFile(wheel) as archive:
        for path in spec.get("alias_files", []):
            aliases.update(_aliases(ast.parse(archive.read(path).decode())))
        for path in spec["files"]:
            tree = ast.parse(archive.read(path).decode())
            aliases.update(_aliases(tree))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    classes[node.name] = _class_info(node)
                    where[node.name] = path
        for path, names in spec["literals"].items():
            tree = ast.parse(archive.read(path).decode())
            values: dict[str, list] = {}
            for node in tree.body:
                if isinstance(node, ast.AnnAssign | ast.Assign):
                    target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
                    if isinstance(target, ast.Name) and node.value is not None:
                        values[target.id] = _literal(node.value, values)
            for name in names:
                literals[name] = _literal_values(tree, name, values)
    wanted = [name for names in spec["files"].values() for name in names]
    return {
        "package": package,
        "version": spec["version"],
        "wheel": wheel.name,
        "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        "files": sorted({*spec["files"], *spec["literals"], *spec.get("alias_files", [])}),
        "generated_by": "scripts/conformance_fixtures.py",
        "classes": {name: {"file": where[name], **resolve(classes, name)} for name in wanted},
        "literals": literals,
        "aliases": dict(sorted(aliases.items())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", type=Path, help="folder holding the downloaded wheels")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    for package, spec in SPECS.items():
        found = sorted(args.wheels.glob(f"{package}-{spec['version']}-*.whl"))
        if not found:
            print(
                f"error: no {package}-{spec['version']} wheel in {args.wheels}; "
                f"run: pip download --no-deps {package}=={spec['version']} -d {args.wheels}",
                file=sys.stderr,
            )
            return 1
        fixture = build(package, found[0])
        target = OUT / f"{package}-{spec['version']}.json"
        target.write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
        print(f"wrote {target} ({len(fixture['classes'])} classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
