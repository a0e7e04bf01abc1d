"""A browser's recording (no duration, no Cues) plays in the review UI from the seekable copy that processing
made of it, with HTTP Range, and erasing the session removes the copy with everything else."""

from __future__ import annotations

import io
from pathlib import Path

import av

from core.tables import ExamSession
from ingest.client import IngestClient, upload_session
from pipelines.analysis import AnalysisConfig
from pipelines.fanout import LocalFanout
from pipelines.process import process_session
from proctor.samples import SampleSession
from storage.keys import SessionPrefix
from tests.review_ui.conftest import World

CUES = bytes.fromhex("1C53BB6B")  # the Matroska Cues element's ID: the seek index


def as_mediarecorder_writes_it(source: Path, path: Path) -> Path:
    """The sample's packets, muxed live as MediaRecorder does: no duration in the header, no Cues."""
    with av.open(str(source)) as original, av.open(str(path), "w", format="webm", options={"live": "1"}) as out:
        streams = [original.streams.video[0], *original.streams.audio[:1]]
        copies = {s.index: out.add_stream_from_template(s) for s in streams}
        for packet in original.demux(streams):
            if packet.size:
                packet.stream = copies[packet.stream.index]
                out.mux(packet)
    return path


def test_a_browser_recording_is_served_seekable_with_range_and_erased_with_its_session(
    world: World, sample: SampleSession, tmp_path: Path
) -> None:
    recorded = as_mediarecorder_writes_it(sample.video_path, tmp_path / "mediarecorder.webm")
    with av.open(str(recorded)) as container:
        assert container.duration is None and CUES not in recorded.read_bytes()
    with IngestClient(world.url, world.keys["a"]) as client:
        sid: str = upload_session(client, webcam=recorded, exam_id="exam-live", candidate_id="cand-live")["id"]
    ctx = world.context

    process_session(ctx.db, ctx.store, LocalFanout(AnalysisConfig(), ctx.location), sid, chunk_target_ms=12_000)

    with ctx.db() as db:
        session = db.get(ExamSession, sid)
        assert session is not None and session.results_prefix is not None
        key = SessionPrefix(session.tenant.slug, session.exam.external_id, sid).seekable_key("webcam")
        original_key = next(m.object_key for m in session.media if m.kind == "webcam")
    copy = b"".join(ctx.store.iter_chunks(key))
    assert CUES in copy and copy != recorded.read_bytes()
    assert b"".join(ctx.store.iter_chunks(original_key)) == recorded.read_bytes(), "the upload stays as it was"

    reviewer = world.browser("reviewer_a")
    path = f"/review/sessions/{sid}/media/webcam"
    whole = reviewer.get(path)
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/webm"
    assert whole.headers["accept-ranges"] == "bytes" and int(whole.headers["content-length"]) == len(copy)
    assert whole.content == copy
    with av.open(io.BytesIO(whole.content), "r") as served:
        assert served.duration is not None and abs(served.duration / av.time_base - 24.0) < 0.5
    end = len(copy) // 2
    middle = reviewer.get(path, headers={"Range": f"bytes=1000-{end}"})
    assert middle.status_code == 206 and middle.headers["content-range"] == f"bytes 1000-{end}/{len(copy)}"
    assert int(middle.headers["content-length"]) == end - 999 and middle.content == copy[1000 : end + 1]
    tail = reviewer.get(path, headers={"Range": "bytes=-500"})
    assert tail.status_code == 206 and tail.content == copy[-500:]  # the Cues sit at the end of the copy

    with IngestClient(world.url, world.keys["a"]) as client:
        client.request("DELETE", f"/v1/sessions/{sid}")
    assert ctx.store.stat(key) is None and ctx.store.stat(original_key) is None
    assert reviewer.get(path).status_code == 404
