"""Check or refresh README.md's examples from the real output of the commands they show.

A README example is a ```text block whose first line is a shell prompt, ``$ clvx ...``.
Each ``$ `` line (with ``\\`` continuations) is run with bash in a fresh folder, with
``clvx`` meaning this checkout's CLI and COLUMNS fixed, so tables come out as in a
terminal that wide; stderr is shown where it is printed, as a terminal shows it. An HTML
comment just above the block, ``<!-- readme-setup ... -->``, holds shell lines that
prepare the folder (e.g. a small broken CSV). ```` ```text columns=100 ```` sets another
width for one block.

Outputs are normalised so they do not depend on the machine: this checkout's path is
dropped (``data/sample/...``), per-step timing lines (``Computing RFM ... 0.3 s``) are
left out, and trailing spaces are stripped. Examples on the UCI retail log run only where
``../shared/data/online_retail.parquet`` exists.

    python docs/update_readme.py            # rewrite every example from the real output
    python docs/update_readme.py --check    # exit 1 and show a diff if any is stale
    python docs/update_readme.py -k segment # only the examples whose commands mention 'segment'
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RETAIL = ROOT.parent / "shared" / "data" / "online_retail.parquet"
RETAIL_NAME = "online_retail.parquet"
DEFAULT_COLUMNS = 150
TIMEOUT_SECONDS = 900
PROMPT = "$ "
STEP_LINE = re.compile(r"^.+ \.\.\. (failed after )?\d+\.\d s$")
SETUP = re.compile(r"<!--\s*readme-setup\s*\n(?P<script>.*?)-->\s*$", re.S)
FENCE_OPTION = re.compile(r"columns=(\d+)")
# Commands cheap enough for every test run; the others run the whole pipeline.
CHEAP = re.compile(r"^(COLUMNS=\d+ )?clvx( --help| --version| -V| [a-z-]+ --help| rfm| fit)\b")


@dataclass(frozen=True)
class Example:
    """One README block: where it is, how to run it, and what it shows now."""

    start: int  # index of the first line inside the fence
    end: int  # index of the closing fence
    columns: int
    setup: str
    commands: tuple[str, ...]  # each as written, continuation lines included
    shown: tuple[str, ...]  # the output shown under each command

    @property
    def name(self) -> str:
        return " && ".join(" ".join(_shell(c).split()) for c in self.commands)

    @property
    def cheap(self) -> bool:
        return all(CHEAP.match(_shell(c)) or "clvx" not in _shell(c) for c in self.commands)

    @property
    def needs_retail(self) -> bool:
        return any(RETAIL_NAME in c for c in self.commands)

    def text(self, outputs: tuple[str, ...]) -> list[str]:
        """The block's lines for these outputs."""
        parts = [f"{command}\n{output}".rstrip("\n") for command, output in zip(self.commands, outputs, strict=True)]
        return "\n\n".join(parts).split("\n")


def _shell(command: str) -> str:
    """A prompt line as the command bash runs: no prompt, continuations joined."""
    return command.removeprefix(PROMPT).replace("\\\n", " ").strip()


def _trim(lines: list[str]) -> str:
    lines = [line.rstrip() for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def parse(text: str) -> list[Example]:
    """Every example block in README text."""
    lines = text.split("\n")
    examples = []
    i = 0
    while i < len(lines):
        fence = lines[i]
        if not fence.startswith("```text"):
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        body = lines[i + 1:end]
        if body and body[0].startswith(PROMPT):
            examples.append(_example(lines, i, end, body))
        i = end + 1
    return examples


def _example(lines: list[str], fence: int, end: int, body: list[str]) -> Example:
    commands, shown = [], []
    k = 0
    while k < len(body):
        command = [body[k]]
        while command[-1].endswith("\\") and k + 1 < len(body):
            k += 1
            command.append(body[k])
        k += 1
        out = []
        while k < len(body) and not body[k].startswith(PROMPT):
            out.append(body[k])
            k += 1
        commands.append("\n".join(command))
        shown.append(_trim(out))
    above = "\n".join(lines[:fence]).rstrip()
    setup = SETUP.search(above)
    option = FENCE_OPTION.search(lines[fence])
    return Example(
        start=fence + 1, end=end, columns=int(option.group(1)) if option else DEFAULT_COLUMNS,
        setup=setup.group("script") if setup else "", commands=tuple(commands), shown=tuple(shown),
    )


def normalise(output: str) -> str:
    """Output as the README shows it: no checkout path, no timing lines, no trailing spaces."""
    output = output.replace(f"{ROOT}{os.sep}", "")
    return _trim([line for line in output.split("\n") if not STEP_LINE.match(line.rstrip())])


def run(example: Example) -> tuple[str, ...]:
    """The real output of each of the example's commands, run in order in one fresh folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLVX_DEBUG")}
    env |= {"COLUMNS": str(example.columns), "NO_COLOR": "1", "PYTHONPATH": str(ROOT), "PYTHON": sys.executable}
    clvx = 'clvx() { "$PYTHON" -c \'import sys, cli; sys.argv[0] = "clvx"; cli.main()\' "$@"; }'
    outputs = []
    with tempfile.TemporaryDirectory(prefix="clvx-readme-") as folder:
        if RETAIL.exists():
            (Path(folder) / RETAIL_NAME).symlink_to(RETAIL)
        if example.setup:
            subprocess.run(["bash", "-c", example.setup], cwd=folder, env=env, check=True, timeout=TIMEOUT_SECONDS)
        for command in example.commands:
            done = subprocess.run(
                ["bash", "-c", f"{clvx}\nexec 2>&1\n{_shell(command)}"], cwd=folder, env=env,
                stdout=subprocess.PIPE, text=True, timeout=TIMEOUT_SECONDS,
            )
            outputs.append(normalise(done.stdout))
    return tuple(outputs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 with a diff if an example is stale")
    parser.add_argument("-k", metavar="TEXT", help="only examples whose commands contain TEXT")
    parser.add_argument("--readme", type=Path, default=README, help=f"the file to check or update [default: {README.name}]")
    args = parser.parse_args(argv)
    lines = args.readme.read_text().split("\n")
    stale = 0
    for example in reversed(parse("\n".join(lines))):  # from the end, so line numbers stay valid
        if args.k and args.k not in example.name:
            continue
        if example.needs_retail and not RETAIL.exists():
            print(f"skipped (no {RETAIL}): {example.name}", file=sys.stderr)
            continue
        outputs = run(example)
        if outputs == example.shown:
            continue
        stale += 1
        new = example.text(outputs)
        old = lines[example.start:example.end]
        if args.check:
            sys.stdout.writelines(difflib.unified_diff(
                [f"{line}\n" for line in old], [f"{line}\n" for line in new], f"README: {example.name}", "real output"))
        else:
            lines[example.start:example.end] = new
            print(f"updated: {example.name}", file=sys.stderr)
    if not args.check and stale:
        args.readme.write_text("\n".join(lines))
    if args.check and stale:
        print(f"{stale} README example(s) differ from the real output; run: python docs/update_readme.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
