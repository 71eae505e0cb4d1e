"""Camera streams for datasets: encode an episode to MP4, concatenate episodes into shared files, decode frame ranges.

Defaults follow lerobot's encoder (AV1 via SVT-AV1, crf 30, preset 12, keyframe every 2 frames) so the files
behave like lerobot's own under its random-access decoders. Frame i of a file is stamped pts = i at time base 1/fps.
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from embodia.core.atomic import atomic_file
from embodia.core.errors import DatasetFormatError, UserError

CODEC_NAMES = {"libsvtav1": "av1", "libx264": "h264"}
os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole config to stderr per file otherwise


class VideoConfig(BaseModel):
    """How camera streams are encoded."""

    model_config = ConfigDict(extra="forbid")

    encoder: Literal["libsvtav1", "libx264"] = Field("libsvtav1", description="libsvtav1 (AV1, lerobot's default) or libx264 (H.264)")
    crf: int = Field(30, ge=0, le=63, description="constant rate factor: lower is better quality and bigger files")
    gop: int = Field(2, ge=1, description="keyframe interval in frames (lerobot's 2 keeps random access cheap)")
    preset: int = Field(12, ge=0, le=13, description="SVT-AV1 speed preset (higher is faster); x264 uses ultrafast")

    @property
    def codec(self) -> str:
        """The codec name recorded in info.json's video.codec, as ffprobe reports it."""
        return CODEC_NAMES[self.encoder]

    def options(self) -> dict[str, str]:
        """Encoder options for PyAV."""
        options = {"crf": str(self.crf), "g": str(self.gop)}
        if self.encoder == "libsvtav1":
            options["preset"] = str(self.preset)
        else:
            options["preset"] = "ultrafast"
        return options


def encode_frames(path: Path, frames: np.ndarray, fps: int, config: VideoConfig | None = None) -> Path:
    """Encode (T, H, W, 3) uint8 frames to an MP4 at `path` (written to a temp name, then renamed)."""
    import av

    config = config or VideoConfig()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"camera frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise UserError(f"camera image size {width}x{height} must be even for yuv420p video; pick an even --image-size")
    with atomic_file(path) as tmp, av.open(str(tmp), mode="w") as container:
        stream = container.add_stream(config.encoder, rate=int(fps), options=config.options())
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, int(fps))
        for index, frame in enumerate(frames):
            image = av.VideoFrame.from_ndarray(frame, format="rgb24")
            image.pts = index
            image.time_base = Fraction(1, int(fps))
            container.mux(stream.encode(image))
        container.mux(stream.encode())
    return path


def concatenate(inputs: list[Path], output: Path) -> Path:
    """Join MP4 files of identical encoding into one by stream copy (no re-encode), as lerobot does."""
    import av

    if not inputs:
        raise ValueError("no video files to concatenate")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".ffconcat", delete=False, dir=output.parent) as listing:
        listing.write("ffconcat version 1.0\n")
        for path in inputs:
            listing.write(f"file '{Path(path).resolve()}'\n")
    try:
        with atomic_file(output) as tmp, \
                av.open(listing.name, mode="r", format="concat", options={"safe": "0"}) as source, \
                av.open(str(tmp), mode="w", options={"movflags": "faststart"}) as sink:
            in_stream = source.streams.video[0]
            out_stream = sink.add_stream_from_template(template=in_stream, opaque=True)
            out_stream.time_base = in_stream.time_base
            for packet in source.demux(in_stream):
                if packet.dts is None:
                    continue
                packet.stream = out_stream
                sink.mux(packet)
    finally:
        os.unlink(listing.name)
    return output


def count_frames(path: Path, from_s: float, to_s: float, fps: int) -> int:
    """Number of video packets whose timestamps fall in [from_s, to_s) (no decoding)."""
    import av

    half_frame = 0.5 / fps
    count = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            t = float(packet.pts * stream.time_base)
            count += from_s - half_frame <= t < to_s - half_frame
    return count


def video_duration_s(path: Path) -> float:
    """Duration of the first video stream in seconds."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None:
            return float(stream.duration * stream.time_base)
        return float(container.duration / av.time_base)


class VideoFile:
    """An open MP4 that decodes whole episode ranges sequentially (seek once, decode forward)."""

    def __init__(self, path: Path) -> None:
        import av

        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetFormatError(f"video file {self.path} is missing")
        self._container = av.open(str(self.path))
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"

    def decode_range(self, from_s: float, to_s: float, fps: int) -> np.ndarray:
        """Frames (T, H, W, 3) uint8 with timestamps in [from_s, to_s), T = round((to_s - from_s) * fps)."""
        expected = int(round((to_s - from_s) * fps))
        height, width = self._stream.codec_context.height, self._stream.codec_context.width
        out = np.zeros((expected, height, width, 3), dtype=np.uint8)
        filled = np.zeros(expected, dtype=bool)
        time_base = self._stream.time_base
        self._container.seek(int(from_s / time_base), stream=self._stream, backward=True, any_frame=False)
        for frame in self._container.decode(self._stream):
            t = float(frame.pts * time_base)
            index = int(round((t - from_s) * fps))
            if index >= expected:
                break
            if index >= 0:
                out[index] = frame.to_ndarray(format="rgb24")
                filled[index] = True
        if not filled.all():
            missing = np.flatnonzero(~filled)
            raise DatasetFormatError(f"{self.path}: {len(missing)} of {expected} frames missing in [{from_s:.3f}, {to_s:.3f}) s "
                             f"(first missing frame {missing[0]}); the video is truncated or corrupt")
        return out

    def close(self) -> None:
        self._container.close()


def video_size(path: Path) -> tuple[int, int]:
    """(height, width) of the first video stream, read from the container header (no decoding)."""
    import av

    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        return context.height, context.width
