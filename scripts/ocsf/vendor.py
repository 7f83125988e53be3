#!/usr/bin/env python3
"""Vendors the part of the OCSF schema the audit formatter's test checks against.

  scripts/ocsf/vendor.py SCHEMA_CHECKOUT REV > internal/audit/testdata/ocsf-1.8.0.json

SCHEMA_CHECKOUT is a git clone of github.com/ocsf/ocsf-schema, REV the commit of
its 1.8.0 release ("v1.8.0 prep", 3dcb905d). For the HTTP Activity class and
the Network Activity class (failed TLS handshakes), with the profiles the
gateway uses, and each object the formatter emits, it writes
every attribute (its requirement, its type: a scalar *_t or an object name, and
the enum values where there are some) and the constraints, with "extends" and
"$include" resolved.
"""
import json
import subprocess
import sys

CHECKOUT, REV = sys.argv[1], sys.argv[2]
PROFILES = ["security_control", "network_proxy", "trace", "datetime", "host"]
OBJECTS = ["metadata", "product", "network_endpoint", "http_request", "http_response", "url",
           "tls", "network_connection_info", "network_traffic", "network_proxy", "actor", "user",
           "policy", "firewall_rule", "trace", "authorization", "idp", "san", "service", "logger"]


def show(path):
    out = subprocess.check_output(["git", "-C", CHECKOUT, "show", f"{REV}:{path}"])
    return json.loads(out)


dictionary = show("dictionary.json")["attributes"]


def find(kind, name):
    """The file of an event class or object by its name."""
    files = subprocess.check_output(["git", "-C", CHECKOUT, "ls-tree", "-r", "--name-only", REV, kind]).decode().split()
    for f in files:
        if f.endswith(".json"):
            d = show(f)
            if d.get("name") == name:
                return d
    raise SystemExit(f"{kind}/{name} not found")


def resolve(d, kind):
    """Attributes and constraints of d with its extends chain and includes merged."""
    attrs, constraints = {}, {}
    if d.get("extends"):
        parent = resolve(find(kind, d["extends"]), kind)
        attrs.update(parent["attributes"])
        constraints.update(parent["constraints"])
    own = dict(d.get("attributes", {}))
    for inc in own.pop("$include", []):
        # An included profile's attributes belong to the class only when the
        # event applies that profile: drop those of profiles we don't use.
        if inc.startswith("profiles/") and inc[len("profiles/"):-len(".json")] not in PROFILES:
            continue
        for k, v in show(inc).get("attributes", {}).items():
            if k != "$include":
                attrs.setdefault(k, {}).update(v)
    for k, v in own.items():
        attrs.setdefault(k, {}).update(v)
    constraints.update(d.get("constraints", {}))
    return {"attributes": attrs, "constraints": constraints, "uid": d.get("uid"), "category": d.get("category")}


def shape(attrs):
    out = {}
    for k, v in sorted(attrs.items()):
        base = dictionary.get(k, {})
        a = {"requirement": v.get("requirement", base.get("requirement", "optional")),
             "type": v.get("type", base.get("type", ""))}
        if v.get("is_array", base.get("is_array")):
            a["array"] = True
        enum = v.get("enum", base.get("enum"))
        if enum:
            a["enum"] = {e: c.get("caption", "") for e, c in enum.items()}
        out[k] = a
    return out


def event_class(name):
    c = resolve(find("events", name), "events")
    for p in PROFILES:
        for k, v in show(f"profiles/{p}.json").get("attributes", {}).items():
            if k != "$include":
                c["attributes"].setdefault(k, {}).update(v)
    return c


cls = event_class("http_activity")
net = event_class("network_activity")
objects = {}
for o in OBJECTS:
    r = resolve(find("objects", o), "objects")
    objects[o] = {"attributes": shape(r["attributes"]), "constraints": r["constraints"]}
print(json.dumps({
    "version": show("version.json")["version"],
    "commit": subprocess.check_output(["git", "-C", CHECKOUT, "rev-parse", REV]).decode().strip(),
    "profiles": PROFILES,
    "class": {"name": "http_activity", "uid": 4002, "category_uid": 4,
              "attributes": shape(cls["attributes"]), "constraints": cls["constraints"]},
    "network_class": {"name": "network_activity", "uid": 4001, "category_uid": 4,
                      "attributes": shape(net["attributes"]), "constraints": net["constraints"]},
    "objects": objects,
}, indent=1, sort_keys=True))
