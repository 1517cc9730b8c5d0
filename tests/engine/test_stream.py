"""Live prediction (Predictor.stream) on an MPEG-TS stream that the test serves itself over HTTP
on the loopback interface: end of stream, a stall, a dropped connection, reconnection."""

from __future__ import annotations

import logging
import re
import socket

import numpy as np
import pytest
import torch

from gdn.data.decode import StreamError
from gdn.engine.predict import Predictor

torch.set_num_threads(1)

SEGMENT = 24  # frames of each colour in conftest's colour_stream: red, green, blue at 12 fps


@pytest.fixture(scope="module")
def predictor(colour_checkpoint):
    return Predictor(colour_checkpoint, device="cpu")


def check_windows(predictions, num_windows: int, first_frame: int = 0):
    """Windows are [kS, kS + W) of the frames read since `first_frame`, in order, labelled with
    their colour when inside one."""
    for p in predictions:
        w = p.window
        start = w.start - first_frame
        assert w.end - w.start == 12 and start % 6 == 0 and start >= 0
        colour = {start // SEGMENT, (start + 11) // SEGMENT}
        if len(colour) == 1:
            assert p.topk[0][1] == ("red", "green", "blue")[colour.pop()], w
    indices = [p.window.index for p in predictions]
    assert indices == sorted(set(indices)) and indices[-1] == num_windows - 1


def replaced(caplog) -> int:
    found = [re.search(r": (\d+) of \d+ windows were replaced", r.getMessage()) for r in caplog.records]
    return sum(int(m[1]) for m in found if m)


def test_reads_a_local_stream_and_stops_at_its_end(predictor, serve, caplog):
    """Case 19 (docs/reliability.md): the end of the stream ends the iteration; every window is scored or counted."""
    server = serve("end")
    with caplog.at_level(logging.INFO):
        got = list(predictor.stream(server.url, "12f", "6f", timeout=5))
    # 72 frames: windows end at frames 12, 18, ..., 72. A window is replaced by a newer one when
    # scoring is slower than the stride (and counted in the log), never lost without a trace.
    assert len(got) + replaced(caplog) == 11
    check_windows(got, 11)
    assert got[-1].window.end == 72 and got[-1].topk[0][1] == "blue"


def test_live_windows_and_smoothing_match_the_file_windows(predictor, serve, colour_stream, tmp_path):
    """A live window's raw scores equal those of the same window of the stream saved as a file
    (`predict_windows`); with smooth=3 each output is the mean of the last 3 windows scored."""
    ts = tmp_path / "live.ts"
    ts.write_bytes(colour_stream)
    raw = {p.window.index: p.scores for p in predictor.predict_windows(ts, "12f", "6f")}
    assert sorted(raw) == list(range(11))
    server = serve("end", "end")
    for p in predictor.stream(server.url, "12f", "6f"):
        np.testing.assert_allclose(p.scores, raw[p.window.index], rtol=1e-5, atol=1e-6)
    smooth = list(predictor.stream(server.url, "12f", "6f", smooth=3))
    scored = [p.window.index for p in smooth]
    for j, p in enumerate(smooth):
        want = np.mean([raw[k] for k in scored[max(0, j - 2) : j + 1]], axis=0)
        np.testing.assert_allclose(p.scores, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(smooth[-1].scores, raw[10])


def test_survives_a_stall_shorter_than_the_timeout(predictor, serve):
    """Case 19 (docs/reliability.md): a 1.5 s pause with a 5 s timeout is waited out."""
    server = serve("stall:1.5")
    got = list(predictor.stream(server.url, "12f", "6f", timeout=5))
    assert server.stalled >= 1.5 and server.connections == 1
    check_windows(got, 11)
    assert got[-1].topk[0][1] == "blue"


def test_a_dropped_connection_is_reported(predictor, serve):
    """Case 19 (docs/reliability.md): a TCP reset mid-stream is StreamError naming the source."""
    server = serve("drop")
    got = []
    with pytest.raises(StreamError, match="connection lost after .* frames") as e:
        for p in predictor.stream(server.url, "12f", "6f", timeout=5):
            got.append(p)
    assert server.url in str(e.value) and "--reconnect" in str(e.value) and not e.value.stalled
    assert got and got[0].topk[0][1] == "red"  # what came before the drop was predicted


def test_a_stall_longer_than_the_timeout_is_reported(predictor, serve):
    """Case 19 (docs/reliability.md): a 3 s pause with a 1 s timeout is StreamError(stalled=True)."""
    server = serve("stall:3")
    with pytest.raises(StreamError, match="no data for 1 s after .* frames; the source stalled") as e:
        list(predictor.stream(server.url, "12f", "6f", timeout=1))
    assert e.value.stalled


def test_reconnects_after_a_drop_and_windows_never_span_the_gap(predictor, serve, caplog):
    """Case 19 (docs/reliability.md): --reconnect retries with back-off; no window mixes two connections."""
    server = serve("drop", "end")
    with caplog.at_level(logging.INFO):
        got = list(predictor.stream(server.url, "12f", "6f", timeout=5, reconnect=2, backoff=0.05))
    assert server.connections == 2
    assert any("reconnecting in 0.05 s (retry 1 of 2)" in r.getMessage() for r in caplog.records)
    gap = got[-1].window.end - 72  # frames read before the drop; the second connection reads all 72
    assert 0 < gap < 72
    assert all(p.window.end <= gap or p.window.start >= gap for p in got)
    second = [p for p in got if p.window.start >= gap]
    first = len(got) - len(second)
    assert len(got) + replaced(caplog) == (gap - 12) // 6 + 1 + 11
    check_windows(second, got[-1].window.index + 1, first_frame=gap)
    assert got[-1].topk[0][1] == "blue" and first >= 1


def test_a_source_that_cannot_be_opened(predictor):
    """Case 19 (docs/reliability.md): a refused connection is StreamError naming the source."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StreamError, match=f"127.0.0.1:{port}.*cannot be opened"):
        list(predictor.stream(f"http://127.0.0.1:{port}/live.ts", "12f", timeout=2))
