"""Samples from a trained GAN without its config: a grid and a latent interpolation strip.

    python scripts/gan_samples.py <run dir or .ckpt> [--interpolate] [--n 64] [--steps 10] [--rows 4]
                                  [--seed 0] [--out DIR]

The generator is rebuilt from the checkpoint alone: its `_target_` node and noise distribution under
`generator` (written by `GANModule`), its weights under `generator_ema.` (the moving average, when the run
kept one) or else `generator.`. A run directory means its checkpoints/best.ckpt (the best by the Frechet
distance), else last.ckpt. Written: `<out>/grid.png` (`--n` samples; one class per row for a conditional
generator) and, with `--interpolate`, `<out>/interpolation.png`: `--rows` rows of `--steps` images along
the path between two random latents (spherical for normal noise, as White (2016) advises, straight for
uniform noise; one class per row when conditional). Every input is checked before anything is written: a
bad one is one `error:` line on stderr, exit status 2.
"""

import argparse
import pickle
import zipfile
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.utils import make_grid, save_image

from nst_research.errors import UserInputError, one_line_errors
from nst_research.feedforward.checkpoint import build_network, checkpoint_file
from nst_research.gan.module import GENERATOR_KEY, generate, sample_noise

FIX = "give a GAN run directory or its .ckpt file"


def load_generator(path: Path) -> tuple[nn.Module, str]:
    """The trained generator of a checkpoint or run directory (eval mode, CPU) and its noise distribution."""
    path = checkpoint_file(Path(path).expanduser(), FIX)
    try:  # tensors and plain containers only: a checkpoint cannot run code
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserInputError(f"cannot read checkpoint {path} ({reason}); {FIX}") from None
    saved = checkpoint.get(GENERATOR_KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(saved, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserInputError(f"{path} is not a GAN checkpoint (no generator node: another task's, or a run "
                             f"made before checkpoints held it?); {FIX}")
    generator = build_network(saved["config"])
    weights = checkpoint["state_dict"]
    prefix = "generator_ema." if any(key.startswith("generator_ema.") for key in weights) else "generator."
    generator.load_state_dict({key.removeprefix(prefix): value for key, value in weights.items()
                               if key.startswith(prefix)})
    return generator.eval().requires_grad_(False), saved["noise"]


def class_rows(generator: nn.Module, rows: int, per_row: int) -> Tensor | None:
    """Labels for one class per row (cycling through the classes), or None for an unconditional generator."""
    classes = getattr(generator, "num_classes", None)
    return None if classes is None else (torch.arange(rows) % classes).repeat_interleave(per_row)


def grid(generator: nn.Module, noise: str, n: int, seed: int) -> Tensor:
    """`n` samples as one image in [0, 1]: a square grid, or one class per row for a conditional generator."""
    classes = getattr(generator, "num_classes", None)
    columns = int(n**0.5) if classes is None else max(1, n // classes)
    count = n if classes is None else classes * columns
    z = sample_noise((count, generator.noise_dim), noise, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        images = generate(generator, z, class_rows(generator, classes or 0, columns))
    return make_grid(images, nrow=columns, normalize=True, value_range=(-1, 1), pad_value=1)


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Points along the great circle from a to b (rows), at fractions t; straight where they are parallel."""
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1).clamp(-1, 1)[:, None, None]
    omega = torch.arccos(cos)
    t = t[None, :, None]
    straight = (1 - t) * a[:, None] + t * b[:, None]
    curved = torch.sin((1 - t) * omega) * a[:, None] + torch.sin(t * omega) * b[:, None]
    return torch.where(omega > 1e-4, curved / torch.sin(omega).clamp_min(1e-7), straight)


def interpolation(generator: nn.Module, noise: str, rows: int, steps: int, seed: int) -> Tensor:
    """`rows` strips of `steps` images between two random latents each, as one image in [0, 1]."""
    fixed = torch.Generator().manual_seed(seed)
    ends = [sample_noise((rows, generator.noise_dim), noise, fixed) for _ in range(2)]
    t = torch.linspace(0, 1, steps)
    z = slerp(*ends, t) if noise == "normal" else torch.lerp(ends[0][:, None], ends[1][:, None], t[None, :, None])
    with torch.no_grad():
        images = generate(generator, z.reshape(rows * steps, -1), class_rows(generator, rows, steps))
    return make_grid(images, nrow=steps, normalize=True, value_range=(-1, 1), pad_value=1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/gan_samples.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a GAN run directory or its .ckpt file")
    parser.add_argument("--interpolate", action="store_true", help="also write a latent interpolation strip")
    parser.add_argument("--n", type=int, default=64, help="samples in the grid (default 64)")
    parser.add_argument("--steps", type=int, default=10, help="images along each interpolation (default 10)")
    parser.add_argument("--rows", type=int, default=4, help="interpolations, one per row (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="of the noise (default 0)")
    parser.add_argument("--out", type=Path, default=Path("gan_samples"), help="output folder (default gan_samples)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> list[Path]:
    for name, minimum in (("n", 1), ("steps", 2), ("rows", 1)):
        if getattr(args, name) < minimum:
            raise UserInputError(f"--{name} {getattr(args, name)} must be at least {minimum}")
    generator, noise = load_generator(Path(args.checkpoint))
    images = {"grid.png": grid(generator, noise, args.n, args.seed)}
    if args.interpolate:
        images["interpolation.png"] = interpolation(generator, noise, args.rows, args.steps, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        save_image(image, args.out / name)
        print(args.out / name)
    return [args.out / name for name in images]


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    run(parse_args(argv))
    return 0
