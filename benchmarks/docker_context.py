"""What the worker image's build sends and copies: the build context after .dockerignore, and what each COPY of
docker/Dockerfile takes from it (so which layers a code-only change re-creates).

    python -m benchmarks.docker_context --out benchmarks/results/docker_context.json

Needs no Docker daemon: the context is the repository filtered by .dockerignore's rules (Docker's semantics: paths
relative to the context, `*` within one path part, `**` across parts, `!` re-includes, the last matching rule wins,
an excluded folder excludes what is under it unless a later rule re-includes it).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from .harness import REPO, Report

MIB = 1024 ** 2


def _regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out += "/?"
                i += 1
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "$")


def ignore_rules(root: Path) -> list[tuple[bool, re.Pattern]]:
    """(is an exception, regex) per .dockerignore line."""
    rules = []
    for line in (root / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _regex(line.lstrip("!").strip("/"))))
    return rules


def excluded(path: str, rules) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negate, regex in rules:
        if any(regex.match(p) for p in prefixes):
            result = not negate
    return result


def context_files(root: Path) -> dict[str, int]:
    rules = ignore_rules(root)
    files = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            rel = path.relative_to(root).as_posix()
            if not excluded(rel, rules):
                files[rel] = path.stat().st_size
    return files


def copy_sources(dockerfile: Path) -> list[tuple[str, list[str]]]:
    """(stage, sources) of every COPY from the context."""
    from dockerfile_parse import DockerfileParser

    stage, out = "", []
    for ins in DockerfileParser(path=str(dockerfile)).structure:
        if ins["instruction"] == "FROM":
            stage = ins["value"].split()[-1]
        elif ins["instruction"] == "COPY" and "--from" not in ins["value"]:
            out.append((stage, [s for s in ins["value"].split()[:-1] if not s.startswith("--")]))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    report = Report("docker_context", args.out, config={"dockerfile": "docker/Dockerfile"})
    files = context_files(REPO)
    total = sum(files.values())
    report.set(context_files=len(files), context_mib=round(total / MIB, 2))
    for stage, sources in copy_sources(REPO / "docker" / "Dockerfile"):
        taken = {f: s for f, s in files.items() for src in sources
                 if f == src.rstrip("/") or f.startswith(src.rstrip("/") + "/")}
        report.add(stage=stage, sources=" ".join(sources), files=len(taken), mib=round(sum(taken.values()) / MIB, 3))
    biggest = sorted(files.items(), key=lambda kv: -kv[1])[:5]
    report.note("largest context files: " + ", ".join(f"{f} ({s / MIB:.2f} MiB)" for f, s in biggest))
    weights = sum(s for f, s in files.items() if f.startswith("docker/models/"))
    report.note(f"build context: {len(files)} files, {total / MIB:.2f} MiB, of which {weights / MIB:.2f} MiB are model "
                "files in docker/models/ (a production build sends the weights put there)")
    report.print_table(["stage", "sources", "files", "mib"])


if __name__ == "__main__":
    main()
