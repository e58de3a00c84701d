"""A trained feed-forward network against optimisation (Johnson et al. 2016, section 4.1), image by image.

    python scripts/feedforward_vs_optimization.py <feedforward run dir> [--steps 50 100 200] [--out DIR]

For each held-out image of a feed-forward run: the loss of the network's output under the run's own
objective, and the loss that style transfer by L-BFGS (`task=nst`, from the content image) reaches after
each of `steps` (50, 100 and 200 by default) under the same objective: the same style image at the same
size, model, layers, terms and weights; and the time per image of each. The objective is rebuilt from the
run's config.yaml with `build_objective`, as both tasks build it. Both methods' images (as saved) are also judged
on the fixed yardstick of every run (the run's judge, or `conf/judge/default.yaml` where it had none): content
kept and style taken, against the held-out image and the style as given.

Times. The network's: the median of 10 forward passes of one image (after 2 warm-up passes; the network
already loaded). The optimisation's: the time its steps took, from the step trace of the run (the end of
step 1 to the end of step k, times k / (k - 1) for step 1 itself); loading the feature network and the
images is left out, as the network's loading is.

Writes into `out`: comparison.json, comparison.md (the table), contact_sheet.png (per image: the content,
the network's output and L-BFGS's at each step count), the held-out images as content/<name>.png, and one
task=nst run directory per image under optimization/<name>/.

    python scripts/feedforward_vs_optimization.py <feedforward run dir> --plane [--steps 50 100 200] [--out DIR]

The judge's plane instead (`judge_plane`): how the network's held-out outputs move as it trains. Each
checkpoint of the run (checkpoints/history/, kept with `+callbacks=history`, and last.ckpt) stylises the
held-out images; the judge (the run's `judge` node, else conf/judge/default.yaml) scores each output against
its photo and the run's style, and a point is the mean over the images of eval/content and eval/style. The
photos themselves (content 0, style 1) and L-BFGS after each of `steps` are the references. Each point also
carries the mean total loss under the run's own objective, so the table says when the network beats the photo.
Writes plane.json, plane.md and plane.png (eval/content against eval/style) into `out`.
"""

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from PIL import ImageFont
from torch import Tensor, nn
from torchvision.transforms import functional as TF
from torchvision.utils import make_grid

from nst_research.atomic import write_atomic
from nst_research.bench.measure import compose_config, synchronize
from nst_research.bench.nst import traced_run
from nst_research.errors import UserInputError, one_line_errors
from nst_research.feedforward.checkpoint import checkpoint_file, load_network
from nst_research.feedforward.data import PhotoDataModule
from nst_research.feedforward.task import load_styles
from nst_research.judge.judge import FeatureJudge, Reference
from nst_research.nst.images import load_image, save_image
from nst_research.nst.objective import StyleTransferObjective
from nst_research.nst.task import build_objective
from nst_research.parts import build
from nst_research.tracking.compare import labelled_tile

# What the optimisation takes from the feed-forward run's config: the objective and its inputs, as they were.
SHARED_NODES = ("model", "layers", "objective", "style_loss")
SHARED_VALUES = ("style", "style_blend", "content_weight", "style_weight", "tv_weight", "gram_normalization",
                 "normalize_gradients", "content_reduction", "max_megapixels", "seed")
REPEATS, WARMUP = 10, 2
# The judge's numbers on the plane's table, and the plane's axes (x, y)
EVAL_KEYS = ("content", "style", "score", "color", "content_ssim")
AXES = ("content", "style")


def run_config(run_dir: Path) -> DictConfig:
    """A feed-forward run's saved config (its checkpoint is checked too)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise UserInputError(f"{run_dir} has no config.yaml; give a feed-forward run directory")
    cfg = OmegaConf.load(path)
    if cfg.get("task") != "feedforward":
        raise UserInputError(f"{run_dir} is a task={cfg.get('task')} run; give a feed-forward run directory")
    checkpoint_file(run_dir)
    return cfg


def held_out(cfg: DictConfig, folder: Path) -> dict[str, Path]:
    """The run's held-out images, as validation sees them, saved as PNG files (name -> path): both methods
    start from these same 8-bit pixels."""
    photos: PhotoDataModule = build(cfg.photos)
    paths = {}
    for spec, image in zip(photos.held_out, photos.validation_images(), strict=True):
        paths[Path(spec).stem] = folder / f"{Path(spec).stem}.png"
        save_image(image, paths[Path(spec).stem])
    return paths


@torch.no_grad()
def losses_of(objective: StyleTransferObjective, content: Tensor, image: Tensor) -> dict[str, float]:
    objective.set_content(content)
    return {key: value.item() for key, value in objective(image).items()}


@torch.no_grad()
def stylize_timed(network: nn.Module, image: Tensor) -> tuple[Tensor, float]:
    """The network's output and the median time of `REPEATS` forward passes, after `WARMUP` passes."""
    for _ in range(WARMUP):
        output = network(image)
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        output = network(image)
        synchronize(image.device)
        times.append(time.perf_counter() - start)
    return output, statistics.median(times)


def optimization_config(cfg: DictConfig, content: Path, steps: int, save_every: int, output_dir: Path,
                        device: str) -> DictConfig:
    """task=nst from `content` with the feed-forward run's objective, style at the same size, `steps` L-BFGS steps,
    in fp32 as the network computes (not the default's `precision=auto`, which differs between machines)."""
    size = cfg.photos.val_size or cfg.image_size
    style_size = round(cfg.image_size * cfg.style_scale)  # as the feed-forward run loaded its style images
    nst = compose_config(["task=nst", "precision=32", f"content={content}", f"image_size={size}", f"iterations={steps}",
                          f"save_every={save_every}", "logger=csv", f"output_dir={output_dir}",
                          f"trainer.accelerator={device}", "+trainer.enable_progress_bar=false"])
    for key in SHARED_NODES:
        OmegaConf.update(nst, key, cfg[key], merge=False)
    for key in SHARED_VALUES:
        nst[key] = cfg[key]
    nst.style_scale = style_size / size
    return nst


def optimize(cfg: DictConfig, content: Path, steps: list[int], output_dir: Path, device: str) -> dict[str, Any]:
    """The L-BFGS run's total loss and time after each step count, and its image files."""
    last = max(steps)
    save_every = next(every for every in range(min(steps), 0, -1) if all(k % every == 0 for k in steps))
    nst = optimization_config(cfg, content, last, save_every, output_dir, device)
    results, trace = traced_run(nst, time.perf_counter())
    if results.status != "completed":
        raise RuntimeError(f"the optimisation of {content} ended {results.status}: {results.error}")
    first = trace[0]["time"]
    record = {}
    for k in steps:  # the loss logged at step k + 1 is the image's after k steps; after the last, the final loss
        loss = results.final_losses["total"] if k == last else trace[k]["loss"]
        seconds = (trace[k - 1]["time"] - first) * k / (k - 1) if k > 1 else None
        record[k] = {"total": loss, "seconds": seconds,
                     "image": str(output_dir / ("result.png" if k == last else f"intermediate/step_{k:05d}.png"))}
    return record


def build_run_judge(cfg: DictConfig) -> FeatureJudge:
    """The feed-forward run's judge; the default judge for a run that had none (judge=none, or made before judges)."""
    return build(cfg.get("judge") or compose_config([]).judge)


def compare(run_dir: Path, out: Path, steps: list[int], device: str) -> dict[str, Any]:
    """Run the comparison; write comparison.json, comparison.md and contact_sheet.png into `out`."""
    if not steps or min(steps) < 2:
        raise UserInputError(f"--steps {steps}: give step counts >= 2, e.g. --steps 50 100 200")
    cfg = run_config(run_dir)
    try:
        network = load_network(run_dir).to(device)
    except (RuntimeError, AssertionError) as error:  # an unknown device, or CUDA absent
        raise UserInputError(f"--device {device}: {str(error).splitlines()[0]}; use --device cpu") from None
    names, styles, blend = load_styles(cfg)
    judge = build_run_judge(cfg).to(device)
    objective = build_objective(cfg).to(device)
    objective.set_styles([style.to(device) for style in styles], blend)
    images = held_out(cfg, out / "content")
    rows = []
    for name, path in images.items():
        content = load_image(str(path)).to(device)
        output, seconds = stylize_timed(network, content)
        save_image(output, out / "network" / f"{name}.png")
        originals = [load_image(style, max(content.shape[-2:]), cfg.max_megapixels) for style in names]
        reference = judge.prepare(content, originals, blend)
        lbfgs = optimize(cfg, path, sorted(set(steps)), out / "optimization" / name, device)
        for record in lbfgs.values():
            record["eval"] = judge.score(load_image(record["image"]), reference)
        rows.append({"image": name, "size": list(content.shape[-2:]), "content": str(path),
                     "network": {"losses": losses_of(objective, content, output), "seconds": seconds,
                                 "image": str(out / "network" / f"{name}.png"),
                                 "eval": judge.score(load_image(str(out / "network" / f"{name}.png")), reference)},
                     "content_loss": losses_of(objective, content, content)["total"], "lbfgs": lbfgs})
    report = {"run": str(run_dir), "checkpoint": str(checkpoint_file(run_dir)), "device": device,
              "torch_threads": torch.get_num_threads(), "steps": sorted(set(steps)), "images": rows,
              "judge": judge.settings()}
    write_atomic(out / "comparison.json", lambda f: f.write((json.dumps(report, indent=2) + "\n").encode()))
    write_atomic(out / "comparison.md", lambda f: f.write(table(report).encode()))
    contact_sheet(report, out / "contact_sheet.png")
    return report


def table(report: dict[str, Any]) -> str:
    """One row per image and a mean row: the total loss of the content image itself, the network's output and
    L-BFGS's after each step count; the network's time, L-BFGS's at the last count, and their ratio; the judge's
    content and style numbers of the network's output and of L-BFGS's after each step count."""
    steps, rows = report["steps"], report["images"]
    judged = ["network", *(f"L-BFGS {k}" for k in steps)]
    header = ["image", "content (start)", "network", *(f"L-BFGS {k}" for k in steps), "network (s)",
              f"L-BFGS {steps[-1]} (s)", "time ratio", *(f"{method} eval/{key}" for method in judged
                                                         for key in ("content", "style"))]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]

    def cells(row: dict[str, Any]) -> list[float]:
        last = row["lbfgs"][steps[-1]]["seconds"]
        evals = [row["network"]["eval"], *(row["lbfgs"][k]["eval"] for k in steps)]
        return [row["content_loss"], row["network"]["losses"]["total"], *(row["lbfgs"][k]["total"] for k in steps),
                row["network"]["seconds"], last, last / row["network"]["seconds"],
                *(scores[key] for scores in evals for key in ("content", "style"))]

    values = [cells(row) for row in rows]
    for row, numbers in zip(rows, values, strict=True):
        lines.append("| " + " | ".join([row["image"], *(f"{v:.4g}" for v in numbers)]) + " |")
    means = [statistics.mean(column) for column in zip(*values, strict=True)]
    lines.append("| mean | " + " | ".join(f"{v:.4g}" for v in means) + " |")
    return "\n".join(lines) + "\n"


def contact_sheet(report: dict[str, Any], path: Path) -> None:
    """A row per image: the content, the network's output, then L-BFGS's after each step count, labelled with
    their total loss and time."""
    font = ImageFont.load_default()
    tiles = []
    for row in report["images"]:
        network = row["network"]
        tiles.append(labelled_tile(Path(row["content"]), f"{row['image']} (content), loss {row['content_loss']:.4g}",
                                   font))
        tiles.append(labelled_tile(Path(network["image"]), f"network, loss {network['losses']['total']:.4g}, "
                                   f"{network['seconds']:.3g} s", font))
        for k in report["steps"]:
            step = row["lbfgs"][k]
            tiles.append(labelled_tile(Path(step["image"]), f"L-BFGS {k} steps, loss {step['total']:.4g}, "
                                       f"{step['seconds']:.3g} s", font))
    grid = make_grid(tiles, nrow=2 + len(report["steps"]), padding=4, pad_value=1.0)
    write_atomic(path, lambda f: TF.to_pil_image(grid).save(f, format="PNG"))

def history(run_dir: Path) -> list[tuple[int, Path]]:
    """The run's checkpoints as (step, file), by step: checkpoints/history/*.ckpt and last.ckpt, one per step."""
    files = sorted((run_dir / "checkpoints" / "history").glob("*.ckpt")) + [run_dir / "checkpoints" / "last.ckpt"]
    steps = {}
    for path in files:
        if path.is_file():
            steps.setdefault(torch.load(path, map_location="cpu", weights_only=True).get("global_step", 0), path)
    return sorted(steps.items())


@torch.no_grad()
def judged(judge: FeatureJudge, references: dict[str, Reference], objective: StyleTransferObjective,
           contents: dict[str, Tensor], images: dict[str, Tensor]) -> dict[str, float]:
    """The mean over the held-out images of the judge's numbers and of the total loss under the run's objective
    (`loss`) for `images` (name -> the image made from that held-out photo)."""
    rows = [{**judge.score(images[name], references[name]),
             "loss": losses_of(objective, contents[name], images[name].to(contents[name].device))["total"]}
            for name in contents]
    return {key: statistics.mean(row[key] for row in rows) for key in (*EVAL_KEYS, "loss")}


def judge_plane(run_dir: Path, out: Path, steps: list[int], device: str) -> dict[str, Any]:
    """The judge's plane of a feed-forward run: the photos, the network at each checkpoint and L-BFGS after each
    of `steps`, each the mean over the held-out images; writes plane.json, plane.md and plane.png into `out`."""
    if not steps or min(steps) < 2:
        raise UserInputError(f"--steps {steps}: give step counts >= 2, e.g. --steps 50 100 200")
    cfg = run_config(run_dir)
    checkpoints = history(run_dir)
    judge = build_run_judge(cfg).to(device)
    names, styles, blend = load_styles(cfg)
    objective = build_objective(cfg).to(device)
    objective.set_styles([style.to(device) for style in styles], blend)
    paths = held_out(cfg, out / "content")
    contents = {name: load_image(str(path)).to(device) for name, path in paths.items()}
    references = {name: judge.prepare(content, styles, blend) for name, content in contents.items()}
    network_points = []
    for step, path in checkpoints:
        network = load_network(path).to(device)
        point = judged(judge, references, objective, contents, {n: network(c) for n, c in contents.items()})
        network_points.append({"step": step, "checkpoint": str(path), **point})
    runs = {name: optimize(cfg, path, sorted(set(steps)), out / "optimization" / name, device)
            for name, path in paths.items()}
    lbfgs = [{"step": k, **judged(judge, references, objective, contents,
                                  {name: load_image(runs[name][k]["image"]) for name in contents})}
             for k in sorted(set(steps))]
    report = {"run": str(run_dir), "style": names, "image_size": cfg.photos.val_size or cfg.image_size,
              "judge": judge.settings(), "images": list(paths),
              "photo": judged(judge, references, objective, contents, contents),
              "network": network_points, "lbfgs": lbfgs}
    write_atomic(out / "plane.json", lambda f: f.write((json.dumps(report, indent=2) + "\n").encode()))
    write_atomic(out / "plane.md", lambda f: f.write(plane_table(report).encode()))
    plane_figure(report, out / "plane.png")
    return report


def plane_table(report: dict[str, Any]) -> str:
    """One row per point of the plane: the photo, the network at each step, L-BFGS at each step count."""
    header = ["image", *(f"eval/{key}" for key in EVAL_KEYS), "loss (own objective)"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    rows = [("photo", report["photo"]), *((f"network, step {p['step']}", p) for p in report["network"]),
            *((f"L-BFGS, {p['step']} steps", p) for p in report["lbfgs"])]
    for label, point in rows:
        lines.append("| " + " | ".join([label, *(f"{point[key]:.4g}" for key in (*EVAL_KEYS, "loss"))]) + " |")
    return "\n".join(lines) + "\n"


def plane_figure(report: dict[str, Any], path: Path) -> None:
    """eval/content (x) against eval/style (y): the network's path over its checkpoints, labelled by step, the
    photo's point and L-BFGS's; lower is better on both axes."""
    x, y = AXES
    figure = Figure(figsize=(6.5, 5))  # no pyplot: no display or global state needed
    axes = figure.subplots()
    network = report["network"]
    axes.plot([p[x] for p in network], [p[y] for p in network], "o-", color="tab:blue", label="network (by step)")
    for point in network:
        axes.annotate(str(point["step"]), (point[x], point[y]), textcoords="offset points", xytext=(4, 4),
                      fontsize=8, color="tab:blue")
    lbfgs = report["lbfgs"]
    axes.plot([p[x] for p in lbfgs], [p[y] for p in lbfgs], "s--", color="tab:orange", label="L-BFGS (by steps)")
    for point in lbfgs:
        axes.annotate(str(point["step"]), (point[x], point[y]), textcoords="offset points", xytext=(4, -10),
                      fontsize=8, color="tab:orange")
    photo = report["photo"]
    axes.plot([photo[x]], [photo[y]], "*", color="black", markersize=12, label="the photo")
    axes.set_xlabel(f"eval/{x} (0: the photo's content)")
    axes.set_ylabel(f"eval/{y} (1: the photo's style)")
    axes.set_title(f"style {', '.join(map(str, report['style']))}, {report['image_size']} px: the mean of "
                   f"{len(report['images'])} held-out photos", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=100))


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """The command line: run the comparison, print the table; bad input is one `error:` line and exit status 2."""
    parser = argparse.ArgumentParser(prog="scripts/feedforward_vs_optimization.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a feed-forward run directory (task=feedforward)")
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 100, 200],
                        help="L-BFGS step counts to report (the run takes the largest)")
    parser.add_argument("--out", type=Path, default=Path("outputs/feedforward_vs_optimization"),
                        help="output folder (default: outputs/feedforward_vs_optimization)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where both methods run (default: cuda if available, else cpu)")
    parser.add_argument("--plane", action="store_true",
                        help="the judge's plane over the run's checkpoints, not the table (plane.png, .md, .json)")
    args = parser.parse_args(argv)
    names = ("plane.md", "plane.json", "plane.png") if args.plane else ("comparison.md", "comparison.json",
                                                                        "contact_sheet.png")
    (judge_plane if args.plane else compare)(args.run_dir, args.out, args.steps, args.device)
    print((args.out / names[0]).read_text(), end="")
    print("wrote " + ", ".join(str(args.out / name) for name in names))
    return 0

