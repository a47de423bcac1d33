"""Plain text and the NAME line from man pages (roff source) and Perl POD.

Small, deterministic converters for the labelled set (benchmarks/labelled_corpus.py): no
groff or perl needed, the same output on every machine. They keep the words a reader sees
and drop layout: requests that only format (.nf, .RS, .TS format lines, =over ...) vanish,
font changes and character escapes become plain characters, paragraphs stay paragraphs.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

# Marks where the names end and the description begins in a NAME section (from `\-` in
# roff, `.Nd` in mdoc); a private-use character that no page contains (not whitespace).
_SEPARATOR = "\ue000"
_NAME_HEADINGS = ("NAME", "NAMN", "NOM")
_SPECIAL_CHARACTERS = {
    "em": "—", "en": "\u2013", "hy": "-", "mi": "-", "bu": "•", "aq": "'", "dq": '"',
    "lq": '"', "rq": '"', "oq": "'", "cq": "'", "co": "©", "rg": "®", "mu": "\u00d7",
    "ti": "~", "ha": "^", "rs": "\\", "sl": "/", "at": "@", "sh": "#", "Do": "$",
    "ga": "`", "ua": "^", "lB": "[", "rB": "]", "lC": "{", "rC": "}", "ba": "|",
    "<=": "<=", ">=": ">=", "!=": "!=", "->": "->", "<-": "<-", "tm": "(TM)",
    "de": "°", "pl": "+", "eq": "=", "fm": "'", "Fo": "«", "Fc": "»", "bv": "|",
}  # fmt: skip
_STRINGS = {"lq": '"', "rq": '"', "R": "®", "Tm": "(TM)", "": ""}
# mdoc macros that carry no words of their own.
_MDOC_LAYOUT = {"Bl", "El", "Bd", "Ed", "Dd", "Dt", "Os", "Pp", "Lp", "Bk", "Ek", "Ns", "No"}
_FONT_MACROS = {"B", "I", "SM", "SB"}
_ALTERNATING = {"BR", "RB", "BI", "IB", "IR", "RI"}
_PARAGRAPH = {"PP", "P", "LP", "TP", "HP", "IP", "sp", "Pp", "Lp", "It", "br", "TQ"}
_ESCAPE = re.compile(
    r"\\(?:"
    r"f(?:\[[^\]]*\]|\(..|.)"  # font change
    r"|\((?P<special>..)"  # \(xx special character
    r"|\[(?P<named>[^\]]*)\]"  # \[name] special character
    r"|\*(?:\[(?P<sbracket>[^\]]*)\]|\((?P<sparen>..)|(?P<sone>.))"  # string
    r"|[nVg](?:\[[^\]]*\]|\(..|.)"  # register / environment interpolations
    r"|s[-+]?(?:\d+|\(\d\d|\[[^\]]*\])"  # size changes
    r"|[hvwloxXNbDLRZSY]'[^']*'"  # escapes with a quoted argument
    r"|(?P<plain>.)"
    r")"
)
_PLAIN_ESCAPES = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "'": "'",
                  "`": "`", ".": ".", "t": " ", "(": "("}  # fmt: skip
_DROPPED_ESCAPES = set("&|^c%:/,)!dupakrz{}")


def _escape(match: re.Match[str]) -> str:
    special = match.group("special") or match.group("named")
    if special is not None:
        return _SPECIAL_CHARACTERS.get(special, "")
    string = match.group("sbracket") or match.group("sparen") or match.group("sone")
    if string is not None:
        return _STRINGS.get(string, "")
    plain = match.group("plain")
    if plain is None or plain in _DROPPED_ESCAPES:
        return ""
    return _PLAIN_ESCAPES.get(plain, plain)


def roff_inline(text: str) -> str:
    """`text` with roff escapes resolved; a comment (`\\"`) ends the line."""
    text = re.sub(r'\\".*$', "", text)
    return _ESCAPE.sub(_escape, text)


def _arguments(rest: str) -> list[str]:
    try:
        return shlex.split(rest.replace("\\", "\\\\"), posix=True)
    except ValueError:  # an unbalanced quote: roff reads to the end of the line
        return rest.replace('"', " ").split()


@dataclass(frozen=True)
class ManPage:
    names: str  # the NAME line before the separator ("printf, fprintf")
    description: str  # after it ("formatted output conversion"); "" if none
    text: str  # the page without its NAME section, paragraphs separated by blank lines


def _macro_text(name: str, args: list[str], mdoc: bool) -> str | None:
    """The words a request line shows, or None for a line that only formats."""
    if name in _FONT_MACROS:
        return " ".join(args)
    if name in _ALTERNATING:
        return "".join(args)
    if name == "IP" or name == "It":
        return " ".join(args[:1] if name == "IP" else args)
    if mdoc and re.fullmatch(r"[A-Z][a-z][a-z]?", name) and name not in _MDOC_LAYOUT:
        words = [a for a in args if not re.fullmatch(r"[A-Z][a-z][a-z]?", a)]
        return " ".join(words)
    return None


def parse_man(source: str) -> ManPage | None:
    """Name line and text of one roff man page; None for a `.so` alias or no NAME."""
    # A backslash at the end of a line continues it on the next.
    lines = source.replace("\r\n", "\n").replace("\\\n", "").split("\n")
    requests = [ln for ln in lines if ln.startswith((".", "'")) and not ln.startswith('.\\"')]
    if requests and requests[0].startswith(".so "):
        return None
    mdoc = any(ln.startswith((".Dd", ".Sh")) for ln in requests)
    sections: list[tuple[str, list[str]]] = [("", [])]
    paragraph: list[str] = []
    no_fill = skipping_definition = in_table_format = False

    def flush() -> None:
        if paragraph:
            joiner = "\n" if no_fill else " "
            words = joiner.join(part for part in paragraph if part.strip())
            if words.strip():
                sections[-1][1].append(words.strip())
            paragraph.clear()

    for line in lines:
        if skipping_definition:
            skipping_definition = not line.startswith("..")
            continue
        if in_table_format:
            in_table_format = not line.rstrip().endswith(".")
            continue
        if line.startswith((".", "'")):
            parts = line[1:].strip().split(None, 1)
            name = parts[0] if parts else ""
            rest = parts[1] if len(parts) > 1 else ""
            if name.startswith('\\"') or not name:
                continue
            if name in ("de", "de1", "am", "ig"):
                skipping_definition = True
                continue
            if name == "TS":
                in_table_format = True
                continue
            if name in ("SH", "SS", "Sh", "Ss"):
                flush()
                heading = roff_inline(" ".join(_arguments(rest))).strip()
                if name in ("SH", "Sh"):
                    sections.append((heading.upper(), []))
                elif heading:
                    sections[-1][1].append(heading)
                continue
            if name == "Nd" or (name == "Nm" and sections[-1][0] in _NAME_HEADINGS):
                text = " ".join(a for a in _arguments(rest) if a != ",")
                paragraph.append((_SEPARATOR + " " if name == "Nd" else ", ") + text)
                continue
            if name in ("nf", "EX", "Vb"):  # Vb/Ve: pod2man's verbatim blocks
                flush()
                no_fill = True
                continue
            if name in ("fi", "EE", "Ve"):
                flush()
                no_fill = False
                continue
            shown = _macro_text(name, _arguments(rest), mdoc)
            if name in _PARAGRAPH:
                flush()
            if shown:
                paragraph.append(roff_inline(shown))
            continue
        if not line.strip():
            flush()
            continue
        # The first ` \- ` (spaced: "openssl\-x509 \- ..." names a page with a dash).
        if sections[-1][0] in _NAME_HEADINGS and _SEPARATOR not in "".join(paragraph):
            line = re.sub(r"(^|\s)\\-(\s|$)", f" {_SEPARATOR} ", line, count=1)
        paragraph.append(roff_inline(line.replace("\t", " ").replace("T{", "").replace("T}", "")))
    flush()
    name_section = next((body for head, body in sections if head in _NAME_HEADINGS), None)
    if name_section is None:
        return None
    name_line = " ".join(" ".join(name_section).split())
    if _SEPARATOR not in name_line and " - " in name_line:
        name_line = name_line.replace(" - ", _SEPARATOR, 1)
    names, _, description = name_line.partition(_SEPARATOR)
    kept = [
        "\n\n".join([head, *body])
        for head, body in sections
        if head and head not in _NAME_HEADINGS  # before NAME: only set-up
    ]
    names = re.sub(r"\s+,", ",", names).strip(" ,")
    return ManPage(names, description.strip(), "\n\n".join(kept).strip())


# C<text>, and C<< text >> / C<<< text >>> whose text may hold < and >.
_POD_CODES = [
    re.compile(r"([A-Z])<<<\s+(.*?)\s+>>>", re.DOTALL),
    re.compile(r"([A-Z])<<\s+(.*?)\s+>>", re.DOTALL),
    re.compile(r"([A-Z])<([^<>]*)>"),
]
_POD_ENTITIES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "quot": '"', "amp": "&"}


def _pod_code(match: re.Match[str]) -> str:
    code, content = match.group(1), match.group(2)
    if code in ("X", "Z"):
        return ""
    if code == "E":  # resolved last, so that "<" from E<lt> never opens a code
        return match.group(0)
    if code == "L":
        shown, bar, _ = content.partition("|")
        if bar:
            return shown
        page, _, section = shown.partition("/")
        return " ".join(part.strip('"') for part in (page, section) if part)
    return content


def pod_inline(text: str) -> str:
    """`text` with POD formatting codes (B<>, C<< >>, L<>, E<> ...) resolved, innermost first."""
    for pattern in _POD_CODES[:2]:
        text = pattern.sub(_pod_code, text)
    while True:
        resolved = _POD_CODES[2].sub(_pod_code, text)
        if resolved == text:
            return re.sub(r"E<([^<>]*)>", lambda m: _POD_ENTITIES.get(m.group(1), ""), text)
        text = resolved


@dataclass(frozen=True)
class PodPage:
    name: str  # the module or page name from the NAME paragraph ("List::Util")
    description: str
    text: str  # the documentation without its NAME section


def parse_pod(source: str) -> PodPage | None:
    """NAME line and text of the POD in a .pm or .pod file; None without a `=head1 NAME`."""
    paragraphs = re.split(r"\n[ \t]*\n", source.replace("\r\n", "\n"))
    in_pod = False
    skipping_format = False
    heading = ""
    name_line = ""
    kept: list[str] = []
    for paragraph in paragraphs:
        if paragraph.startswith("="):
            command, _, rest = paragraph[1:].partition(" ")
            command = command.split("\n", 1)[0]
            in_pod = command != "cut"
            if command == "begin":
                skipping_format = rest.split()[:1] not in (["text"], ["man"])
            elif command == "end":
                skipping_format = False
            elif command.startswith("head"):
                heading = " ".join(pod_inline(rest).split())
                if heading.upper() != "NAME":
                    kept.append(heading)
            elif command == "item" and rest.strip() not in ("*", ""):
                kept.append(" ".join(pod_inline(rest).split()))
            continue
        if not in_pod or skipping_format or not paragraph.strip():
            continue
        if heading.upper() == "NAME":
            if not name_line:
                name_line = " ".join(pod_inline(paragraph).split())
            continue
        verbatim = paragraph.startswith((" ", "\t"))
        kept.append(paragraph.rstrip() if verbatim else " ".join(pod_inline(paragraph).split()))
    if not name_line:
        return None
    split = re.match(r"(.*?)\s+-+\s+(.*)", name_line)
    name, description = split.groups() if split else (name_line, "")
    return PodPage(name.strip(), description.strip(), "\n\n".join(kept).strip())
