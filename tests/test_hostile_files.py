"""Hostile files never stop indexing. In process: the extractors' own bounds (linear-time
Markdown headings, JSON paths, text and page limits, zip bombs refused before inflating).
Through the sandbox (worker/sandbox.py): a generated hostile corpus ends, each file within
a minute, without growing the worker; a parse past a limit is killed and fails alone, and
the pool goes on with a fresh child; children die with a killed worker."""

from __future__ import annotations

import io
import itertools
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from benchmarks.hostile_corpus import (
    MIB,
    deflated,
    hostile_corpus,
    pdf_bomb,
    zip_archive,
)
from pypdf import PdfReader, PdfWriter

from tandem.documents.parsed import CorruptFile
from tandem.worker.limits import ParseLimits
from tandem.worker.parsing import parse_document
from tandem.worker.sandbox import (
    ParseCpuExceeded,
    ParseMemoryExceeded,
    ParserCrashed,
    ParseTimeout,
    SandboxedParser,
    SandboxLimits,
)
from tandem.worker.textual import atx_h1_text, markdown_title
from tests.document_builders import make_pdf

ROOT = Path(__file__).resolve().parent.parent
# Parses for seconds in any process: a megabyte-sized page of a million tiny paragraphs.
SLOW_HTML = b"<p>word</p>" * 600_000


def test_markdown_heading_is_found_in_linear_time() -> None:
    line = "# a" + " " * 1_000_000 + "b"  # the old pattern: 0.73 s at 8,000 spaces, hours here
    started = time.perf_counter()
    assert markdown_title(line) == "a" + " " * 1_000_000 + "b"
    assert markdown_title("# a" + " " * 1_000_000) == "a"
    assert time.perf_counter() - started < 0.5


def test_markdown_heading_matches_the_old_pattern() -> None:
    old = re.compile(r"^ {0,3}#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
    alphabet = [" ", "\t", "#", "a", "b"]
    lines = ["".join(p) for n in range(1, 8) for p in itertools.product(alphabet, repeat=n)]
    for line in lines:
        match = old.match(line)
        assert atx_h1_text(line) == (match.group(1) if match else None), repr(line)


def test_json_with_a_long_key_over_a_long_array_is_bounded() -> None:
    data = b'{"' + b"k" * 1_000_000 + b'": [' + b"1," * 200_000 + b"1]}"
    started = time.perf_counter()
    doc = parse_document("wide.json", data, limits=ParseLimits(max_extracted_chars=100_000))
    assert time.perf_counter() - started < 5
    assert len(doc.text) == 100_000
    assert doc.text.startswith("k" * 200 + ": 1\n")
    assert doc.metadata == {"truncated": "true", "max_chars": "100000"}


def test_extracted_text_is_cut_at_the_limit() -> None:
    doc = parse_document("long.txt", b"word " * 10_000, limits=ParseLimits(max_extracted_chars=99))
    assert len(doc.text) <= 99
    assert doc.metadata["truncated"] == "true"


def test_zip_bombs_are_refused_before_inflating() -> None:
    limits = ParseLimits(max_member_bytes=2 * MIB, ratio_floor_bytes=MIB)
    big = zip_archive([deflated("word/document.xml", b" " * (3 * MIB))])
    with pytest.raises(CorruptFile, match=r"^b\.docx: not indexed: 'word/document\.xml' .+ 3 MiB"):
        parse_document("b.docx", big, limits=limits)
    dense = zip_archive([deflated("xl/workbook.xml", b" " * (MIB + 1))])
    with pytest.raises(CorruptFile, match=r"compressed \d+:1 \(a zip bomb\?\)$"):
        parse_document("b.xlsx", dense, limits=limits)


def test_pdf_pages_past_the_limit_are_left_out() -> None:
    writer = PdfWriter()
    for _ in range(3):
        writer.append(PdfReader(io.BytesIO(make_pdf(["Page text"]))))
    buffer = io.BytesIO()
    writer.write(buffer)
    doc = parse_document("three.pdf", buffer.getvalue(), limits=ParseLimits(max_pdf_pages=2))
    assert doc.text == "Page text\n\nPage text"
    assert doc.metadata["pages"] == "3" and doc.metadata["pages_read"] == "2"
    with pytest.raises(CorruptFile, match=r"^bomb\.pdf: not indexed: the PDF exceeds a safety lim"):
        parse_document("bomb.pdf", pdf_bomb(100))


# What each hostile file must come to: parsed, or failed with this message.
EXPECTED = {
    "backtracking Markdown": None,
    "DOCX zip bomb": r"^bomb\.docx: not indexed: 'word/document\.xml' in the DOCX package unpacks",
    "PDF huge compressed stream": r"^bomb\.pdf: not indexed: the PDF exceeds a safety limit",
    "JSON nested deep": r"^deep\.json: not valid JSON \(nested too deeply\)$",
    "JSON long key over long array": None,
    "HTML nested tags": None,
    "HTML unclosed tags": r"^unclosed\.html: no text could be extracted$",
    "invalid UTF-8": r"^broken\.txt: not UTF-8, UTF-16 or Windows-1252 text$",
    "NUL bytes": r"^nul\.txt: binary data, not text \(contains NUL bytes\)$",
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxedParser]:
    parser = SandboxedParser(SandboxLimits(timeout_seconds=30))
    assert parser.wait_ready(60), "no parser child started"
    yield parser
    parser.close()


@pytest.mark.slow
def test_hostile_corpus_ends_within_a_minute_each(sandbox: SandboxedParser) -> None:
    corpus = hostile_corpus()
    assert {f.name for f in corpus} == set(EXPECTED)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for hostile in corpus:
        outcome = sandbox.run(hostile.filename, hostile.data, hostile.content_type)
        assert outcome.seconds < 60, hostile.name
        expected = EXPECTED[hostile.name]
        if expected is None:
            assert outcome.document is not None, (hostile.name, outcome.error)
        else:
            assert outcome.error is not None, hostile.name
            assert re.search(expected, str(outcome.error)), (hostile.name, str(outcome.error))
        assert outcome.peak_rss_bytes is not None and outcome.peak_rss_bytes < 2**30
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert grown < 200 * MIB, f"the parent grew by {grown // MIB} MiB"
    document = sandbox.parse("notes.md", b"# Notes\n\nAfter the storm.", None)
    assert (document.title, document.text) == ("Notes", "# Notes\n\nAfter the storm.")


@pytest.mark.slow
def test_a_parse_past_the_timeout_is_killed_and_the_pool_goes_on() -> None:
    parser = SandboxedParser(SandboxLimits(timeout_seconds=0.5))
    try:
        assert parser.wait_ready(60)
        [first] = parser.child_pids()
        started = time.monotonic()
        with pytest.raises(ParseTimeout, match=r"^slow\.html: parsing took longer than 0\.5 s$"):
            parser.parse("slow.html", SLOW_HTML, None)
        assert time.monotonic() - started < 2.0  # the caller is back at the timeout
        assert _gone(first)
        pdf = parser.parse("after.pdf", make_pdf(["Calm again"]), None)
        assert pdf.text == "Calm again"
        assert parser.child_pids() != [first]
    finally:
        parser.close()


@pytest.mark.slow
def test_the_callers_process_keeps_running_while_a_child_parses() -> None:
    parser = SandboxedParser(SandboxLimits(timeout_seconds=60))
    ticks = 0
    done = threading.Event()

    def tick() -> None:  # a stand-in for the worker's lease heartbeat
        nonlocal ticks
        while not done.wait(0.01):
            ticks += 1

    try:
        assert parser.wait_ready(60)
        ticker = threading.Thread(target=tick)
        ticker.start()
        started = time.monotonic()
        outcome = parser.run("slow.html", SLOW_HTML, None)
        elapsed = time.monotonic() - started
        done.set()
        ticker.join()
        assert outcome.document is not None and elapsed > 0.5
        assert ticks > 0.5 * elapsed / 0.01, (ticks, elapsed)  # never blocked by the parse
    finally:
        done.set()
        parser.close()


@pytest.mark.slow
def test_memory_and_cpu_limits_fail_the_file_alone() -> None:
    parser = SandboxedParser(SandboxLimits(timeout_seconds=30, memory_bytes=256 * MIB))
    try:
        assert parser.wait_ready(60)
        objects = b"[" + b"{}," * 8_000_000 + b"{}]"  # 24 MB that decode to 600 MB
        with pytest.raises(
            ParseMemoryExceeded, match=r"^many\.json: parsing needed more than 256 MiB of memory$"
        ):
            parser.parse("many.json", objects, None)
        assert parser.parse("ok.txt", b"fine", None).text == "fine"
    finally:
        parser.close()
    parser = SandboxedParser(SandboxLimits(timeout_seconds=30, cpu_seconds=1))
    try:
        assert parser.wait_ready(60)
        with pytest.raises(ParseCpuExceeded, match=r"parsing used more than 1 s of CPU time$"):
            parser.parse("slow.html", SLOW_HTML * 3, None)
        assert parser.parse("ok.txt", b"fine", None).text == "fine"
    finally:
        parser.close()


@pytest.mark.slow
def test_a_crashed_child_fails_its_file_and_is_replaced(sandbox: SandboxedParser) -> None:
    [child] = sandbox.child_pids()
    timer = threading.Timer(0.3, os.kill, (child, signal.SIGSEGV))  # a crash in C, say
    timer.start()
    with pytest.raises(ParserCrashed, match=r"^slow\.html: the parser failed \(signal SIGSEGV\)$"):
        sandbox.parse("slow.html", SLOW_HTML * 3, None)
    timer.join()
    assert sandbox.parse("ok.txt", b"fine", None).text == "fine"
    # A child that dies while idle (killed from outside) costs no file: the next one parses.
    [idle] = sandbox.child_pids()
    os.kill(idle, signal.SIGKILL)
    while not _gone(idle):
        time.sleep(0.01)
    assert sandbox.parse("ok.txt", b"still fine", None).text == "still fine"


KEEP_A_POOL = """
import sys, time
from tandem.worker.sandbox import SandboxedParser, SandboxLimits
parser = SandboxedParser(SandboxLimits(workers=2))
assert parser.wait_ready(60)
print(*parser.child_pids(), flush=True)
time.sleep(300)
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_children_die_with_a_killed_worker() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    worker = subprocess.Popen(
        [sys.executable, "-c", KEEP_A_POOL], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None
        children = [int(pid) for pid in worker.stdout.readline().split()]
        assert len(children) == 2 and not any(_gone(pid) for pid in children)
        os.kill(worker.pid, signal.SIGKILL)  # no cleanup code runs: only the kernel helps
        worker.wait(10)
        deadline = time.monotonic() + 10
        while not all(_gone(pid) for pid in children):
            assert time.monotonic() < deadline, "a parser child outlived its killed worker"
            time.sleep(0.05)
    finally:
        worker.kill()
        worker.wait()
