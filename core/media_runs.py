"""One timeline for a browser recording made of several MediaRecorder runs.

A recorder restarted mid-exam (the candidate reloaded the page) starts a new WebM stream, header and all, and
appends it to the same upload; its timestamps start again from zero. libavformat reads such a file through (it
resynchronises at the next cluster), but the timestamps go back at each restart. `RunJoiner` puts each packet
on one timeline: a new run continues one frame after the last frame of the run before. The seconds the page
took to reload are not in the recording, so the recording's clock (which the recorder's event log also uses)
simply runs on; the event log marks each restart (`other`, `recorder_restarted`).

The ingest probe measures a recording's duration with it, and the pipelines' remux writes the joined timeline
into the seekable copy that analysis and review read, so both agree on every frame's time.
"""

from __future__ import annotations

from dataclasses import dataclass

# A timestamp this far behind the one before starts a new run. Smaller steps back are reordered frames or jitter
# (used only on live-written WebM/Matroska, where the browser's encoders write no B-frames); a run shorter than
# this is not told apart, and no real restart (a page reload) is that short.
RESTART_BACK_S = 0.25


@dataclass
class RunJoiner:
    """Maps one stream's packet timestamps (in its time base) onto a single timeline, packet by packet.

    `restart_back_ticks` is `RESTART_BACK_S` in the stream's time base. Feed packets in file order.
    """

    restart_back_ticks: int
    runs: int = 1
    _offset: int = 0
    _last_raw: int | None = None
    _last_joined: int | None = None
    _frame_ticks: int = 1  # the last positive step between frames: how long the run's last frame lasts

    def join(self, pts: int) -> int:
        """The timestamp of this packet on the joined timeline."""
        if self._last_raw is not None and self._last_joined is not None:
            if pts < self._last_raw - self.restart_back_ticks:
                self.runs += 1
                self._offset = self._last_joined + self._frame_ticks - pts
            elif pts > self._last_raw:
                self._frame_ticks = pts - self._last_raw
        joined = pts + self._offset
        self._last_raw = pts
        self._last_joined = joined if self._last_joined is None else max(self._last_joined, joined)
        return joined
