"""Figures: MIP overlays colour TP/FP/FN correctly; distribution plots and CLI figures are written."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import imread

from nnunet_medsam_fusion.cli import main
from nnunet_medsam_fusion.evaluation import figures
from nnunet_medsam_fusion.evaluation.commands import compare_trainers, evaluate_folders
from nnunet_medsam_fusion.evaluation.figures import (
    COLOURS,
    save_metric_distributions,
    save_mip_overlay,
    write_comparison_figures,
    write_evaluation_figures,
)

SPACING = (1.0, 0.5, 0.5)


def write_nifti(path, array, dtype=np.uint8):
    image = sitk.GetImageFromArray(array.astype(dtype))
    image.SetSpacing(tuple(reversed(SPACING)))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def vessels():
    ref = np.zeros((6, 40, 40), dtype=bool)
    ref[:, 20, 5:35] = True
    pred = ref.copy()
    pred[:, 20, 5:12] = False  # false negatives on the left
    pred[:, 30, 25:35] = True  # false positives below
    return pred, ref


def colour_fraction(png, colour):
    rgb = imread(png)[..., :3]
    return np.mean(np.all(np.abs(rgb - np.array(colour)) < 0.02, axis=-1))


@pytest.mark.parametrize("ndim", [2, 3])
def test_mip_overlay_colours_errors(tmp_path, ndim):
    pred, ref = vessels()
    if ndim == 2:
        pred, ref = pred[0], ref[0]
    image = np.random.default_rng(0).random(ref.shape)
    path = save_mip_overlay(tmp_path / "mip.png", ref, {"model A": pred, "model B": ref}, image=image,
                            spacing=SPACING[-ndim:], title="case")
    assert path.stat().st_size > 1000
    for name in ("true positive", "false negative", "false positive", "reference"):
        assert colour_fraction(path, COLOURS[name]) > 0, name


def test_mip_overlay_colours_false_islands_and_gaps(tmp_path):
    ref = np.zeros((6, 40, 40), dtype=bool)
    ref[2:4, 10, 5:35] = True
    pred = ref.copy()
    pred[:, 10, 18:22] = False  # a break in the vessel: a gap
    pred[2:4, 35:38, 30:33] = True  # an island 12.5 mm from the vessel: false island
    broken = save_mip_overlay(tmp_path / "broken.png", ref, {"model": pred}, spacing=SPACING)
    perfect = save_mip_overlay(tmp_path / "perfect.png", ref, {"model": ref}, spacing=SPACING)
    for name in ("false island", "gap"):  # the legend shows every colour: compare against the perfect panel
        assert colour_fraction(broken, COLOURS[name]) > colour_fraction(perfect, COLOURS[name]), name


def test_mip_overlay_rejects_shape_mismatch(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        save_mip_overlay(tmp_path / "x.png", np.zeros((4, 4, 4)), {"a": np.zeros((4, 4, 5))})


def test_metric_distributions_png(tmp_path):
    values = {"dice": {"A": [0.8, 0.9, 0.85], "B": [0.7, np.nan, 0.75]}, "hd95": {"A": [1.0, 2.0, 1.5],
                                                                                  "B": [3.0, np.nan, 2.5]}}
    path = save_metric_distributions(tmp_path / "d.png", values, title="t")
    assert path.stat().st_size > 1000 and imread(path).shape[0] > 100


@pytest.fixture
def saved_figures(monkeypatch):
    """Every matplotlib Figure the figure module saves, drawn, for checks on its artists."""
    saved = []

    class Recorded(figures.Figure):
        def savefig(self, *args, **kwargs):
            super().savefig(*args, **kwargs)
            saved.append(self)

    monkeypatch.setattr(figures, "Figure", Recorded)
    return saved


def test_mip_title_stays_clear_of_three_line_panel_titles(tmp_path, saved_figures):
    """A tiny-encoder trainer's panel title has three lines (name, encoder mark, Dice): the figure's title and the
    legend keep clear of every panel and its title."""
    pred, ref = vessels()
    name = "nnUNetTrainerMedSAMFusionTiny_demo\n[Full (MS), random tiny encoder]\nDice 85.0%"
    save_mip_overlay(tmp_path / "mip.png", ref, {name: pred}, spacing=SPACING,
                     title="SyntheticTOF_008 [vessel] MIP (no image found: masks on black)")
    (figure,) = saved_figures
    canvas = FigureCanvasAgg(figure)  # draws it as savefig did, layout included
    canvas.draw()
    renderer = canvas.get_renderer()
    title = figure._suptitle.get_window_extent(renderer)
    legend = figure.legends[0].get_window_extent(renderer)
    for ax in figure.axes:
        for box in (ax.title.get_window_extent(renderer), ax.get_window_extent(renderer)):
            assert not title.overlaps(box) and not legend.overlaps(box)


def test_distributions_of_few_cases_show_points_and_say_when_undefined(tmp_path, saved_figures):
    """One trainer and two cases (before: boxes collapsed to flat lines, HD95 panels empty without a word)."""
    values = {"dice": {"A": [0.8, 0.9]}, "hd95": {"A": [np.nan, np.nan]},
              "asd": {"A": [1.0, 2.0, 3.0, 4.0, 5.0]}}
    save_metric_distributions(tmp_path / "d.png", values)
    (figure,) = saved_figures
    dice, hd95, asd = figure.axes[:3]
    points = [line for line in dice.lines if line.get_marker() == "."]
    assert len(dice.lines) == len(points) == 1 and sorted(points[0].get_ydata()) == pytest.approx([80.0, 90.0])
    assert [text.get_text() for text in hd95.texts] == ["undefined in every case"]
    assert len(asd.lines) > 1  # five cases: a box (its lines) beside the points


def test_evaluation_and_comparison_figures(tmp_path):
    pred, ref = vessels()
    for case in ("a", "b"):
        write_nifti(tmp_path / "ref" / f"{case}.nii.gz", ref)
        write_nifti(tmp_path / "p1" / f"{case}.nii.gz", pred)
        write_nifti(tmp_path / "p2" / f"{case}.nii.gz", ref)
        image = np.random.default_rng(0).random(ref.shape) * 100
        write_nifti(tmp_path / "img" / f"{case}_0000.nii.gz", image, dtype=np.float32)
    result = evaluate_folders(tmp_path / "p1", tmp_path / "ref")
    written = write_evaluation_figures(result, tmp_path / "fig", image_dir=tmp_path / "img")
    assert sorted(p.name for p in written) == ["distributions_label_1.png", "mip_a_label_1.png",
                                               "mip_b_label_1.png"]
    assert all(p.stat().st_size > 1000 for p in written)

    comparison = compare_trainers("Dataset001_X", ["nnUNetTrainer", "nnUNetTrainerMedSAMFusion"],
                                  pred_dirs={"nnUNetTrainer": tmp_path / "p1",
                                             "nnUNetTrainerMedSAMFusion": tmp_path / "p2"},
                                  ref_dir=tmp_path / "ref", results_dir=tmp_path / "results")
    written = write_comparison_figures(comparison, tmp_path / "cmp", image_dir=tmp_path / "img", max_cases=1)
    assert sorted(p.name for p in written) == ["distributions_label_1.png", "mip_a_label_1.png"]
    assert all(p.stat().st_size > 1000 for p in written)


def test_cli_evaluate_figures(tmp_path, capsys):
    pred, ref = vessels()
    write_nifti(tmp_path / "ref" / "a.nii.gz", ref)
    write_nifti(tmp_path / "pred" / "a.nii.gz", pred)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "vessel": 1}}))
    args = ["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"),
            "--dataset-json", str(tmp_path / "dataset.json"), "--figures"]
    assert main(args) == 0
    figures = tmp_path / "pred" / "figures"
    assert (figures / "mip_a_vessel.png").stat().st_size > 1000
    assert (figures / "distributions_vessel.png").is_file()
    assert main(args) == 2  # figures already there, no --overwrite
    assert "--overwrite" in capsys.readouterr().err
