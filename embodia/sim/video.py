"""Write frame stacks to MP4 (H.264 via PyAV), atomically: a temp file renamed into place.

`VideoWriter` takes frames one at a time and encodes them on a background thread (PyAV releases the GIL while
libx264 works), so a caller renders the next frame while the last one is encoded; `write_video` writes a stack.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from pathlib import Path
from typing import Self

import numpy as np

from embodia.core.atomic import atomic_file


class VideoWriter:
    """An MP4 encoded as frames arrive, on its own thread; `close()` finishes it and renames it into place.

    Used as a context manager: an error inside the block (or in the encoder) removes the partial file.
    `preset` is libx264's speed/size trade-off (None: its default, "medium"; "veryfast" encodes ~2x faster);
    `threads` caps libx264's own threads (None: its default, one per core and more).
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: int = 30, codec: str = "libx264",
                 crf: int = 23, preset: str | None = None, threads: int | None = None) -> None:
        import av

        if not (width >= 2 and height >= 2):
            raise ValueError(f"video size {width}x{height}: both sides must be at least 2 pixels (yuv420p)")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = (width, height)
        self._file = contextlib.ExitStack()  # the atomic temp file: renamed onto `path` on close, removed on abort
        self._tmp = self._file.enter_context(atomic_file(self.path, suffix=".mp4"))
        self._container = av.open(str(self._tmp), mode="w")
        stream = self._container.add_stream(codec, rate=int(fps))
        stream.width, stream.height = width - width % 2, height - height % 2  # yuv420p needs even sides
        stream.pix_fmt = "yuv420p"
        options = {"crf": str(crf)} | ({"preset": preset} if preset else {}) if codec == "libx264" else {}
        stream.options = options | ({"threads": str(threads)} if threads else {})
        self._stream = stream
        self._frames: queue.Queue = queue.Queue(maxsize=8)  # bounded: memory stays a few frames however long
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._encode_frames, name=f"encode {self.path.name}", daemon=True)
        self._thread.start()

    def write(self, frame: np.ndarray) -> None:
        """Queue one (H, W, 3) uint8 RGB frame of this video's size for encoding."""
        if self._error is not None:
            raise self._error
        frame = np.asarray(frame)
        if frame.shape != (self.size[1], self.size[0], 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be ({self.size[1]}, {self.size[0]}, 3) uint8, got {frame.shape} {frame.dtype}")
        self._frames.put(frame)

    def close(self) -> Path:
        """Encode what is queued, flush the encoder and move the file into place; returns its path."""
        self._finish()
        if self._error is not None:
            self.abort()
            raise self._error
        self._file.close()
        return self.path

    def abort(self) -> None:
        """Stop encoding and remove the partial file."""
        self._finish()
        self._file.pop_all()  # never renamed into place: the partial file goes instead
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def _finish(self) -> None:
        """Tell the encoder thread the last frame came and wait for it to close the container."""
        if self._thread.is_alive():
            self._frames.put(None)
            self._thread.join()

    def _encode_frames(self) -> None:
        """The encoder thread: frames from the queue until None, then the encoder's tail, then the container."""
        import av

        stream, container = self._stream, self._container
        while (frame := self._frames.get()) is not None:
            if self._error is None:  # after a failure keep draining, so a writer never blocks on a full queue
                self._guard(lambda: container.mux(stream.encode(
                    av.VideoFrame.from_ndarray(frame[: stream.height, : stream.width], format="rgb24"))))
        if self._error is None:
            self._guard(lambda: container.mux(stream.encode()))
        self._guard(container.close)

    def _guard(self, step) -> None:
        """Run one encoder step; keep its error (the first) for the caller's next write or close."""
        try:
            step()
        except Exception as error:  # noqa: BLE001 - whatever fails on this thread must reach the caller, not vanish
            self._error = self._error or error


def write_video(path: str | Path, frames: np.ndarray, fps: int = 30, codec: str = "libx264", crf: int = 23,
                preset: str | None = None) -> Path:
    """Encode (T, H, W, 3) uint8 frames to `path`; returns the path. Odd sides lose their last row/column
    (yuv420p needs even sizes). `preset` is libx264's speed/size trade-off (None: "medium"; "veryfast" ~2x faster)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    with VideoWriter(path, width=frames.shape[2], height=frames.shape[1], fps=fps, codec=codec, crf=crf,
                     preset=preset) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)


def label_frames(frames: np.ndarray, text: str) -> np.ndarray:
    """Burn a caption into the top-left corner of every frame (T, H, W, 3), e.g. the policy's name."""
    from PIL import Image, ImageDraw

    labelled = np.empty_like(frames)
    for index, frame in enumerate(frames):
        image = Image.fromarray(frame)
        draw = ImageDraw.Draw(image)
        left, top, right, bottom = draw.textbbox((6, 4), text)
        draw.rectangle((left - 3, top - 2, right + 3, bottom + 2), fill=(0, 0, 0))
        draw.text((6, 4), text, fill=(255, 255, 255))
        labelled[index] = np.asarray(image)
    return labelled


def read_video(path: str | Path) -> np.ndarray:
    """Decode every frame of a video file to (T, H, W, 3) uint8."""
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
