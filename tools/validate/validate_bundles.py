#!/usr/bin/env python3
"""Validate exported DIRECTORY_BUNDLE files with the OASIS STIX 2.1 validator and the STIX pattern grammar.

For every file: the envelope is checked, then the shared objects (marking, author, family) and the objects of a
selection of trails (the first --first trails, and the first --per-shape trails of every pattern shape in the file,
with their observables and relationships) are validated as one bundle by `stix2validator` (errors fail, warnings
are counted). Every distinct pattern shape seen in any file, and every selected pattern, is checked by
`stix2patterns`. The OASIS validator is slow (a few hundred objects a second), hence the selection.

Prints a JSON summary on stdout; exits 1 when anything is invalid.

Usage: python validate_bundles.py DIR [--first N] [--per-shape N] [--jobs N]
"""

import argparse
import json
import multiprocessing
import os
import re
import sys

from stix2patterns.validator import run_validator
from stix2validator import ValidationOptions, validate_instance

LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'")
NUMBER = re.compile(r"\b\d+\b")
ENVELOPE_KEYS = {"bundle_type", "applicant_id", "connector", "entities_types", "update", "bundle"}


def shape_of(pattern):
    """The pattern with its values abstracted: `[domain-name:value = '*']`."""
    return NUMBER.sub("N", LITERAL.sub("'*'", pattern))


def select(objects, first, per_shape):
    """Shared objects plus the objects of the selected trails, in bundle order."""
    indicators = [o for o in objects if o["type"] == "indicator"]
    chosen, per = set(), {}
    for index, indicator in enumerate(indicators):
        shape = shape_of(indicator["pattern"])
        if index < first or per.get(shape, 0) < per_shape:
            chosen.add(indicator["id"])
            per[shape] = per.get(shape, 0) + 1
    related = set()
    for o in objects:
        if o["type"] == "relationship" and o["source_ref"] in chosen:
            related.add(o["id"])
            related.add(o["target_ref"])
    return [o for o in objects
            if o["type"] in ("marking-definition", "identity", "malware") or o["id"] in chosen or o["id"] in related]


def validate_file(args):
    path, first, per_shape = args
    errors, shapes = [], {}
    with open(path, encoding="utf-8") as handle:
        envelope = json.load(handle)
    missing = ENVELOPE_KEYS - set(envelope)
    if missing or envelope.get("bundle_type") != "DIRECTORY_BUNDLE":
        errors.append("%s: not a DIRECTORY_BUNDLE envelope (missing %s)" % (path, sorted(missing)))
        return {"errors": errors, "objects": 0, "warnings": 0, "shapes": {}, "patterns": 0}
    objects = envelope["bundle"]["objects"]
    for o in objects:
        if o["type"] == "indicator":
            shapes.setdefault(shape_of(o["pattern"]), o["pattern"])
    selected = select(objects, first, per_shape)
    bundle = dict(envelope["bundle"])
    bundle["objects"] = selected
    result = validate_instance(bundle, ValidationOptions(strict=False, verbose=False, silent=True))
    warnings = 0
    # validate_instance gives one result for the bundle, or per object depending on the validator's version.
    for object_result in getattr(result, "object_results", None) or [result]:
        warnings += len(object_result.warnings or [])
        for error in object_result.errors or []:
            errors.append("%s: %s: %s" % (os.path.basename(path), object_result.object_id, error))
    if not result.is_valid and not errors:
        errors.append("%s: bundle invalid" % os.path.basename(path))
    patterns = 0
    for o in selected:
        if o["type"] == "indicator":
            patterns += 1
            for error in run_validator(o["pattern"]):
                errors.append("%s: %s: pattern %r: %s" % (os.path.basename(path), o["id"], o["pattern"], error))
    return {"errors": errors, "objects": len(selected), "warnings": warnings, "shapes": shapes, "patterns": patterns}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory")
    parser.add_argument("--first", type=int, default=5)
    parser.add_argument("--per-shape", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    options = parser.parse_args()
    files = sorted(os.path.join(options.directory, f) for f in os.listdir(options.directory) if f.endswith(".json"))
    if not files:
        print(json.dumps({"errors": ["no .json files in %s" % options.directory]}))
        return 1
    work = [(f, options.first, options.per_shape) for f in files]
    with multiprocessing.Pool(options.jobs) as pool:
        results = pool.map(validate_file, work)
    errors = [e for r in results for e in r["errors"]]
    shapes = {}
    for r in results:
        for shape, example in r["shapes"].items():
            shapes.setdefault(shape, example)
    for shape, example in sorted(shapes.items()):
        for error in run_validator(example):
            errors.append("pattern shape %s (e.g. %r): %s" % (shape, example, error))
    summary = {
        "files": len(files),
        "objects_validated": sum(r["objects"] for r in results),
        "warnings": sum(r["warnings"] for r in results),
        "patterns_validated": sum(r["patterns"] for r in results) + len(shapes),
        "shapes": sorted(shapes),
        "errors": errors,
    }
    print(json.dumps(summary, indent=1))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
