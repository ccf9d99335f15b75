#!/usr/bin/env python3
"""Checks that the deployment files agree with the settings and with each other (.ci/run runs it; stdlib only).

- docker-compose.yml passes every setting config.yml.sample lists (generated from the code's descriptions) to the
  connector's containers, and nothing that is not a setting;
- .env.sample lists every variable docker-compose.yml reads, and none it does not read;
- the image keeps its health check: HEALTHCHECK runs `health`, and CONNECTOR_EXPOSE_METRICS=true serves it;
- __metadata__/connector_manifest.json has the catalog's 20 keys and values of the allowed forms, and logo.png is a
  PNG.

    python3 tools/check_deploy_files.py

A new setting makes this fail until it is added to docker-compose.yml's `x-connector` environment and .env.sample.
"""

import json
import re
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Settings the compose file sets itself rather than passing from .env.
SET_BY_COMPOSE = {
    "CONNECTOR_TYPE",  # only EXTERNAL_IMPORT
    "CONNECTOR_ROLE",  # each service's own
}

MANIFEST_KEYS = [
    "title", "slug", "description", "short_description", "logo", "use_cases", "solution_categories",
    "license_type", "contact", "verified", "last_verified_date", "playbook_supported", "max_confidence_level",
    "support_version", "subscription_link", "source_code", "manager_supported", "container_version",
    "container_image", "container_type",
]
USE_CASES = {
    "Adversary & Campaign Insights", "Vulnerability & Exploit Awareness", "Infrastructure & Attack Surface Visibility",
    "Detection & Response Enablement", "Fraud, Financial Crime & Cryptocurrency Monitoring",
    "Brand, Digital Risk & Underground Exposure", "Third-Party & Supply Chain Oversight",
    "Cloud, SaaS & Platform Security", "Geopolitical, Physical & Hybrid Risk Analysis",
    "Market Vertical & Mission-Specific Intelligence", "FIMI & Disinformation", "Other",
}
SOLUTION_CATEGORIES = {
    "Threat Intelligence Feed", "Endpoint Detection & Response", "SIEM & Security Analytics",
    "Malware Analysis & Sandbox", "SOAR & Security Automation", "Vulnerability & Exposure Management",
    "Attack Surface Management", "Network Security", "Email Security", "AI Security",
    "Incident Response & Case Management", "Digital Risk Protection", "Governance, Risk & Compliance",
    "Cloud Security", "Enrichment & Reputation", "Import, Export & Sharing", "Other",
}
CONTAINER_TYPES = {"EXTERNAL_IMPORT", "INTERNAL_ENRICHMENT", "INTERNAL_EXPORT_FILE", "INTERNAL_IMPORT_FILE", "STREAM"}


def settings_from_sample(text: str) -> set[str]:
    """SECTION_KEY of every `key:` under a top-level `section:` of config.yml.sample."""
    names, section = set(), None
    for line in text.splitlines():
        if m := re.match(r"^([a-z_]+):\s*$", line):
            section = m.group(1)
        elif section and (m := re.match(r"^  ([a-z_]+):", line)):
            names.add(f"{section}_{m.group(1)}".upper())
    return names


def compose_connector_environment(text: str) -> set[str]:
    """The keys of the `x-connector` block's `environment:` mapping (the anchor every connector service merges)."""
    block = re.search(r"^x-connector:.*?$(.*?)^\S", text, re.M | re.S)
    if not block:
        return set()
    env = re.search(r"^  environment:.*?$(.*?)(?=^  \S|\Z)", block.group(1), re.M | re.S)
    if not env:
        return set()
    return set(re.findall(r"^    ([A-Z][A-Z0-9_]*):", env.group(1), re.M))


def png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def main() -> int:
    problems: list[str] = []

    settings = settings_from_sample((ROOT / "config.yml.sample").read_text())
    if not settings:
        problems.append("config.yml.sample: no setting found")
    compose = (ROOT / "docker-compose.yml").read_text()
    passed = compose_connector_environment(compose)
    for name in sorted(settings - SET_BY_COMPOSE - passed):
        problems.append(f"docker-compose.yml: the setting {name} is not passed (x-connector's environment)")
    for name in sorted(passed - settings):
        problems.append(f"docker-compose.yml: x-connector's environment sets {name}, which is not a setting")

    # Variables the compose file reads: ${NAME}, ${NAME:-...}, ${NAME:?...}; nested defaults included.
    read = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", compose))
    env_sample = (ROOT / ".env.sample").read_text()
    listed = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", env_sample, re.M))
    for name in sorted(read - listed):
        problems.append(f".env.sample: {name}, which docker-compose.yml reads, is not listed")
    for name in sorted(listed - read):
        problems.append(f".env.sample: {name} is listed but docker-compose.yml does not read it")

    dockerfile = (ROOT / "Dockerfile").read_text()
    if not re.search(r'^HEALTHCHECK .*CMD \["/maltrail-connector", "health"\]', dockerfile, re.M):
        problems.append('Dockerfile: no HEALTHCHECK ... CMD ["/maltrail-connector", "health"]')
    if not re.search(r"^ENV CONNECTOR_EXPOSE_METRICS=true$", dockerfile, re.M):
        problems.append("Dockerfile: the health check needs ENV CONNECTOR_EXPOSE_METRICS=true")

    metadata = ROOT / "__metadata__"
    manifest = json.loads((metadata / "connector_manifest.json").read_text())
    if list(manifest) != MANIFEST_KEYS:
        problems.append(f"connector_manifest.json: keys {list(manifest)}, expected exactly {MANIFEST_KEYS}")
    else:
        slug = manifest["slug"]
        for key in ("title", "slug", "description", "short_description", "support_version"):
            if not isinstance(manifest[key], str) or not manifest[key].strip():
                problems.append(f"connector_manifest.json: {key} must be a non-empty string")
        if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", str(slug)):
            problems.append(f"connector_manifest.json: slug {slug!r} is not a lower-case slug")
        if len(manifest["short_description"]) > 250:
            problems.append(f"connector_manifest.json: short_description has {len(manifest['short_description'])}"
                            " characters (250 at most)")
        for key, allowed in (("use_cases", USE_CASES), ("solution_categories", SOLUTION_CATEGORIES)):
            values = manifest[key]
            if not (isinstance(values, list) and 1 <= len(values) <= 3 and len(set(values)) == len(values)
                    and set(values) <= allowed):
                problems.append(f"connector_manifest.json: {key} must be 1 to 3 of the catalog's values: {values}")
        if manifest["license_type"] not in ("Free", "Commercial", None):
            problems.append("connector_manifest.json: license_type must be Free, Commercial or null")
        if manifest["last_verified_date"] is not None and not re.fullmatch(
                r"\d{4}-\d{2}-\d{2}", str(manifest["last_verified_date"])):
            problems.append("connector_manifest.json: last_verified_date must be YYYY-MM-DD or null")
        for key in ("verified", "playbook_supported", "manager_supported"):
            if not isinstance(manifest[key], bool):
                problems.append(f"connector_manifest.json: {key} must be a boolean")
        level = manifest["max_confidence_level"]
        if not (isinstance(level, int) and not isinstance(level, bool) and 0 <= level <= 100):
            problems.append("connector_manifest.json: max_confidence_level must be an integer from 0 to 100")
        if not str(manifest["source_code"]).startswith("https://github.com/OpenCTI-Platform/connectors/"):
            problems.append("connector_manifest.json: source_code must be in OpenCTI-Platform/connectors")
        if manifest["container_version"] != "rolling":
            problems.append('connector_manifest.json: container_version must be "rolling"')
        if manifest["container_image"] != f"opencti/connector-{slug}":
            problems.append(f"connector_manifest.json: container_image must be opencti/connector-{slug}")
        if manifest["container_type"] not in CONTAINER_TYPES:
            problems.append(f"connector_manifest.json: container_type {manifest['container_type']!r} is not a type")
        if manifest["logo"] not in (None, f"external-import/{slug}/__metadata__/logo.png"):
            problems.append(f"connector_manifest.json: logo must be external-import/{slug}/__metadata__/logo.png")
        if manifest["manager_supported"] and not (metadata / "connector_config_schema.json").is_file():
            problems.append("__metadata__: manager_supported needs connector_config_schema.json")
    logo = metadata / "logo.png"
    size = png_size(logo.read_bytes()) if logo.is_file() else None
    if size is None:
        problems.append("__metadata__/logo.png: missing or not a PNG")
    elif size[0] != size[1] or size[0] < 128:
        problems.append(f"__metadata__/logo.png: {size[0]}x{size[1]}, expected a square of 128 pixels or more")

    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print(f"deployment files agree: {len(settings)} settings, {len(read)} compose variables, catalog manifest ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
