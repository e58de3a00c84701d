"""`trainer.precision=bf16-mixed` for the tasks that train networks (task=gan, task=feedforward): the runs finish
with finite losses, the penalties under autocast agree with fp32, and what is measured (the GAN metrics, the
held-out losses) is computed in fp32, so that it compares across precisions. Precisions that keep the weights in
16 bits, and values Lightning does not know, are one error line before anything is written."""

import csv
import math

import pytest
import torch

from nst_research.errors import UserInputError
from nst_research.feedforward.task import run as run_feedforward
from nst_research.gan.losses import gradient_penalty, r1_penalty
from nst_research.gan.task import run as run_gan
from nst_research.judge.runs import RunJudge
from nst_research.parts import build

GAN_TINY = ["task=gan", "gan=fc", "trainer.max_epochs=1", "+trainer.limit_train_batches=3", "metric.samples=32",
            "grid_size=4", "logger=none", "+trainer.enable_progress_bar=false"]
FF_TINY = ["task=feedforward", "image_size=32", "layers=shallow", "network.width=4", "network.blocks=1",
           "photos.batch_size=2", "optimizer.lr=3e-3", "trainer.max_steps=4", "trainer.val_check_interval=2",
           "sample_every=2", "trainer.log_every_n_steps=1", "logger=csv", "+trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def fp32_initial_frechet(compose_at, tmp_path_factory):
    """The initial Frechet distance of the untrained fc generator, scored by an fp32 run."""
    cfg = compose_at([*GAN_TINY, "trainer.max_epochs=0"], tmp_path_factory.mktemp("gan_fp32") / "run")
    return run_gan(cfg).frechet_distance["initial"]


@pytest.mark.parametrize("overrides", [
    ["gan.loss=bce"],
    ["gan.loss=lsgan"],
    ["gan.loss=wgan_gp", "gan.d_steps=2"],
    ["gan.loss=hinge", "gan.losses.hinge.r1_weight=1", "gan.discriminator.spectral_norm=true", "gan.ema_decay=0.9",
     "gan.augment=diffaugment"],
    ["gan.conditional=true", "gan.conditional_head=acgan", "gan.losses.bce.gradient_penalty_weight=1"],
], ids=["bce", "lsgan", "wgan_gp", "hinge+r1+stabilisers", "acgan+gp"])
def test_bf16_mixed_gan_trains_with_every_loss(compose_cfg, tmp_path, fp32_initial_frechet, overrides):
    results = run_gan(compose_cfg([*GAN_TINY, *overrides, "trainer.precision=bf16-mixed"]))
    assert results.status == "completed" and results.discriminator_steps == 3
    losses = results.final_losses
    assert {"d_loss", "d_real", "d_fake", "g_loss"} <= set(losses)
    assert all(math.isfinite(value) for value in losses.values()), losses
    assert "wgan_gp" not in overrides[0] or losses["gradient_penalty"] > 0
    if "gan.conditional=true" not in overrides:  # the metric ran in fp32: the same generator, the same number
        assert results.frechet_distance["initial"] == fp32_initial_frechet
    assert math.isfinite(results.frechet_distance["final"])


@pytest.mark.parametrize("gan", ["fc", "dcgan"])
def test_penalties_under_autocast_agree_with_fp32(compose_cfg, gan):
    """bf16 keeps fp32's range: the penalties come out within bf16's rounding. fp16 would flush the unscaled input
    gradient's small values to zero, so under fp16 autocast D runs in fp32 for it: the same value as fp32."""
    cfg = compose_cfg(["task=gan", f"gan={gan}"])
    torch.manual_seed(0)
    discriminator, generator = build(cfg.gan.discriminator), build(cfg.gan.generator)
    real = torch.rand(16, cfg.gan.channels, cfg.gan.image_size, cfg.gan.image_size) * 2 - 1
    fake = generator(torch.rand(16, generator.noise_dim) * 2 - 1).detach()

    def penalties(dtype: torch.dtype | None) -> dict[str, tuple[float, torch.Tensor]]:
        values = {}
        for name, penalty in (("gp", lambda: gradient_penalty(discriminator, real, fake)),
                              ("r1", lambda: r1_penalty(discriminator, real))):
            torch.manual_seed(1)  # the same interpolation points
            discriminator.zero_grad()
            with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                value = penalty()
            value.backward()  # the penalty's gradient for D, which is what trains it
            values[name] = value.item(), torch.cat([p.grad.flatten() for p in discriminator.parameters()
                                                    if p.grad is not None])
        return values

    fp32, bf16, fp16 = penalties(None), penalties(torch.bfloat16), penalties(torch.float16)
    for name, (value, grad) in fp32.items():
        assert value > 0
        assert bf16[name][0] == pytest.approx(value, rel=1e-2), name
        assert torch.nn.functional.cosine_similarity(bf16[name][1], grad, dim=0) > 0.99, name
        assert fp16[name][0] == pytest.approx(value, rel=1e-6), name
        assert torch.allclose(fp16[name][1], grad, rtol=1e-5, atol=1e-8), name


def test_bf16_mixed_feedforward_trains_and_validates_in_fp32(compose_cfg, tmp_path, monkeypatch):
    """The training steps run under bf16 autocast; validation, the judge's images and the final losses are fp32,
    so the last validation's loss is the final network's fp32 loss."""
    judged = []
    original = RunJudge.mean_score

    def record(self, images, keys):
        judged.append((torch.is_autocast_enabled("cpu"), images.dtype))
        return original(self, images, keys)

    monkeypatch.setattr(RunJudge, "mean_score", record)
    results = run_feedforward(compose_cfg([*FF_TINY, "trainer.precision=bf16-mixed"]))
    assert results.status == "completed" and results.steps == 4
    final = results.final_losses
    assert all(math.isfinite(value) for value in final.values()), final
    with open(tmp_path / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    train = [float(row["train/total"]) for row in rows if row["train/total"]]
    assert len(train) == 4 and all(math.isfinite(value) for value in train)
    val = {int(row["step"]): float(row["val/total"]) for row in rows if row["val/total"]}
    assert val[4] == pytest.approx(final["total"], rel=1e-5)  # fp32, as the final losses
    assert judged and all(not autocast and dtype == torch.float32 for autocast, dtype in judged)


@pytest.mark.parametrize("task, overrides", [("gan", GAN_TINY), ("feedforward", FF_TINY)])
@pytest.mark.parametrize("precision, message", [
    ("bf16-true", r"trainer.precision=bf16-true keeps the weights themselves in 16 bits; use "
                  r"trainer.precision=bf16-mixed"),
    ("fp8", r"trainer: Precision 'fp8' is invalid. Allowed precision values: \("),
])
def test_unsupported_precisions_are_one_error_before_anything_is_written(compose_cfg, tmp_path, task, overrides,
                                                                        precision, message):
    run = run_gan if task == "gan" else run_feedforward
    with pytest.raises(UserInputError, match=message):
        run(compose_cfg([*overrides, f"trainer.precision={precision}"], output_dir=tmp_path / "run"))
    assert not (tmp_path / "run").exists()

