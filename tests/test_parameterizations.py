"""What the optimizer steps: every parameterization makes the image it is given, and runs end to end."""

import pytest
import torch
from PIL import Image

from nst_research.nst.parameterizations import LaplacianPyramid, Pixels, Spectrum
from nst_research.nst.task import run as run_nst_task

PARAMETERIZATIONS = {
    "pixels": Pixels,
    "laplacian": LaplacianPyramid,
    "laplacian 6 levels, unweighted": lambda image: LaplacianPyramid(image, levels=6, level_weight=1.0),
    "spectrum": Spectrum,
    "spectrum decorrelated": lambda image: Spectrum(image, decay=1.0, decorrelate_colors=True),
}


@pytest.mark.parametrize("name", PARAMETERIZATIONS)
@pytest.mark.parametrize("shape", [(1, 3, 32, 48), (2, 3, 37, 50)])  # odd sizes; a batch
def test_each_parameterization_makes_the_image_it_was_given_and_assigned(name, shape):
    first, second = torch.rand(shape, generator=torch.Generator().manual_seed(0)), torch.rand(shape)
    parameterization = PARAMETERIZATIONS[name](first)
    torch.testing.assert_close(parameterization(), first, atol=1e-5, rtol=0)
    parameterization.assign(second)
    torch.testing.assert_close(parameterization(), second, atol=1e-5, rtol=0)
    assert all(p.is_contiguous() and p.requires_grad for p in parameterization.parameters())  # as L-BFGS needs


def test_a_pyramid_level_is_half_the_size_of_the_one_before():
    pyramid = LaplacianPyramid(torch.rand(1, 3, 37, 50), levels=4)
    assert [tuple(level.shape[-2:]) for level in pyramid.levels] == [(37, 50), (19, 25), (10, 13), (5, 7)]


def test_a_step_on_the_spectrum_changes_coarse_structure_more_than_fine_detail():
    """The 1/f scaling is a preconditioner: of the same gradient's step, a larger share is smooth structure."""
    gradient = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))

    def coarse_share(parameterization):
        before = parameterization().detach().clone()
        (parameterization() * gradient).sum().backward()
        torch.optim.SGD(parameterization.parameters(), lr=0.1).step()
        change = parameterization().detach() - before
        return torch.nn.functional.avg_pool2d(change, 8).norm().item() / change.norm().item()

    image = torch.full((1, 3, 32, 32), 0.5)
    assert coarse_share(Spectrum(image, decay=1.0)) > 2 * coarse_share(Pixels(image))


@pytest.mark.parametrize("choice", ["laplacian", "spectrum"])
def test_a_run_optimises_another_parameterization_within_range(choice, compose_cfg, tmp_path):
    pixels = run_nst_task(compose_cfg(["image_size=48", "iterations=4", "logger=none"], tmp_path / "pixels"))
    results = run_nst_task(compose_cfg(["image_size=48", "iterations=4", "logger=none", f"parameterization={choice}"],
                                       tmp_path / choice))
    assert results.final_losses["total"] < results.initial_losses["total"]
    assert results.initial_losses == pytest.approx(pixels.initial_losses, rel=1e-5, abs=1e-9)  # the same start
    assert results.final_losses["total"] != pixels.final_losses["total"]
    with Image.open(tmp_path / choice / "result.png") as result:
        assert max(result.size) == 48
    checkpoint = torch.load(tmp_path / choice / "checkpoint.pt", weights_only=True)
    image = checkpoint["image"]  # the clamp acts on the image (assigned back through the parameters: rounding)
    assert -1e-6 <= image.min() and image.max() <= 1 + 1e-6


@pytest.mark.parametrize("overrides, message", [
    (["parameterization=laplacian", "parameterization.levels=0"], "parameterization.levels=0 must be an integer"),
    (["parameterization=laplacian", "parameterization.level_weight=-1"], "parameterization.level_weight=-1 must"),
    (["parameterization=spectrum", "parameterization.decay=abc"], "parameterization.decay=abc must"),
])
def test_a_bad_setting_is_one_line_before_anything_is_written(overrides, message, run_cli, tmp_path):
    output_dir = tmp_path / "run"
    done = run_cli("image_size=32", "iterations=2", "logger=none", *overrides, f"hydra.run.dir={output_dir}")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {message}"), line
    assert not output_dir.exists()
