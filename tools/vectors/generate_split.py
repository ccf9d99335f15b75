#!/usr/bin/env python3
"""Generate the splitting test vectors with pycti's own splitter.

Builds small trail files from the real Maltrail snapshot (the first lines of a few chosen files, plus hand-made
cases: a value listed twice, in two blocks, in two spellings), converts them with the connector's `export` command,
and runs pycti's `OpenCTIStix2Splitter.split_bundle_with_expectations` on every resulting bundle. The output holds,
per case, the input objects in bundle order and what pycti made of them: the pieces (object, `x_opencti_seq`), the
objects left out, and the expectation count. `tests/sequence_vectors.rs` feeds the same input objects through the
connector's streaming sequencer and must get the same pieces.

Usage (from the repository root, after `cargo build --release`):
    /tmp/vectors/bin/python tools/vectors/generate_split.py ../shared/data/maltrail/trails/static \
        target/release/maltrail-connector > tests/data/pycti_split_vectors.json
"""

import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile

from pycti.utils.opencti_stix2_splitter import OpenCTIStix2Splitter

# (trail file, lines kept from its start): every category, aliases, reference blocks, most forms.
SAMPLES = [
    ("malware/emotet.txt", 60),
    ("malware/icarus _ransomware.txt", 40),
    ("malware/alpha.txt", 60),
    ("malicious/404_tds.txt", 40),
    ("suspicious/onion.txt", 40),
    ("suspicious/domain.txt", 40),
    ("mass_scanner_cidr.txt", 40),
]

HAND_MADE = {
    "malware/hand_made.txt": """# Aliases: Hand Made, HandMade
# Reference: https://example.org/a
evil.example.com
1.2.3.4:443
1.2.3.4:80
# Reference: https://example.org/b
evil.example.com
.evil.example.com.
http://evil.example.com/gate.php
evil.example.com/gate.php
/gate.php?id=
[fe80::1]:8443
""",
}


def build_trails(snapshot, directory):
    for path, lines in SAMPLES:
        with open(os.path.join(snapshot, path), encoding="utf-8") as handle:
            head = handle.read().split("\n")[:lines]
        target = os.path.join(directory, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as handle:
            handle.write("\n".join(head) + "\n")
    for path, text in HAND_MADE.items():
        target = os.path.join(directory, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(text)


def export(binary, trails, out):
    env = dict(os.environ, MALTRAIL_CATEGORIES="malware,malicious,suspicious,mass_scanner", MALTRAIL_TLP="amber+strict")
    subprocess.run([binary, "export", "--trails", trails, "--out", out, "--jobs", "1"], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def split(bundle):
    count, left_out, pieces = OpenCTIStix2Splitter().split_bundle_with_expectations(
        json.loads(json.dumps(bundle)), use_json=False)
    result = []
    for piece in pieces:
        (obj,) = piece["objects"]
        obj = dict(obj)
        obj.pop("nb_deps", None)  # a by-product of pycti's splitter, ignored by the platform
        result.append({"id": obj["id"], "x_opencti_seq": piece["x_opencti_seq"], "object": obj})
    return count, [o["id"] for o in left_out], result


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    snapshot, binary = sys.argv[1], os.path.abspath(sys.argv[2])
    cases = []
    with tempfile.TemporaryDirectory() as work:
        trails, out = os.path.join(work, "trails"), os.path.join(work, "out")
        build_trails(snapshot, trails)
        export(binary, trails, out)
        for name in sorted(os.listdir(out)):
            with open(os.path.join(out, name), encoding="utf-8") as handle:
                envelope = json.load(handle)
            bundle = envelope["bundle"]
            count, left_out, pieces = split(bundle)
            label = name.split("-", 4)[-1]
            cases.append({"case": label, "bundle_id": bundle["id"], "objects": bundle["objects"],
                          "expectations": count, "left_out": left_out, "pieces": pieces})
    output = {"generator": "tools/vectors/generate_split.py", "pycti": importlib.metadata.version("pycti"),
              "cases": cases}
    json.dump(output, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
