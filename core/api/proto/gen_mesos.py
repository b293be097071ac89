#!/usr/bin/env python3
"""Generates Tessera's Mesos v1 `.proto` files from the compact field tables.

Usage: python3 gen_mesos.py [WIRE_DIR]   (default: /work/shared/mesos/wire)

Tables come from WIRE_DIR (the shared Mesos tables) and from `tables/` next to this script
(messages the shared tables reference but do not define; see `tables/README.md`). Several
tables may feed one package.

Input format (one declaration per line):
    msg Outer.Inner { name=NUM [req|rep] Type [def X] [deprecated]; oneof o(a=1 T; b=2 T); ... }
    enum Outer.Name { A=0, B=1 }
Types may be `map<K,V>`. Field numbers, labels, defaults and nesting are kept exactly.

Types referenced but defined in no table get a minimal placeholder message (listed in the
header comment of the file that holds them), so the set compiles. Output goes to
`mesos/v1/...` next to this script. Re-run after changing the tables; the output is
committed so the build needs no Python.
"""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
WIRE = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/mesos/wire"
LOCAL = os.path.join(HERE, "tables")

# (directory, table file, package, output path relative to HERE)
FILES = [
    (WIRE, "mesos_v1_compact.txt", "mesos.v1", "mesos/v1/mesos.proto"),
    (LOCAL, "mesos_v1_extra_compact.txt", "mesos.v1", "mesos/v1/mesos.proto"),
    (WIRE, "quota_compact.txt", "mesos.v1.quota", "mesos/v1/quota/quota.proto"),
    (WIRE, "scheduler_compact.txt", "mesos.v1.scheduler", "mesos/v1/scheduler/scheduler.proto"),
    (WIRE, "executor_compact.txt", "mesos.v1.executor", "mesos/v1/executor/executor.proto"),
    (WIRE, "master_compact.txt", "mesos.v1.master", "mesos/v1/master/master.proto"),
    (LOCAL, "allocator_compact.txt", "mesos.v1.allocator", "mesos/v1/allocator/allocator.proto"),
    (LOCAL, "maintenance_compact.txt", "mesos.v1.maintenance",
     "mesos/v1/maintenance/maintenance.proto"),
]
PLACEHOLDER_FILE = ("mesos.v1.maintenance", "mesos/v1/maintenance/maintenance.proto")
WKT = {"google.protobuf.Duration": "google/protobuf/duration.proto"}

SCALARS = {
    "double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
    "fixed32", "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes",
}


class Msg:
    def __init__(self, full):
        self.full = full  # package-qualified
        self.items = []  # ("field", dict) | ("oneof", name, [dict])
        self.children = []  # full names of nested msgs/enums, in table order
        self.placeholder = False


class Enum:
    def __init__(self, full, values):
        self.full = full
        self.values = values


def split_top(s, sep):
    """Splits on `sep` outside of () and <>."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "(<":
            depth += 1
        elif ch in ")>":
            depth -= 1
        if ch == sep and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [x.strip() for x in out if x.strip()]


FIELD_RE = re.compile(
    r"^(\w+)=(\d+)\s+(?:(req|rep)\s+)?(map<[^>]+>|[\w.]+)"
    r"((?:\s+\[def [^\]]+\])?)((?:\s+\[deprecated\])?)$"
)


def parse_field(text):
    m = FIELD_RE.match(text.strip())
    if not m:
        raise SystemExit(f"cannot parse field: {text!r}")
    name, num, label, ty, default, dep = m.groups()
    default = default.strip()[len("[def "):-1] if default.strip() else None
    return {
        "name": name, "num": int(num), "label": label, "type": ty,
        "default": default, "deprecated": bool(dep.strip()),
    }


def parse_tables():
    decls = {}  # full name -> Msg | Enum
    order = []  # (package, full name) in table order
    for wdir, fname, pkg, _ in FILES:
        with open(os.path.join(wdir, fname)) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                m = re.match(r"^(msg|enum)\s+([\w.]+)\s*\{(.*)\}$", line)
                if not m:
                    raise SystemExit(f"cannot parse line: {line!r}")
                kind, name, body = m.groups()
                full = f"{pkg}.{name}"
                if kind == "enum":
                    vals = []
                    for v in split_top(body, ","):
                        k, n = v.split("=")
                        vals.append((k.strip(), int(n)))
                    decls[full] = Enum(full, vals)
                else:
                    msg = Msg(full)
                    for item in split_top(body, ";"):
                        om = re.match(r"^oneof\s+(\w+)\((.*)\)$", item)
                        if om:
                            fields = [parse_field(x) for x in split_top(om.group(2), ";")]
                            msg.items.append(("oneof", om.group(1), fields))
                        else:
                            msg.items.append(("field", parse_field(item)))
                    decls[full] = msg
                order.append((pkg, full))
    return decls, order


def resolve(decls, scope, ref):
    """Protobuf name resolution of `ref` from inside `scope` (a full message name)."""
    if ref in WKT:
        return ref
    first, _, rest = ref.partition(".")
    parts = scope.split(".")
    while parts:
        cand = ".".join(parts + [first])
        if cand in decls or any(k.startswith(cand + ".") for k in decls):
            full = ".".join(parts + [ref])
            return full if full in decls else None
        parts.pop()
    return ref if ref in decls else None


def field_types(f):
    if f["type"].startswith("map<"):
        k, v = f["type"][4:-1].split(",")
        return [k.strip(), v.strip()]
    return [f["type"]]


def main():
    decls, order = parse_tables()
    placeholders = []  # (package, full)
    pkg_of = {full: pkg for pkg, full in order}

    # Parents that are not declared become empty messages.
    for pkg, full in list(order):
        name = full[len(pkg) + 1:]
        parts = name.split(".")
        for i in range(1, len(parts)):
            parent = pkg + "." + ".".join(parts[:i])
            if parent not in decls:
                decls[parent] = Msg(parent)
                decls[parent].placeholder = True
                placeholders.append((pkg, parent))
                pkg_of[parent] = pkg

    # Resolve every reference; invent placeholders for the missing ones.
    changed = True
    while changed:
        changed = False
        for full, d in list(decls.items()):
            if not isinstance(d, Msg):
                continue
            fields = []
            for it in d.items:
                fields += [it[1]] if it[0] == "field" else it[2]
            for f in fields:
                for t in field_types(f):
                    if t in SCALARS or resolve(decls, full, t):
                        continue
                    if "." in t:
                        pkg = "mesos.v1." + t.rsplit(".", 1)[0]
                        target = "mesos.v1." + t
                    else:
                        pkg, target = "mesos.v1", "mesos.v1." + t
                    decls[target] = Msg(target)
                    decls[target].placeholder = True
                    placeholders.append((pkg, target))
                    pkg_of[target] = pkg
                    changed = True

    # Build nesting.
    top = {}  # package -> [full names]
    for full, d in decls.items():
        pkg = pkg_of[full]
        rel = full[len(pkg) + 1:]
        if "." in rel:
            parent = full.rsplit(".", 1)[0]
            decls[parent].children.append(full)
        else:
            top.setdefault(pkg, []).append(full)

    out_paths = {pkg: path for _, _, pkg, path in FILES}
    out_paths[PLACEHOLDER_FILE[0]] = PLACEHOLDER_FILE[1]
    pkg_file = dict(out_paths)

    def deps_of(pkg):
        deps = set()
        for full, d in decls.items():
            if pkg_of[full] != pkg or not isinstance(d, Msg):
                continue
            fields = []
            for it in d.items:
                fields += [it[1]] if it[0] == "field" else it[2]
            for f in fields:
                for t in field_types(f):
                    if t in SCALARS:
                        continue
                    r = resolve(decls, full, t)
                    if r in WKT:
                        deps.add(WKT[r])
                    elif pkg_of[r] != pkg:
                        deps.add(pkg_file[pkg_of[r]])
        return sorted(deps)

    def fmt_field(f, in_oneof=False):
        ty = f["type"]
        if ty.startswith("map<"):
            k, v = field_types(f)
            ty = f"map<{k}, {v}>"
            label = ""
        elif in_oneof:
            label = ""
        else:
            label = {"req": "required ", "rep": "repeated ", None: "optional "}[f["label"]]
        opts = []
        if f["default"] is not None:
            opts.append(f"default = {f['default']}")
        if f["deprecated"]:
            opts.append("deprecated = true")
        o = f" [{', '.join(opts)}]" if opts else ""
        return f"{label}{ty} {f['name']} = {f['num']}{o};"

    def emit(full, indent):
        d = decls[full]
        pad = "  " * indent
        short = full.rsplit(".", 1)[1]
        lines = []
        if isinstance(d, Enum):
            lines.append(f"{pad}enum {short} {{")
            for k, n in d.values:
                lines.append(f"{pad}  {k} = {n};")
            lines.append(f"{pad}}}")
            return lines
        if d.placeholder and not d.items and not d.children:
            lines.append(f"{pad}// PLACEHOLDER: referenced by the tables but defined in none.")
        lines.append(f"{pad}message {short} {{")
        for child in d.children:
            lines += emit(child, indent + 1)
        for it in d.items:
            if it[0] == "field":
                lines.append(f"{pad}  {fmt_field(it[1])}")
            else:
                lines.append(f"{pad}  oneof {it[1]} {{")
                for f in it[2]:
                    lines.append(f"{pad}    {fmt_field(f, True)}")
                lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")
        return lines

    for pkg, path in out_paths.items():
        if pkg not in top:
            continue
        src = ", ".join(fn for _, fn, p, _ in FILES if p == pkg) or "placeholders only"
        ph = [f for p, f in placeholders if p == pkg and not decls[f].items]
        lines = [
            "// GENERATED by core/api/proto/gen_mesos.py from the Mesos v1 compact tables",
            f"// ({src}). Do not edit by hand.",
        ]
        if ph:
            lines.append("// Placeholder messages (referenced but not defined in the tables):")
            lines += [f"//   {p}" for p in ph]
        lines += ["", 'syntax = "proto2";', "", f"package {pkg};", ""]
        for dep in deps_of(pkg):
            lines.append(f'import "{dep}";')
        lines.append("")
        for full in top[pkg]:
            lines += emit(full, 0)
            lines.append("")
        dest = os.path.join(HERE, path)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "w") as f:
            f.write("\n".join(lines))
        print(f"wrote {path}")
    for p, f in placeholders:
        print(f"placeholder: {f}")


if __name__ == "__main__":
    main()
