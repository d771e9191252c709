"""Dagster's private names live in one module; an upgrade that moves one fails here, by name."""

import ast
import subprocess
from pathlib import Path

from usage_etl.defs import dagster_internals

ROOT = Path(__file__).resolve().parent.parent


def test_every_private_name_still_imports():
    # the import above already failed loudly if a module moved; a renamed class fails here
    missing = [name for name in dagster_internals.__all__ if getattr(dagster_internals, name, None) is None]
    assert missing == []


def test_no_other_module_imports_dagster_private_modules():
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    offenders = []
    for rel in tracked:
        if rel == "usage_etl/defs/dagster_internals.py":
            continue
        for node in ast.walk(ast.parse((ROOT / rel).read_text(), rel)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{rel}:{node.lineno} {n}" for n in names if n.startswith("dagster._")]
    assert offenders == []
