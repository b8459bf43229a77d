"""``phasegate validate FILE...``: check manifests offline, like a linter.

Problems make a manifest invalid (exit code 1); warnings (queries that are valid but
mislead, see :mod:`phasegate.api.lint`) are printed and change no exit code."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import yaml

from phasegate.api.lint import spec_warnings
from phasegate.api.release import is_release, validate_release
from phasegate.api.resource import ProgressiveRollout
from phasegate.api.validation import validate_rollout


def validate_files(paths: list[str], out: TextIO = sys.stdout) -> int:
    """Print every problem and warning with its file and field path; 1 if any manifest is
    invalid."""
    problems = checked = warned = releases = 0
    for path in paths:
        try:
            documents = list(yaml.safe_load_all(Path(path).read_text()))
        except OSError as error:
            print(f"{path}: cannot read: {error.strerror}", file=out)
            problems += 1
            continue
        except yaml.YAMLError as error:
            print(f"{path}: not valid YAML: {error}".replace("\n", " "), file=out)
            problems += 1
            continue
        for index, doc in enumerate(documents):
            if is_release(doc):
                releases += 1
                name = (doc.get("metadata") or {}).get("name") or f"document {index + 1}"
                _, errors = validate_release(doc)
                for problem in errors:
                    print(f"{path}: ProgressiveRelease/{name}: {problem}", file=out)
                problems += bool(errors)
                continue
            if not ProgressiveRollout.is_rollout(doc):
                continue
            checked += 1
            name = (doc.get("metadata") or {}).get("name") or f"document {index + 1}"
            _, errors = validate_rollout(doc)
            for problem in errors:
                print(f"{path}: ProgressiveRollout/{name}: {problem}", file=out)
            problems += bool(errors)
            for warning in spec_warnings(doc.get("spec")):
                print(f"{path}: ProgressiveRollout/{name}: warning: {warning}", file=out)
                warned += 1
    if checked == 0 and releases == 0 and problems == 0:
        print("no ProgressiveRollout found in " + ", ".join(paths), file=out)
        return 1
    summary = f"{problems} invalid" if problems else "all valid"
    if warned:
        summary += f", {warned} warning(s)"
    kinds = [f"{checked} ProgressiveRollout(s)"] if checked or not releases else []
    kinds += [f"{releases} ProgressiveRelease(s)"] if releases else []  # with their regions'
    print(f"{' and '.join(kinds)} checked, {summary}", file=out)
    return 1 if problems else 0
