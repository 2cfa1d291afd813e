#!/usr/bin/env python3
"""Fails when git tracks what a fresh clone must not carry: a symbolic link
that points outside the checkout (a venv, a cache, a home directory: the
newcomer's machine has none of them), or a path that .gitignore names (it
was added by force, or before the rule, and the rule hides it from review).

usage: scripts/tracked_check.py [REPO]   (default: this checkout)
"""
import os
import subprocess
import sys


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True).stdout


def problems(repo):
    repo = os.path.realpath(repo)
    found = []
    # -s: mode, object, stage, path; -z: paths as they are.
    for entry in git(repo, "ls-files", "-s", "-z").split(b"\0"):
        if not entry:
            continue
        meta, path = entry.split(b"\t", 1)
        if meta.split()[0] != b"120000":
            continue
        path = path.decode()
        target = git(repo, "cat-file", "blob", meta.split()[1].decode()).decode()
        resolved = os.path.normpath(os.path.join(repo, os.path.dirname(path), target))
        if os.path.isabs(target) or os.path.commonpath([repo, resolved]) != repo:
            found.append(f"{path}: a tracked symbolic link to {target}, outside the checkout")
    for path in git(repo, "ls-files", "-z", "--cached", "--ignored", "--exclude-standard").split(b"\0"):
        if path:
            found.append(f"{path.decode()}: tracked, but .gitignore names it")
    return found


def main():
    repo = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    if subprocess.run(["git", "-C", repo, "rev-parse"], capture_output=True).returncode != 0:
        print(f"tracked_check: {repo} is not a git checkout; nothing to check")
        return 0
    found = problems(repo)
    for line in found:
        print(f"tracked_check: {line}", file=sys.stderr)
    if found:
        print("tracked_check: untrack them (git rm --cached PATH); a fresh clone must not carry them", file=sys.stderr)
        return 1
    print("tracked_check: no tracked link leaves the checkout, no tracked path is ignored")
    return 0


if __name__ == "__main__":
    sys.exit(main())
