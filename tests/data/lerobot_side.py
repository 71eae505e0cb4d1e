"""Runs inside the lerobot side virtualenv (never imported by embodia): load or write a dataset with lerobot 0.4.4.

usage: lerobot_side.py load ROOT OUT.npz      dump every frame lerobot reads (images as uint8 HWC)
       lerobot_side.py write ROOT OUT.npz     write a 2-camera dataset with lerobot's own writer, dump what went in
       lerobot_side.py write-images ROOT OUT.npz   the same with the camera as parquet images (use_videos=False)
"""

import sys

import numpy as np


def load(root: str, out: str) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("embodia/test", root=root)
    frames = [ds[i] for i in range(len(ds))]
    dump = {"num_episodes": np.array(ds.num_episodes), "fps": np.array(ds.fps)}
    for key in frames[0]:
        if key == "task":
            dump["task"] = np.array([f["task"] for f in frames])
        elif key in ds.meta.video_keys:
            dump[key] = np.stack([(f[key].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for f in frames])
        else:
            dump[key] = np.stack([f[key].numpy() for f in frames])
    np.savez(out, **dump)


def write(root: str, out: str, camera_dtype: str = "video") -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    features = {
        "observation.state": {"dtype": "float32", "shape": (3,), "names": ["x", "y", "z"]},
        "action": {"dtype": "float32", "shape": (2,), "names": ["u", "v"]},
        "observation.images.front": {"dtype": camera_dtype, "shape": (32, 48, 3), "names": ["height", "width", "channels"]},
    }
    ds = LeRobotDataset.create("embodia/test", fps=10, root=root, robot_type="toy", features=features,
                               use_videos=camera_dtype == "video")
    rng = np.random.default_rng(7)
    states, actions, images, tasks = [], [], [], []
    for episode, length in enumerate((6, 9)):
        for t in range(length):
            state = rng.normal(size=3).astype(np.float32)
            action = rng.normal(size=2).astype(np.float32)
            image = np.zeros((32, 48, 3), np.uint8)
            image[..., 0], image[..., 1], image[..., 2] = 20 * t, 100 + 60 * episode, 50
            task = f"task {episode}"
            ds.add_frame({"observation.state": state, "action": action, "observation.images.front": image, "task": task})
            states.append(state), actions.append(action), images.append(image), tasks.append(task)
        ds.save_episode()
    ds.finalize()
    np.savez(out, state=np.stack(states), action=np.stack(actions), images=np.stack(images), task=np.array(tasks))


if __name__ == "__main__":
    def write_images(root: str, out: str) -> None:
        write(root, out, camera_dtype="image")

    {"load": load, "write": write, "write-images": write_images}[sys.argv[1]](sys.argv[2], sys.argv[3])
