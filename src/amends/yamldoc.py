"""YAML documents people write (rules, playbooks, remedy policies): read safely, with the line of every node,
so each problem can be reported as `file:line: field: reason`.

A stage parses its document into Pydantic models (the file's shape) and reports problems as `FileProblem`s;
this module knows nothing of what the documents mean.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from amends.errors import InvalidInput

__all__ = [
    "FileProblem",
    "FileProblemsError",
    "FileReport",
    "Lines",
    "YamlLoader",
    "dotted",
    "parse_yaml",
    "pydantic_reason",
    "read_sources",
    "yaml_files",
]


@dataclass(frozen=True, slots=True)
class FileProblem:
    """One thing wrong in a file: where (file, line, field) and why, in a sentence."""

    file: Path | None
    line: int | None
    field: str
    reason: str

    def __str__(self) -> str:
        where = "" if self.file is None else f"{self.file}:{self.line or 1}: "
        return f"{where}{self.field}: {self.reason}" if self.field else f"{where}{self.reason}"


class FileProblemsError(InvalidInput):
    """A set of files with one or more problems; nothing of it is loaded. Each kind of document has its own
    subclass (RuleSetError, PlaybookSetError, PolicyError, TemplateSetError)."""

    def __init__(self, problems: list[FileProblem]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first.field, f"{first.reason}{more}")
        self.problems = problems

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


class FileReport:
    """The problems of one file, each placed on its line (the node's at `where`, unless `line` is given)."""

    def __init__(self, file: Path | None, lines: Lines, problems: list[FileProblem]) -> None:
        self.file, self.lines, self.problems = file, lines, problems

    def add(self, where: Sequence[str | int], reason: str, line: int | None = None) -> None:
        self.problems.append(FileProblem(self.file, line or self.lines.at(where), dotted(where), reason))


class YamlLoader(yaml.SafeLoader):
    """YAML 1.2's booleans: only true and false. YAML 1.1 would read the key `on:` (and yes, no, off) as a
    boolean, and the rule language uses `on`."""


YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

# Deeper than this is refused before anything is built: PyYAML composes and constructs by recursion, so a few
# kilobytes of `[[[[…` would raise RecursionError. amends' documents nest a handful of levels.
MAX_DEPTH = 50
# Python refuses to read an integer of more than 4,300 digits (a ValueError deep inside PyYAML); no number in an
# amends document needs more than a few.
MAX_INTEGER_DIGITS = 100


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    if len(str(node.value)) > MAX_INTEGER_DIGITS:
        raise yaml.constructor.ConstructorError(
            None, None, f"a number longer than {MAX_INTEGER_DIGITS} digits", node.start_mark
        )
    return yaml.SafeLoader.construct_yaml_int(loader, node)


YamlLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def yaml_files(paths: Iterable[Path]) -> list[Path]:
    """The files named: a directory means its *.yaml and *.yml files, sorted by name."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()))
        else:
            files.append(path)
    return files


def read_sources(paths: Iterable[Path]) -> tuple[list[tuple[Path | None, str]], list[FileProblem]]:
    """The text of each file `yaml_files` finds, and a problem for each one that cannot be read."""
    sources: list[tuple[Path | None, str]] = []
    problems: list[FileProblem] = []
    for file in yaml_files(paths):
        try:
            raw = file.read_bytes()
        except OSError as exc:
            problems.append(FileProblem(file, None, "", f"cannot be read: {exc}"))
            continue
        try:
            sources.append((file, raw.decode("utf-8")))
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            reason = f"is not UTF-8 text: byte {raw[exc.start]:#04x} at offset {exc.start} ({exc.reason})"
            problems.append(FileProblem(file, line, "", reason))
    return sources, problems


def parse_yaml(file: Path | None, text: str, problems: list[FileProblem]) -> tuple[Any, Lines] | None:
    """The document and its lines; None (and a problem) if it is not YAML. Duplicate keys are problems too, and so
    are aliases (`*name`): a few hundred bytes of nested aliases expand to billions of nodes, and amends' files
    have no need of them. Aliases and nesting deeper than MAX_DEPTH are found in one pass over the parser's events,
    before anything is built."""
    try:
        refused = _refused_event(text)
        if refused is not None:
            problems.append(FileProblem(file, *refused))
            return None
        root = yaml.compose(text, Loader=YamlLoader)
        document = yaml.load(text, Loader=YamlLoader)  # noqa: S506 (a SafeLoader: no Python objects)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow; it has a position, not a mark
        line = text.count("\n", 0, exc.position) + 1
        character = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        reason = f"not valid YAML: the control character {character} is not allowed (offset {exc.position})"
        problems.append(FileProblem(file, line, "", reason))
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        problems.append(FileProblem(file, None if mark is None else mark.line + 1, "", f"not valid YAML: {reason}"))
        return None
    lines = Lines(root)
    problems.extend(FileProblem(file, line, field, reason) for line, field, reason in lines.duplicates)
    return document, lines


def _refused_event(text: str) -> tuple[int | None, str, str] | None:
    """The line, field and reason of the first alias, or of the first node nested deeper than MAX_DEPTH; None if
    there is neither. One pass over the parser's events, which builds nothing and does not recurse."""
    depth = 0
    for event in yaml.parse(text, Loader=YamlLoader):
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, yaml.AliasEvent):
            return line, "", "YAML aliases (*name) are not accepted; write the value out"
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                return line, "", f"nested deeper than {MAX_DEPTH} levels"
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None


def pydantic_reason(error: Any, *, what: str = "this entry") -> str:
    """A sentence for one of Pydantic's errors, in the words of a document's author."""
    kind, message = error["type"], error["msg"]
    if kind == "missing":
        return f"missing; {what} needs it"
    if kind == "extra_forbidden":
        return f"unknown field for {what}"
    if kind == "string_pattern_mismatch":
        return "must be lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
    return str(message)


def dotted(where: Sequence[str | int]) -> str:
    """`("rules", 2, "within")` as `rules[2].within`."""
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class Lines:
    """Line numbers of the nodes of one YAML document, found by the path a problem gives."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.root = root
        self.duplicates: list[tuple[int, str, str]] = []
        if root is not None:
            self._check_duplicates(root, ())

    def at(self, where: Sequence[str | int]) -> int | None:
        node = self.root
        line = None if node is None else node.start_mark.line + 1
        for part in where:
            child = self._child(node, part)
            if child is None:
                break
            node, line = child, child.start_mark.line + 1
        return line

    @staticmethod
    def _child(node: yaml.Node | None, part: str | int) -> yaml.Node | None:
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child: yaml.Node = node.value[part]
            return child
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    return value if isinstance(value, yaml.Node) else key
        return None

    def _check_duplicates(self, node: yaml.Node, where: tuple[str | int, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = str(key.value)
                if name in seen:
                    self.duplicates.append((key.start_mark.line + 1, dotted((*where, name)), "duplicate key"))
                seen.add(name)
                self._check_duplicates(value, (*where, name))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._check_duplicates(item, (*where, index))
