"""Prints the checkov check ids deploy/checkov-skips.yaml skips for one scope, comma-separated.

Usage: skips.py SKIP_FILE SCOPE. Fails when an entry lacks an id, a known scope or a reason.
"""

import re
import sys

import yaml

SCOPES = {"dockerfile", "helm-default", "helm-production", "helm-pgwire", "helm-fargate", "terraform"}


def main() -> None:
    path, scope = sys.argv[1], sys.argv[2]
    if scope not in SCOPES:
        sys.exit(f"unknown scope {scope!r}; scopes: {sorted(SCOPES)}")
    with open(path, encoding="utf-8") as f:
        entries = yaml.safe_load(f) or []
    ids = []
    for i, entry in enumerate(entries):
        where = f"{path}: entry {i + 1}"
        if not isinstance(entry, dict) or set(entry) != {"id", "scopes", "reason"}:
            sys.exit(f"{where}: needs exactly id, scopes and reason")
        if not re.fullmatch(r"CKV2?_[A-Z0-9]+_\d+", str(entry["id"])):
            sys.exit(f"{where}: {entry['id']!r} is not a checkov check id")
        if not entry["scopes"] or not set(entry["scopes"]) <= SCOPES:
            sys.exit(f"{where}: scopes must be among {sorted(SCOPES)}")
        if len(str(entry["reason"]).split()) < 8:
            sys.exit(f"{where}: give a reason (a sentence or more)")
        if scope in entry["scopes"]:
            ids.append(entry["id"])
    print(",".join(ids))


if __name__ == "__main__":
    main()
