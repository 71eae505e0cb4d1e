"""Write frame stacks to MP4 (H.264 via PyAV), atomically: a temp file renamed into place."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embodia.core.atomic import atomic_file


def write_video(path: str | Path, frames: np.ndarray, fps: int = 30, codec: str = "libx264", crf: int = 23,
                preset: str | None = None) -> Path:
    """Encode (T, H, W, 3) uint8 frames to `path`; returns the path. Even sizes are required by yuv420p.
    `preset` is libx264's speed/size trade-off (None: its default, "medium"; "veryfast" encodes ~2x faster)."""
    import av

    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    height, width = frames.shape[1:3]
    with atomic_file(path, suffix=".mp4") as tmp, av.open(str(tmp), mode="w") as container:
        stream = container.add_stream(codec, rate=int(fps))
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = ({"crf": str(crf)} | ({"preset": preset} if preset else {})) if codec == "libx264" else {}
        for frame in frames:
            image = av.VideoFrame.from_ndarray(frame[: stream.height, : stream.width], format="rgb24")
            for packet in stream.encode(image):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


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
