"""The services' JSON-line logs: what a line becomes, rotation by size, and `tandem logs`
(one service, all interleaved by time, an unknown name, following new lines)."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tandem.local.service_log_view import LogFollower, read_records, render
from tandem.local.service_logs import Rotation, ServiceLog, generations, log_path, make_record

FOLLOW_TIMEOUT = 30.0


def tandem_logs(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"TANDEM_DATA_DIR": str(data_dir)}
    argv = [sys.executable, "-m", "tandem.cli", "logs", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def write_lines(
    log_dir: Path, service: str, lines: list[tuple[str, str]], at: float | None = None
) -> None:
    service_log = ServiceLog(log_path(log_dir, service), service)
    try:
        for stream, line in lines:
            service_log.write(stream, line, at)
    finally:
        service_log.close()


def test_a_raw_line_is_a_message_and_a_json_line_keeps_its_fields() -> None:
    raw = make_record("postgres", "stderr", "LOG:  database system is ready", 0.25)
    assert raw == {
        "time": "1970-01-01T00:00:00.250Z",
        "service": "postgres",
        "stream": "stderr",
        "message": "LOG:  database system is ready",
    }
    ours = '{"ts": "x", "level": "warning", "event": "slow_batch", "seconds": 2.5, "service": "?"}'
    structured = make_record("api-server", "stderr", ours, 0.0)
    assert structured["event"] == "slow_batch" and structured["seconds"] == 2.5
    assert structured["service"] == "api-server"  # ours wins over the line's own key
    assert "message" not in structured
    assert render(structured, with_service=False) == "00:00:00.000 WARNING slow_batch seconds=2.5"
    assert render(raw).endswith("postgres               | LOG:  database system is ready")


def test_rotation_keeps_a_few_generations_under_the_size_limit(tmp_path: Path) -> None:
    rotation = Rotation(max_bytes=2_000, backups=2)
    path = tmp_path / "worker.log"
    service_log = ServiceLog(path, "worker", rotation)
    for n in range(200):
        service_log.write("stdout", f"line {n:03d} " + "x" * 40)
    service_log.close()

    files = generations(path, rotation.backups)
    assert [file.name for file in files] == ["worker.log.2", "worker.log.1", "worker.log"]
    assert all(file.exists() and file.stat().st_size <= rotation.max_bytes for file in files)
    assert not (tmp_path / "worker.log.3").exists()
    kept = [str(record["message"])[:8] for record in read_records(path, rotation)]
    # The newest lines, in order, with the oldest generations dropped.
    assert kept[-1] == "line 199"
    assert kept == [f"line {n:03d}" for n in range(200 - len(kept), 200)]
    assert 20 < len(kept) < 200
    for file in files:  # every line of every generation is one JSON object
        for line in file.read_bytes().splitlines():
            assert orjson.loads(line)["service"] == "worker"


def test_tandem_logs_reads_one_service_or_all_of_them(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    api_ready = '{"level": "info", "event": "api_ready"}'
    write_lines(log_dir, "api-server", [("stderr", api_ready)], at=1.0)
    write_lines(log_dir, "postgres", [("stderr", "LOG:  database system is ready")], at=2.0)
    write_lines(log_dir, "api-server", [("stdout", "second api line")], at=3.0)

    one = tandem_logs(tmp_path, "api-server")
    assert one.returncode == 0, one.stderr
    lines = one.stdout.splitlines()
    assert [line[13:] for line in lines] == ["api_ready", "second api line"]
    assert "{" not in one.stdout

    everything = tandem_logs(tmp_path)
    assert everything.returncode == 0, everything.stderr
    services = [line[13:].split("|")[0].strip() for line in everything.stdout.splitlines()]
    assert services == ["api-server", "postgres", "api-server"]  # interleaved by time

    by_part = tandem_logs(tmp_path, "post", "-n", "1")
    assert by_part.stdout.splitlines()[0].endswith("LOG:  database system is ready")


def test_tandem_logs_names_the_known_services_for_an_unknown_one(tmp_path: Path) -> None:
    write_lines(tmp_path / "logs", "api-server", [("stdout", "hello")])
    result = tandem_logs(tmp_path, "nginx")
    assert result.returncode == 2
    assert "unknown service 'nginx'" in result.stderr
    for known in ("api-server", "background-worker", "postgres", "web-server"):
        assert known in result.stderr
    assert result.stdout == ""


@pytest.mark.slow  # a long-running `tandem logs -f`
def test_tandem_logs_follow_prints_new_lines(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    write_lines(log_dir, "web-server", [("stdout", "before")])
    env = os.environ | {"TANDEM_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "tandem.cli", "logs", "web-server", "-f"]
    follower = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    assert follower.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(follower.stdout, selectors.EVENT_READ)

        def next_line() -> str:
            assert selector.select(FOLLOW_TIMEOUT), "no line from tandem logs -f"
            assert follower.stdout is not None
            return follower.stdout.readline()

        try:
            assert next_line().endswith("before\n")
            deadline = time.monotonic() + FOLLOW_TIMEOUT
            write_lines(log_dir, "web-server", [("stderr", "after")])
            assert next_line().endswith("after\n")
            assert time.monotonic() < deadline
            follower.send_signal(signal.SIGINT)
            assert follower.wait(FOLLOW_TIMEOUT) == 0
        finally:
            follower.kill()
            follower.wait()


def test_following_continues_across_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "api-server.log"
    service_log = ServiceLog(path, "api-server", Rotation(max_bytes=600, backups=1))
    service_log.write("stdout", "written before following")
    follower = LogFollower([path])
    try:
        for n in range(12):  # ~130 bytes each: the file rotates a few times
            service_log.write("stdout", f"line {n:02d} " + "y" * 20)
            if n % 4 == 3:
                seen = [str(record["message"])[:7] for record in follower.poll()]
                assert seen == [f"line {k:02d}" for k in range(n - 3, n + 1)]
    finally:
        service_log.close()
    assert path.with_name("api-server.log.1").exists()  # it did rotate under the follower
