"""The MRF style loss (Li and Wand, 2016): nearest patches by normalised cross-correlation, chunked
matching, masks, pooled styles, and `style_loss=mrf` as a user types it."""

import json

import pytest
import torch
from torch.nn import functional as F

from nst_research.errors import UserInputError
from nst_research.nst.style_losses import MRFStyleLoss


def brute_force_nearest(image: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Each image patch's best style patch by the full normalised cross-correlation matrix."""
    q = F.normalize(image, dim=1)
    p = F.normalize(style, dim=1)
    return (q @ p.T).argmax(dim=1)


def test_matching_is_normalised_cross_correlation_and_chunking_changes_nothing():
    torch.manual_seed(0)
    image, style = torch.randn(1, 4, 7, 6), torch.randn(1, 4, 9, 8)
    whole, chunked = MRFStyleLoss(chunk_size=10_000), MRFStyleLoss(chunk_size=5)
    targets = whole.targets(whole.statistics(style))
    expected = brute_force_nearest(whole.patches(image), whole.patches(style))
    assert torch.equal(whole.nearest(whole.patches(image), targets["unit"]), expected)
    assert torch.equal(chunked.nearest(chunked.patches(image), targets["unit"]), expected)
    assert whole(image, targets).item() == pytest.approx(chunked(image, targets).item(), rel=1e-6)


def test_loss_is_the_mean_squared_distance_to_the_matched_patches():
    torch.manual_seed(1)
    image, style = torch.rand(1, 3, 5, 5), torch.rand(1, 3, 6, 6)
    loss = MRFStyleLoss()
    targets = loss.targets(loss.statistics(style))
    patches, style_patches = loss.patches(image), loss.patches(style)
    matched = style_patches[brute_force_nearest(patches, style_patches)]
    assert loss(image, targets).item() == pytest.approx((patches - matched).pow(2).mean().item(), rel=1e-6)
    assert loss(style, targets).item() == pytest.approx(0.0, abs=1e-7)  # every patch finds itself


def test_a_patch_matches_by_direction_not_by_magnitude():
    """Normalised cross-correlation: a style patch twice as bright is still the best match of its shape."""
    loss = MRFStyleLoss(patch_size=1)
    style = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # two 1x1 patches: (1, 0) and (0, 1)
    image = torch.tensor([[[[5.0]], [[0.1]]]])              # points along (1, 0), far longer
    targets = loss.targets(loss.statistics(style))
    assert loss.nearest(loss.patches(image), targets["unit"]).tolist() == [0]


def test_mask_weights_each_patch_by_the_mask_at_its_centre():
    torch.manual_seed(2)
    image, style = torch.rand(1, 3, 6, 6), torch.rand(1, 3, 6, 6)
    loss = MRFStyleLoss()
    targets = loss.targets(loss.statistics(style))
    mask = torch.zeros(1, 1, 6, 6)
    mask[..., :3, :] = 1.0  # top half: patch centres in rows 1 and 2 count
    patches = loss.patches(image)
    distances = (patches - loss.patches(style)[brute_force_nearest(patches, loss.patches(style))]).pow(2).mean(1)
    rows = torch.arange(4).repeat_interleave(4) + 1  # the centre row of each of the 4 x 4 patches
    expected = distances[rows <= 2].mean()
    assert loss(image, targets, mask).item() == pytest.approx(expected.item(), rel=1e-6)


def sliced_patches(features: torch.Tensor, k: int, rows: list[int], columns: list[int]) -> torch.Tensor:
    """The k x k patches starting at each (row, column), in raster order, sliced one by one."""
    return torch.stack([features[0, :, r:r + k, c:c + k].flatten() for r in rows for c in columns])


def test_stride_two_covers_every_position_with_the_last_start_added():
    """8 x 7 with 3 x 3 patches, stride 2: rows start at 0, 2, 4 and 5 (8 - 3 = 5 is odd), columns at 0, 2, 4."""
    loss = MRFStyleLoss(stride=2)
    positions = torch.arange(1.0, 8 * 7 + 1).view(1, 1, 8, 7)  # each position's own value
    patches = loss.patches(positions)
    assert torch.equal(patches, sliced_patches(positions, 3, [0, 2, 4, 5], [0, 2, 4]))
    assert set(patches.flatten().tolist()) == set(positions.flatten().tolist())
    skipping = F.unfold(positions, 3, stride=2)  # what a plain strided unfold leaves out: the last row
    assert len(set(positions.flatten().tolist()) - set(skipping.flatten().tolist())) == 7


def test_stride_one_gives_exactly_the_unfolded_patches():
    torch.manual_seed(3)
    features = torch.randn(2, 4, 7, 6)
    assert torch.equal(MRFStyleLoss().patches(features), F.unfold(features, 3).transpose(1, 2).flatten(0, 1))


def test_mask_weights_each_strided_patch_by_the_mask_at_its_centre():
    torch.manual_seed(4)
    image, style = torch.rand(1, 3, 8, 7), torch.rand(1, 3, 6, 6)
    loss = MRFStyleLoss(stride=2)
    targets = loss.targets(loss.statistics(style))
    mask = torch.rand(1, 1, 8, 7)
    rows, columns = [0, 2, 4, 5], [0, 2, 4]
    patches, style_patches = sliced_patches(image, 3, rows, columns), loss.patches(style)
    distances = (patches - style_patches[brute_force_nearest(patches, style_patches)]).pow(2).mean(1)
    weights = torch.tensor([mask[0, 0, r + 1, c + 1].item() for r in rows for c in columns])
    expected = (distances * weights).sum() / weights.sum()
    image.requires_grad_()
    value = loss(image, targets, mask)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()
    assert (image.grad.abs().sum(1) > 0).all()  # every position, the last row too, is pulled


def test_several_styles_pool_their_patches_and_unequal_blends_are_refused():
    loss = MRFStyleLoss()
    a, b = loss.statistics(torch.rand(1, 3, 5, 5)), loss.statistics(torch.rand(1, 3, 4, 4))
    pooled = loss.blend([a, b], [0.5, 0.5])
    assert pooled["patches"].shape[0] == a["patches"].shape[0] + b["patches"].shape[0]
    with pytest.raises(UserInputError, match="style_blend"):
        loss.blend([a, b], [0.7, 0.3])


@pytest.mark.parametrize("setting", [{"patch_size": 0}, {"stride": 1.5}, {"chunk_size": -1}])
def test_bad_settings_are_user_errors(setting):
    with pytest.raises(UserInputError, match=next(iter(setting))):
        MRFStyleLoss(**setting)


def test_style_loss_mrf_from_the_command_line(run_cli, tmp_path):
    """As typed: its own layers (relu3_1, relu4_1) and weight, and the loss falls."""
    run_dir = tmp_path / "mrf"
    result = run_cli("style_loss=mrf", "image_size=48", "iterations=8", "logger=csv", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert {k for k in results["final_losses"] if k.startswith("style/")} == {"style/relu3_1", "style/relu4_1"}
    assert results["final_losses"]["total"] < results["initial_losses"]["total"]
