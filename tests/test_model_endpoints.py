"""The model client's endpoint pool: spreading, marking down, probing back, DNS expansion
(with a resolver stub: the resolver is not what these tests are about), and the client's
retry on another server against a real indexing model server and a closed port."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from tandem.config import ApiSettings, WorkerSettings
from tandem.model_client.client import ModelClient, ModelServerUnavailable
from tandem.model_client.endpoints import Endpoint, EndpointPool
from tandem.wire.model import TextType
from tests.support import ServerProcess, free_port


class Resolver:
    """name -> addresses, editable while the pool runs; raises OSError for unknown names."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        if host not in self.answers:
            raise OSError(f"no such name {host}")
        return list(self.answers[host])


def never_ready(url: str) -> bool:
    return False


def take(pool: EndpointPool, exclude: Sequence[Endpoint] = ()) -> Endpoint:
    endpoint = pool.acquire(exclude)
    assert endpoint is not None
    return endpoint


def test_requests_spread_to_the_least_busy_endpoint_in_turn() -> None:
    pool = EndpointPool(["http://a:1", "http://b:1", "http://c:1"], probe=never_ready)
    try:
        first = [take(pool) for _ in range(3)]
        assert sorted(e.url for e in first) == ["http://a:1", "http://b:1", "http://c:1"]
        # b finishes: it has the fewest in flight, so it takes the next request.
        pool.release(first[1])
        nxt = take(pool)
        assert nxt is first[1]
        for endpoint in [first[0], first[2], nxt]:
            pool.release(endpoint)
        # All idle: turns go round rather than always to the first.
        seen = []
        for _ in range(6):
            endpoint = take(pool)
            seen.append(endpoint.url)
            pool.release(endpoint)
        assert {seen.count(url) for url in set(seen)} == {2}
        assert [s.requests for s in pool.states()] == [3, 4, 3]  # b took the extra one
    finally:
        pool.close()


def test_a_failed_endpoint_is_skipped_until_its_probe_answers() -> None:
    ready = threading.Event()
    probed: list[str] = []

    def probe(url: str) -> bool:
        probed.append(url)
        return ready.is_set()

    pool = EndpointPool(["http://a:1", "http://b:1"], probe=probe, min_backoff=0.2, max_backoff=0.4)
    try:
        a = pool.acquire()
        assert a is not None and a.url == "http://a:1"
        pool.release(a, "ConnectError")
        states = {s.url: s for s in pool.states()}
        assert not states["http://a:1"].up and states["http://a:1"].failures == 1
        # While a is down every request goes to b, even with b busy.
        held = [take(pool) for _ in range(3)]
        assert {e.url for e in held} == {"http://b:1"}
        for endpoint in held:
            pool.release(endpoint)
        # The probe runs after the back-off and fails: still down; then it answers.
        deadline = time.monotonic() + 5
        while not probed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert probed and not {s.url: s for s in pool.states()}["http://a:1"].up
        ready.set()
        while not pool.states()[0].up and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.states()[0].up
    finally:
        pool.close()


def test_down_endpoints_are_still_tried_when_no_up_one_is_left() -> None:
    pool = EndpointPool(["http://a:1", "http://b:1"], probe=never_ready)
    try:
        for _ in range(2):
            endpoint = pool.acquire()
            assert endpoint is not None
            pool.release(endpoint, "ConnectError")
        assert not any(s.up for s in pool.states())
        first = pool.acquire()
        assert first is not None
        second = pool.acquire([first])
        assert second is not None and second is not first
        assert pool.acquire([first, second]) is None
    finally:
        pool.close()


def test_a_dns_entry_stands_for_every_address_and_follows_changes() -> None:
    resolver = Resolver({"indexing": ["10.0.0.1", "10.0.0.2", "fd00::3"]})
    pool = EndpointPool(
        ["dns+http://indexing:9000", "http://static:9001"],
        probe=never_ready,
        resolver=resolver,
        resolve_seconds=0.2,
    )
    try:
        urls = [s.url for s in pool.states()]
        assert urls == [
            "http://static:9001",
            "http://10.0.0.1:9000",
            "http://10.0.0.2:9000",
            "http://[fd00::3]:9000",
        ]
        kept = pool.acquire()  # counts survive a re-resolution of the same address
        assert kept is not None
        pool.release(kept)
        # Scaled: one replica gone, one added.
        resolver.answers["indexing"] = ["10.0.0.2", "10.0.0.4"]
        deadline = time.monotonic() + 5
        while len(pool.states()) != 3 or "http://10.0.0.4:9000" not in str(pool.states()):
            assert time.monotonic() < deadline, pool.states()
            time.sleep(0.05)
        assert [s.url for s in pool.states()] == [
            "http://static:9001",
            "http://10.0.0.2:9000",
            "http://10.0.0.4:9000",
        ]
        # The resolver failing keeps the addresses it gave last.
        del resolver.answers["indexing"]
        calls = resolver.calls
        while resolver.calls < calls + 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert len(pool.states()) == 3
    finally:
        pool.close()


def test_a_name_without_addresses_yet_is_unavailable_not_a_crash() -> None:
    client = ModelClient(
        "dns+http://not-started:9000", timeout=1.0, resolver=Resolver({}), api_key=""
    )
    try:
        with pytest.raises(ModelServerUnavailable, match="no server address"):
            client.embed(["a query"], TextType.QUERY)
    finally:
        client.close()


def test_settings_take_a_list_or_fall_back_to_host_and_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INDEXING_MODEL_SERVER_HOST", "indexing")
    monkeypatch.setenv("INDEXING_MODEL_SERVER_PORT", "9001")
    assert WorkerSettings().indexing_model_server_urls == ["http://indexing:9001"]
    monkeypatch.setenv("INDEXING_MODEL_SERVER_URLS", " http://a:1/, dns+http://b:2 ,")
    settings = WorkerSettings()
    assert settings.indexing_model_server_urls == ["http://a:1", "dns+http://b:2"]
    monkeypatch.setenv("MODEL_SERVER_URLS", "dns+http://inference:9000")
    assert ApiSettings().model_server_url == "http://inference:9000"
    for bad in ("ftp://a:1", "http://a:1 http://b:2", "a:1"):
        monkeypatch.setenv("MODEL_SERVER_URLS", bad)
        with pytest.raises(ValueError, match="MODEL_SERVER_URLS"):
            ApiSettings()


def test_a_request_to_a_dead_server_is_retried_on_the_live_one(
    indexing_server: ServerProcess,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    client = ModelClient([dead, indexing_server.url], timeout=60.0, batch_size=4, api_key="")
    alone = ModelClient(indexing_server.url, timeout=60.0, batch_size=4, api_key="")
    try:
        texts = [f"passage number {i} about retries" for i in range(16)]
        vectors = client.embed(texts, TextType.PASSAGE)
        # The same batches on the same server: the same vectors (int8 scales per batch).
        expected = alone.embed(texts, TextType.PASSAGE)
        assert vectors.shape == expected.shape == (16, 384)
        assert float(np.min(np.sum(vectors * expected, axis=1))) > 0.999
        states = {s.url: s for s in client.endpoints.states()}
        assert not states[dead].up and states[dead].failures == 1
        # 4 batches: the first tried the dead server once, then all went to the live one.
        assert states[indexing_server.url].requests == 4 and states[indexing_server.url].up
    finally:
        client.close()
        alone.close()
