#!/usr/bin/env python3
"""Record what pycti's own importer does with the connector's patch messages.

The connector edits indicators the platform holds (revocation of a removed trail, un-revocation of one listed again,
a new `valid_until`) with pycti's patch operation: an object carrying `opencti_operation: "patch"` and
`opencti_field_patch`, which the platform's worker imports with `OpenCTIStix2.import_bundle` like any bundle
(protocol §8). This script runs that importer, unchanged, over the connector's messages with a recording API client
(every call the importer makes is recorded, none reaches a platform), and writes, per message, the bundle and the
edit calls pycti made: `{"name", "bundle", "calls": [{"method", "id", "input"}], "other_calls", "imported"}`.
`src/lifecycle.rs` (test `pycti_applies_the_patches_as_edits`) rebuilds the same messages and checks both.

Usage (from the repository root):
    python3 -m venv /tmp/vectors && /tmp/vectors/bin/pip install -r tools/vectors/requirements.txt
    WRITE_PATCH_MESSAGES=/tmp/patch_messages.json cargo test --lib pycti_applies_the_patches_as_edits
    /tmp/vectors/bin/python tools/vectors/check_patches.py /tmp/patch_messages.json \
        > tests/data/pycti_patch_vectors.json
"""

import importlib.metadata
import json
import sys
from unittest import mock

from pycti.api.opencti_api_client import OpenCTIApiClient
from pycti.utils.opencti_stix2 import OpenCTIStix2

# The API client's calls that reach the platform with an edit; anything else the importer calls is listed apart.
EDITS = ("update_field",)
# Calls that only read settings or log, made whatever the bundle.
QUIET = ("logger_class", "set_retry_number", "get_attribute_in_extension", "get_attribute_in_mitre_extension")


def import_message(bundle):
    client = mock.MagicMock()
    # The importer reads ids and operations through these two static helpers: use pycti's own.
    client.get_attribute_in_extension = OpenCTIApiClient.get_attribute_in_extension
    client.get_attribute_in_mitre_extension = OpenCTIApiClient.get_attribute_in_mitre_extension
    importer = OpenCTIStix2(client)
    imported, too_large = importer.import_bundle(json.loads(json.dumps(bundle)))
    calls, others, errors = [], [], []
    for name, args, kwargs in client.mock_calls:
        if name.endswith(EDITS):
            calls.append({"method": name, "id": kwargs.get("id"), "input": kwargs.get("input")})
        elif name.endswith((".error", ".warning")):
            errors.append({"method": name, "args": [str(a) for a in args]})
        elif not name.startswith(QUIET) and not name.endswith((".info", ".debug")):
            others.append(name)
    return calls, others, errors, [item["id"] for item in imported], len(too_large)


def main():
    messages = json.load(open(sys.argv[1]))
    out = {"pycti": importlib.metadata.version("pycti"), "vectors": []}
    for message in messages:
        calls, others, errors, imported, too_large = import_message(message["bundle"])
        out["vectors"].append(
            {
                "name": message["name"],
                "bundle": message["bundle"],
                "calls": calls,
                "other_calls": others,
                "errors": errors,
                "imported": imported,
                "too_large": too_large,
            }
        )
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
