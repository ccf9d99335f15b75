#!/usr/bin/env python3
"""Generate the deterministic-id test vectors with pycti and stix2 themselves.

An independent Python rendering of the connector's trail rules (docs/MODELLING.md) picks trail lines from the real
Maltrail snapshot across every form, builds each pattern, and asks pycti for the indicator id, stix2 for the
observable id, stix2-patterns for the pattern's validity and rfc3986-validator for every URL's validity. Hand-picked
hard cases (unicode, quotes, backslashes, upper case, surrounding spaces) cover the id rules of every object type.
The Rust test `tests/pycti_vectors.rs` must reproduce every value.

Usage (from the repository root):
    python3 -m venv /tmp/vectors && /tmp/vectors/bin/pip install -r tools/vectors/requirements.txt
    /tmp/vectors/bin/python tools/vectors/generate_ids.py ../shared/data/maltrail/trails/static \
        > tests/data/pycti_id_vectors.json
"""

import importlib.metadata
import ipaddress
import json
import os
import random
import re
import sys

import pycti
import stix2
from rfc3986_validator import validate_rfc3986
from stix2patterns.validator import run_validator

PER_FORM = 60
SEED = 20260823

# --- trail rules (an independent rendering of src/trails and src/convert) ---------------------------------------

REGEX_CHARS = set("\\[](){}|^$*+?")


def encode_url(url):
    """Percent-encode what an RFC 3986 URI component cannot hold (see proto-stix/src/uri.rs)."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    if not m:
        return None
    rest = url[m.end():].encode("utf-8")
    bracketed = rest.startswith(b"[") and b"]" in rest
    unreserved = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    sub_delims = set(b"!$&'()*+,;=")
    pchar = unreserved | sub_delims | set(b":@")
    allowed = {
        "authority": unreserved | sub_delims | set(b":@") | (set(b"[]") if bracketed else set()),
        "path": pchar | set(b"/"),
        "query": pchar | set(b"/?"),
        "fragment": pchar | set(b"/?"),
    }
    part = "authority"
    out = bytearray(m.group(0).encode())
    hexdigits = set(b"0123456789abcdefABCDEF")
    for i, b in enumerate(rest):
        nxt = None
        if part == "authority" and b == ord("/"):
            nxt = "path"
        elif part in ("authority", "path") and b == ord("?"):
            nxt = "query"
        elif part in ("authority", "path", "query") and b == ord("#"):
            nxt = "fragment"
        if nxt:
            part = nxt
            keep = True
        elif b == ord("%"):
            keep = len(rest) > i + 2 and rest[i + 1] in hexdigits and rest[i + 2] in hexdigits
        else:
            keep = b in allowed[part]
        if keep:
            out.append(b)
        else:
            out += ("%%%02X" % b).encode()
    return out.decode("ascii")


def is_ipv4(text):
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and p.isascii() and len(p) <= 3 and int(p) <= 255 for p in parts)


def ipv4_like(text):
    return bool(re.fullmatch(r"[0-9.]+", text)) and "." in text


def is_ipv6(text):
    try:
        ipaddress.IPv6Address(text)
        return True
    except ValueError:
        return False


def host_ok(text):
    """A domain name (returned without surrounding dots) or an IPv4 address; None when neither."""
    if ipv4_like(text):
        return text if is_ipv4(text) else None
    name = text.strip(".")
    if "." not in name:
        return None
    for label in name.split("."):
        if not label or len(label) > 63:
            return None
        if not all((c.isascii() and (c.isalnum() or c in "-_")) or (not c.isascii() and c.isalnum()) for c in label):
            return None
    return name


def port_ok(text):
    return text.isdigit() and text.isascii() and int(text) <= 65535


def classify(text):
    """(form, value, port) or None for a line the connector skips."""
    if "://" in text and text.split("://", 1)[0]:
        url = encode_url(text)
        authority = re.split(r"[/?#]", text.split("://", 1)[1])[0]
        return ("url", url, None) if url and authority else None
    if text.startswith("/"):
        return ("path", text, None) if text.strip("/") else None
    m = re.fullmatch(r"\[([^\]]*)\](.*)", text)
    if m and is_ipv6(m.group(1)):
        inner, rest = m.groups()
        if rest == "":
            return ("ipv6", inner, None)
        if rest.startswith(":") and "/" not in rest:
            return ("ipv6_port", inner, int(rest[1:])) if port_ok(rest[1:]) else None
        return ("host_path", encode_url("http://" + text), None)
    if "/" in text:
        host, path = text.split("/", 1)
        if path.isdigit() and path.isascii() and ipv4_like(host):
            return ("ipv4_cidr", text, None) if is_ipv4(host) and int(path) <= 32 else None
        if path.isdigit() and path.isascii() and is_ipv6(host):
            return ("ipv6_cidr", text, None) if int(path) <= 128 else None
        bare = host
        if ":" in host:
            bare, port = host.split(":", 1)
            if not port_ok(port):
                return None
        if not bare or host_ok(bare) is None:
            return None
        return ("host_path", encode_url("http://" + text), None)
    if set(text) & REGEX_CHARS:
        return ("domain_regex", text, None)
    if ":" in text:
        if is_ipv6(text):
            return ("ipv6", text, None)
        host, port = text.split(":", 1)
        if not port_ok(port):
            return None
        name = host_ok(host)
        if name is None:
            return None
        return ("ipv4_port" if ipv4_like(host) else "domain_port", name, int(port))
    name = host_ok(text)
    if name is None:
        return None
    return ("ipv4" if ipv4_like(text) else "domain", name, None)


def lit(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def regex_escape(text):
    return "".join("\\" + c if c in "\\^$.|?*+()[]{}" else c for c in text)


def path_regex(path):
    trimmed = path.rstrip("/")
    if trimmed.endswith(("=", "?")):
        return "^[a-z]+://[^/]+" + regex_escape(trimmed)
    return "^[a-z]+://[^/]+" + regex_escape(trimmed) + "(?:[/?#.]|$)"


NT_TYPE = {"ipv4_port": "ipv4-addr", "ipv6_port": "ipv6-addr", "domain_port": "domain-name"}
SIMPLE = {
    "ipv4": "ipv4-addr", "ipv4_cidr": "ipv4-addr", "ipv6": "ipv6-addr", "ipv6_cidr": "ipv6-addr",
    "domain": "domain-name", "url": "url", "host_path": "url",
}
SCO_CLASS = {"ipv4-addr": stix2.IPv4Address, "ipv6-addr": stix2.IPv6Address, "domain-name": stix2.DomainName,
             "url": stix2.URL}
OBSERVABLE = {"ipv4_port": "ipv4-addr", "ipv6_port": "ipv6-addr", "domain_port": "domain-name", **SIMPLE}


def pattern_of(form, value, port):
    if form in NT_TYPE:
        return ("[network-traffic:dst_ref.type = %s AND network-traffic:dst_ref.value = %s AND "
                "network-traffic:dst_port = %d]" % (lit(NT_TYPE[form]), lit(value), port))
    if form == "path":
        return "[url:value MATCHES %s]" % lit(path_regex(value))
    if form == "domain_regex":
        return "[domain-name:value MATCHES %s]" % lit(value)
    return "[%s:value = %s]" % (SIMPLE[form], lit(value))


def split_comment(line):
    m = re.search(r"\s#", line)
    return line[:m.start()].rstrip() if m else line


# --- vectors --------------------------------------------------------------------------------------------------


def trail_vectors(root):
    by_form = {}
    for dirpath, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            if not name.endswith(".txt"):
                continue
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            with open(full, "rb") as handle:
                for number, raw in enumerate(handle.read().split(b"\n"), start=1):
                    try:
                        line = raw.decode("utf-8").strip()
                    except UnicodeDecodeError:
                        continue
                    if not line or line.startswith("#"):
                        continue
                    value = split_comment(line)
                    classified = classify(value)
                    if classified:
                        by_form.setdefault(classified[0], []).append((rel, number, value, classified))
    rng = random.Random(SEED)
    vectors = []
    for form in sorted(by_form):
        candidates = by_form[form]
        picks = candidates if len(candidates) <= PER_FORM else rng.sample(candidates, PER_FORM)
        for rel, number, text, (form_, value, port) in sorted(picks, key=lambda p: (p[0], p[1])):
            vectors.append(trail_vector(rel, number, text, form_, value, port))
    for text in HAND_PICKED_TRAILS:
        classified = classify(text)
        if not classified:
            raise SystemExit("hand-picked trail %r is not classified" % text)
        vectors.append(trail_vector("(hand-picked)", 0, text, *classified))
    return vectors


def trail_vector(rel, number, text, form, value, port):
    pattern = pattern_of(form, value, port)
    errors = run_validator(pattern)
    if errors:
        raise SystemExit("invalid pattern %r for %s:%d: %s" % (pattern, rel, number, errors))
    vector = {"file": rel, "line": number, "trail": text, "form": form, "value": value, "port": port,
              "pattern": pattern, "indicator_id": pycti.Indicator.generate_id(pattern)}
    sco_type = OBSERVABLE.get(form)
    if sco_type:
        if sco_type == "url" and not validate_rfc3986(value):
            raise SystemExit("URL %r for %s:%d is not an RFC 3986 URI" % (value, rel, number))
        vector["observable"] = {"type": sco_type, "value": value, "id": SCO_CLASS[sco_type](value=value).id}
    return vector


# Trail lines the snapshot lacks (domain:port, IPv6 CIDR) or that stress escaping and URL encoding.
HAND_PICKED_TRAILS = [
    "kuitrafes.ru:8080",
    "2001:db8::/32",
    ".evil.com.",
    "EVIL.Example.COM",
    "xn--eepass-vbb.info",
    "пример.рф",
    "oreilly.com/a'b",
    "http://x.com/a\\b'c",
    "/a\\b'c.php",
    "/gate.php?id=",
    "/panel/",
    "http://x.com/a b#c#d",
    "[::1]:80/x y",
    "http://[fe80::1]:8080/x",
    "1.2.3.4:0",
    "1.2.3.4:65535",
    "10.0.0.0/8",
    "ftp://files.example.org/pub/x.exe",
    "example.com/путь?q=значение",
]

HARD_PATTERNS = [
    "  [domain-name:value = 'evil.com']  ",
    "\t[domain-name:value = 'evil.com']\n",
    "\u00a0[domain-name:value = 'evil.com']\u3000",
    "\x1c[domain-name:value = 'evil.com']\x1f",
    "[domain-name:value = 'EVIL.com']",
    "[domain-name:value = 'o\\'reilly.com']",
    "[url:value = 'http://x/a\\\\b']",
    "[domain-name:value = 'пример.рф']",
    "[domain-name:value = 'straße.de']",
    "[url:value = 'http://x/\"quoted\"']",
    "[url:value = 'http://x/tab\there']",
    "[url:value = 'http://x/\u2028line-separator']",
    "[url:value = 'http://x/emoji-\U0001F600']",
    "[url:value = 'http://x/ctl-\x01\x7f']",
    "[url:value MATCHES '^[a-z]+://[^/]+/cmd\\\\.php\\\\?hwid=']",
]
HARD_NAMES = ["Emotet", "  Emotet ", "EMOTET", "Σίσυφος", "ΣΊΣΥΦΟΣ", "İstanbul", "Straße", "O'Brien \"Q\"",
              "back\\slash", "tab\tname", "\u200bzero-width", "icarus _ransomware", "Cobalt Strike"]
HARD_VALUES = [("domain-name", "EVIL.com"), ("domain-name", "o'reilly.com"), ("domain-name", "пример.рф"),
               ("url", "http://x/a%20b?q='1'"), ("url", "http://[fe80::1]:8080/x"),
               ("ipv4-addr", "10.0.0.0/8"), ("ipv6-addr", "fe80::1"), ("ipv6-addr", "2001:db8::/32")]


def hard_vectors():
    indicators = [{"pattern": p, "id": pycti.Indicator.generate_id(p)} for p in HARD_PATTERNS]
    malware = [{"name": n, "id": pycti.Malware.generate_id(n)} for n in HARD_NAMES]
    identities = [{"name": n, "identity_class": c, "id": pycti.Identity.generate_id(n, c)}
                  for n, c in [("Maltrail", "organization"), ("  maltrail ", "ORGANIZATION"), ("Σίσυφος", "individual"),
                               ("O'Brien \"Q\"", "organization")]]
    observables = [{"type": t, "value": v, "id": SCO_CLASS[t](value=v).id} for t, v in HARD_VALUES]
    relationships = []
    for rel_type, source, target in [
        ("indicates", pycti.Indicator.generate_id("[domain-name:value = 'evil.com']"), pycti.Malware.generate_id("Emotet")),
        ("based-on", pycti.Indicator.generate_id("[ipv4-addr:value = '1.2.3.4']"), stix2.IPv4Address(value="1.2.3.4").id),
    ]:
        relationships.append({"relationship_type": rel_type, "source_ref": source, "target_ref": target,
                              "id": pycti.StixCoreRelationship.generate_id(rel_type, source, target)})
    markings = [json.loads(m.serialize()) for m in (stix2.TLP_WHITE, stix2.TLP_GREEN, stix2.TLP_AMBER, stix2.TLP_RED)]
    markings.append({"id": pycti.MarkingDefinition.generate_id("TLP", "TLP:AMBER+STRICT"),
                     "definition_type": "statement", "x_opencti_definition": "TLP:AMBER+STRICT"})
    return {"indicators": indicators, "malware": malware, "identities": identities, "observables": observables,
            "relationships": relationships, "markings": markings}


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    versions = {p: importlib.metadata.version(p) for p in ("pycti", "stix2", "stix2-patterns", "rfc3986-validator")}
    out = {"generator": "tools/vectors/generate_ids.py", "versions": versions, "seed": SEED, "per_form": PER_FORM,
           "trails": trail_vectors(sys.argv[1]), **hard_vectors()}
    json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
