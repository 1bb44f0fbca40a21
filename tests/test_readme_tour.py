"""The README's CLI tour (and every ```console block of docs/*.md) is replayed and must stay true.

Each document's blocks run in order in one bash, in a directory prepared by
``tests/tour/fixture.py`` (``scripts/tour-fixture``) with HOME pointing
there and an HTTP server on 127.0.0.1 serving it. A ``$ `` line is a command
(a trailing ``\\`` continues it), the lines up to the next command its
expected output (stderr and stdout, as a terminal shows them). Volatile
parts are masked on both sides: dates, UUIDs, hashes, key ids, commit ids,
the port and the temporary directory. A line ``...`` stands for any lines.
A command whose expected output has an ``error:`` line must fail, any
other must succeed. Blocks marked ```console-norun are not replayed (say
why next to them, and use them sparingly).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.tour.fixture import prepare, serve

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(console|console-norun)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
DOC_PORT = "127.0.0.1:8765"
MARK = "@@gitreg-tour@@"

MASKS = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "<DATE>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<UUID>"),
    (re.compile(r"sha256:[0-9a-f]{64}"), "sha256:<HASH>"),
    (re.compile(r"SHA256:[A-Za-z0-9+/]{43}"), "SHA256:<KEY>"),
    (re.compile(r"\b[0-9a-f]{40}\b"), "<COMMIT>"),
    (re.compile(r"\b[0-9a-f]{7}\.\.[0-9a-f]{7}\b"), "<COMMIT>..<COMMIT>"),
    (re.compile(r"\b[0-9a-f]{12}\b"), "<COMMIT>"),
]


@dataclass(frozen=True)
class Command:
    line: int
    text: str
    expected: tuple[str, ...]


def commands(document: Path) -> list[Command]:
    """The replayed commands of ``document``, in order, with their expected output."""
    text = document.read_text(encoding="utf-8")
    found: list[Command] = []
    for block in BLOCK.finditer(text):
        if block.group(1) == "console-norun":
            continue
        first = text.count("\n", 0, block.start(2)) + 1
        lines = block.group(2).splitlines()
        index = 0
        while index < len(lines):
            line = lines[index]
            if not line.startswith("$ "):
                raise AssertionError(f"{document.name}:{first + index}: output before any "
                                     "command in a console block")
            start = first + index
            command = [line[2:]]
            while command[-1].endswith("\\") and index + 1 < len(lines):
                index += 1
                command.append(lines[index])
            index += 1
            output = []
            while index < len(lines) and not lines[index].startswith("$ "):
                output.append(lines[index])
                index += 1
            found.append(Command(start, "\n".join(command), tuple(output)))
    return found


def mask(text: str) -> str:
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    return text


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; an expected ``...`` matches any number of lines."""
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(matches(expected[1:], actual[n:]) for n in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and matches(expected[1:], actual[1:])


def replay(document: Path, steps: list[Command], tour: Path, port: int
           ) -> list[tuple[str, int]]:
    """Run ``steps`` in one bash in ``tour``: (output, exit code) of each."""
    script = ["cd " + str(tour)]
    for number, step in enumerate(steps):
        script.append(f"printf '%s\\n' '{MARK} {number}'")
        script.append("{ " + step.text.replace(DOC_PORT, f"127.0.0.1:{port}") + "\n} 2>&1")
        script.append(f"printf '\\n%s\\n' \"{MARK} rc $?\"")
    # What a user has: git's identity from HOME's .gitconfig, not the test session's.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_"))}
    env.update(HOME=str(tour), GIT_CONFIG_GLOBAL=str(tour / ".gitconfig"),
               PYTHONUNBUFFERED="1", COLUMNS="200",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    done = subprocess.run(["bash", "--noprofile", "--norc", "-c", "\n".join(script)],
                          capture_output=True, text=True, env=env, timeout=600, check=False,
                          stdin=subprocess.DEVNULL)
    results: list[tuple[str, int]] = []
    chunks = done.stdout.split(f"{MARK} ")[1:]
    for number in range(len(steps)):
        assert 2 * number + 1 < len(chunks), \
            f"{document.name}: the replay stopped before line {steps[number].line}:\n" \
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        output = chunks[2 * number].split("\n", 1)[1]
        rc = int(chunks[2 * number + 1].split()[1])
        results.append((output.removesuffix("\n"), rc))
    return results


def normalise(output: str, tour: Path, port: int) -> list[str]:
    text = output.replace(f"{tour}/", "").replace(str(tour), ".")
    text = text.replace(f"127.0.0.1:{port}", DOC_PORT)
    return [line.rstrip() for line in mask(text).splitlines()]


def documents_with_tours() -> list[Path]:
    return [document for document in DOCUMENTS if commands(document)]


@pytest.mark.slow
@pytest.mark.parametrize("document", documents_with_tours(), ids=lambda p: p.name)
def test_console_blocks_replay_as_written(document: Path, tmp_path: Path) -> None:
    tour = prepare(tmp_path / "tour")
    server = serve(tour)
    try:
        port = server.server_address[1]
        steps = commands(document)
        results = replay(document, steps, tour, port)
    finally:
        server.shutdown()
        server.server_close()
    problems = []
    for step, (output, rc) in zip(steps, results, strict=True):
        expected = [mask(line).rstrip() for line in step.expected]
        actual = normalise(output, tour, port)
        if not matches(expected, actual):
            problems.append(f"{document.name}:{step.line}: $ {step.text}\n--- expected\n"
                            + "\n".join(expected) + "\n--- got\n" + "\n".join(actual))
        should_fail = any(line.startswith("error:") for line in step.expected)
        if (rc != 0) != should_fail:
            problems.append(f"{document.name}:{step.line}: $ {step.text}\nexit {rc}, but the "
                            f"document shows {'a failure' if should_fail else 'success'}")
    assert not problems, "\n\n".join(problems)


def test_console_blocks_are_parsed_as_commands_and_output(tmp_path: Path) -> None:
    sample = tmp_path / "sample.md"
    sample.write_text("text\n```console\n$ echo a \\\n  b\na b\n$ true\n```\n"
                      "```console-norun\n$ rm -rf /\n```\n", encoding="utf-8")
    assert commands(sample) == [Command(3, "echo a \\\n  b", ("a b",)), Command(6, "true", ())]
    assert matches(["x", "...", "z"], ["x", "y1", "y2", "z"])
    assert matches(["..."], [])
    assert not matches(["x"], ["x", "y"])
    assert mask("at 2026-12-02T04:52:00Z in 0d3c9a3e-6f2b-4c1e-9a55-2f8e7f0b1c01") == \
        "at <DATE> in <UUID>"
