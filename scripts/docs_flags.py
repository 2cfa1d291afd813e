"""No page names a flag the binaries lack: every `train SUB …` and
`infer SUB …` command the docs show (in code blocks and inline code) is
read for its `--flags`, and each must be in that subcommand's `--help`;
a flag named alone in inline code (`--threads N`) must be a flag of some
subcommand of either binary. And every relative link of a page leads
somewhere: the file exists, and a `#anchor` is one of its headings (as
GitHub makes them). Run by `make test`; prints each stale flag or broken
link with its file and line, exits 1.

usage: docs_flags.py BIN_DIR FILE.md…
"""
import os
import re
import subprocess
import sys

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
COMMAND = re.compile(r"\b(train|infer)\s+([a-z]+)\b([^`\n]*)")
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lstrip("#").strip().lower()
    return "".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-")


def prose(text):
    """(line number, line) outside fenced blocks."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield n, line


def broken_links(path):
    """Each relative link of the page at `path` whose file or heading is missing."""
    for n, line in prose(open(path).read()):
        for target in LINK.findall(INLINE.sub("", line)):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            file, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            if not os.path.exists(dest):
                yield f"{path}:{n}: the link {target} leads to no file"
            elif anchor and dest.endswith(".md"):
                anchors = {slug(line) for _, line in prose(open(dest).read()) if line.startswith("#")}
                if anchor not in anchors:
                    yield f"{path}:{n}: the link {target}: {file or path} has no heading #{anchor}"


def subcommands(binary):
    """{subcommand: its flags}, from `BINARY --help` and `BINARY SUB --help`."""
    text = subprocess.run([binary, "--help"], capture_output=True, text=True, check=True).stdout
    block = text.split("Commands:", 1)[1].split("Options:", 1)[0]
    subs = [line.split()[0] for line in block.splitlines() if line.strip() and line.split()[0] != "help"]
    return {s: set(FLAG.findall(subprocess.run([binary, s, "--help"], capture_output=True, text=True,
                                               check=True).stdout)) | {"--help"} for s in subs}


def code_spans(text):
    """(line number, code) of every fenced block line and every inline code span."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            yield n, line
        else:
            for m in INLINE.finditer(line):
                yield n, m.group(1)


def main():
    bin_dir, files = sys.argv[1], sys.argv[2:]
    tools = {name: subcommands(os.path.join(bin_dir, name)) for name in ("train", "infer")}
    known = set().union(*(f for t in tools.values() for f in t.values()))
    stale = []
    for path in files:
        for n, code in code_spans(open(path).read()):
            checked = set()
            for m in COMMAND.finditer(code):
                tool, sub, rest = m.groups()
                if sub not in tools[tool]:
                    continue  # "train the network", a path: not a command
                # The flags up to a pipe or the next command belong to this one.
                rest = re.split(r"\||&&|;|\b(?:train|infer)\s+[a-z]+\b", rest)[0]
                for flag in FLAG.findall(rest):
                    checked.add(flag)
                    if flag not in tools[tool][sub]:
                        stale.append(f"{path}:{n}: {tool} {sub} has no {flag}: {code.strip()}")
            # A flag named alone (`--threads N`, `--ema-warmup timm`): some
            # subcommand must have it. Other tools' commands (cargo, curl,
            # python …) are theirs.
            if code.lstrip().startswith("--"):
                for flag in FLAG.findall(code):
                    if flag not in checked and flag not in known:
                        stale.append(f"{path}:{n}: no subcommand of train or infer has {flag}: {code.strip()}")
    broken = [b for path in files for b in broken_links(path)]
    for s in stale + broken:
        print(s)
    print(f"docs_flags: {len(stale)} stale flags and {len(broken)} broken links in {len(files)} pages")
    sys.exit(1 if stale or broken else 0)


if __name__ == "__main__":
    main()
