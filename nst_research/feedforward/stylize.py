"""Stylise images with a trained feed-forward network, and export the network (torch.export, ONNX).

    python scripts/stylize.py <run dir or .ckpt> <images or folders...> [--size N] [--out DIR]
    python scripts/stylize.py <run dir or .ckpt> [images...] --export pt2 onnx [--out DIR]

The network is rebuilt from the checkpoint alone (see `nst_research.feedforward.checkpoint` for what it
must hold; a run directory means its checkpoints/best.ckpt, else last.ckpt, else, for a run stopped before its
first validation, interrupted.ckpt). Each image, of any size and aspect (its long side resized to `--size` if
given), becomes `<out>/<name>_stylized.png` (`--out` defaults to outputs/stylized), one line printed per image.
Folders are searched recursively. Every input is checked (paths, readable images, distinct output names) before
anything is written: a bad one is one `error:` line on stderr, exit status 2.

Exports take any batch size, height and width: both come from one `torch.export` trace with dynamic
dimensions. `pt2` saves the ExportedProgram (`torch.export.save`) as `<out>/network.pt2`, loadable with
`torch.export.load(path).module()` without this code; `onnx` converts it with torch's dynamo exporter to
`<out>/network.onnx` (one file; needs the `export` extra: onnx and onnxscript). Each file is written whole or
not at all.
"""

import argparse
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from nst_research.atomic import write_atomic
from nst_research.data.files import image_files
from nst_research.errors import UserInputError, one_line_errors
from nst_research.feedforward.checkpoint import INTERRUPTED, checkpoint_file, load_network
from nst_research.nst.images import MIN_IMAGE_SIZE, load_image, save_image
from nst_research.nst.sources import MAX_MEGAPIXELS
from nst_research.tracking.console import notice

SUFFIX = "_stylized.png"
EXPORTS = {"pt2": "network.pt2", "onnx": "network.onnx"}
DEFAULT_OUT = Path("outputs") / "stylized"


def input_files(specs: list[str]) -> list[Path]:
    """Image files and folders (searched recursively) -> image files, in the order given."""
    files = []
    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir():
            files.extend(image_files(path, key="folder"))
        elif path.is_file():
            files.append(path)
        else:
            raise UserInputError(f"{spec} does not exist; give image files or folders of images")
    return files


def output_paths(files: list[Path], out: Path) -> list[Path]:
    """`<out>/<name>_stylized.png` for each file; two inputs with one name would overwrite each other."""
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen and seen[path.stem] != path:
            raise UserInputError(f"{seen[path.stem]} and {path} would both be written to {out / (path.stem + SUFFIX)}; "
                                 "stylise them in separate runs with different --out folders")
        seen[path.stem] = path
    return [out / (path.stem + SUFFIX) for path in files]


def check_sizes(files: list[Path], size: int | None, max_megapixels: float) -> None:
    """Each image as it will be stylised (its long side `size`, if given) is within `max_megapixels`, from the
    files' headers alone (an unreadable file is reported when it is read)."""
    for path in files:
        try:
            with Image.open(path) as opened:
                width, height = opened.size
        except (OSError, ValueError):
            continue
        if size is not None:
            width, height = round(width * size / max(width, height)), round(height * size / max(width, height))
        megapixels = width * height / 1e6
        if megapixels > max_megapixels:
            raise UserInputError(f"{path} would be stylised at {width}x{height} ({megapixels:.0f} MP), over "
                                 f"--max-megapixels {max_megapixels:g}; give a smaller --size, or raise the limit")


@torch.no_grad()
def stylize(network: nn.Module, image: Tensor) -> Tensor:
    """The network's output for a (1, 3, H, W) image in [0, 1], on the network's device, back on the CPU."""
    device = next(network.parameters()).device
    return network(image.to(device)).cpu()


def exported(network: nn.Module) -> torch.export.ExportedProgram:
    """The network traced by `torch.export` for any batch size, height and width. The example's sizes are
    neither 1 nor multiples of 4, so that nothing is fixed to the example; a network that cannot take every
    size is one line naming the problem."""
    any_size = {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("height", min=1),
                3: torch.export.Dim("width", min=1)}
    try:
        return torch.export.export(network.cpu(), (torch.rand(2, 3, 61, 63),), dynamic_shapes=(any_size,))
    except torch._dynamo.exc.UserError as error:
        raise UserInputError(f"--export: {type(network).__name__} cannot be exported for every image size "
                             f"({str(error).splitlines()[0].split('! ')[0]}); export a network whose forward has no "
                             "size-dependent branches") from None


def save_program(program: torch.export.ExportedProgram, path: Path) -> None:
    write_atomic(path, lambda f: torch.export.save(program, f))  # whole or not at all, even on a full disk


def check_onnx_exporter() -> None:
    """The dynamo exporter needs onnx and onnxscript (the `export` extra)."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise UserInputError('--export onnx needs onnx and onnxscript; pip install "nst-research[export]"') from None


def save_onnx(program: torch.export.ExportedProgram, path: Path) -> None:
    """The exported program as one ONNX file (weights inside), its input `image` and output `stylized`."""
    onnx_program = torch.onnx.export(program, dynamo=True, verbose=False, external_data=False,
                                     input_names=["image"], output_names=["stylized"])
    write_atomic(path, lambda f: f.write(onnx_program.model_proto.SerializeToString()))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/stylize.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a feed-forward run directory or its .ckpt file")
    parser.add_argument("images", nargs="*", help="image files or folders (searched recursively)")
    parser.add_argument("--size", type=int, default=None, help="long side in pixels (default: each image's own size)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--max-megapixels", type=float, default=MAX_MEGAPIXELS,
                        help=f"refuse images that would be stylised larger than this (default: {MAX_MEGAPIXELS:g})")
    parser.add_argument("--export", choices=sorted(EXPORTS), nargs="+", action="extend", default=[],
                        help="also write the network as a torch.export program (network.pt2) or ONNX (network.onnx)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where the network runs (default: cuda if available, else cpu)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    if not args.images and not args.export:
        raise UserInputError("no images given; give image files or folders, or --export pt2|onnx")
    if args.size is not None and args.size < MIN_IMAGE_SIZE:
        raise UserInputError(f"--size {args.size} is too small; give at least {MIN_IMAGE_SIZE} px")
    if "onnx" in args.export:
        check_onnx_exporter()
    checkpoint = checkpoint_file(Path(args.checkpoint).expanduser())
    if checkpoint.name == INTERRUPTED and checkpoint != Path(args.checkpoint).expanduser():
        notice(f"using {checkpoint}: the run stopped before its first validation, and this is its only network")
    network = load_network(checkpoint)
    files = input_files(args.images)
    outputs = output_paths(files, args.out)
    if args.out.exists() and not args.out.is_dir():
        raise UserInputError(f"--out {args.out} is a file; give a folder (it is made if missing)")
    check_sizes(files, args.size, args.max_megapixels)
    for path in files:  # every image must read before anything is written
        load_image(str(path))
    program = exported(network) if args.export else None  # a network that does not export writes nothing
    try:
        device = torch.device(args.device)
        network.to(device)
    except (RuntimeError, AssertionError) as error:  # an unknown device, or CUDA absent
        raise UserInputError(f"--device {args.device}: {str(error).splitlines()[0]}; use --device cpu") from None
    for path, output in zip(files, outputs, strict=True):
        stylised = stylize(network, load_image(str(path), long_side=args.size))
        save_image(stylised, output)
        print(f"{path} -> {output} ({stylised.shape[-1]}x{stylised.shape[-2]})")
    for kind in dict.fromkeys(args.export):
        target = args.out / EXPORTS[kind]
        (save_program if kind == "pt2" else save_onnx)(program, target)
        print(f"{kind}: {target}")


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    run(parse_args(argv))
    return 0
