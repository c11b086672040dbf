"""Replacement-mode masks: the official dilation + get_aug_mask blocks, external masks, background."""
from __future__ import annotations

import numpy as np
import pytest

from wan_animate.preprocess.errors import MaskInputError
from wan_animate.preprocess.masks import (
    background, blockify, check_mask_aspect, dilate, fit_external_mask, person_region, refine,
)


def test_official_default_mask_is_the_dilated_bounding_box():
    raw = np.zeros((100, 120), np.uint8)
    raw[30:60, 40:50] = 1  # a body
    raw[40, 50:70] = 1  # an arm sticking out
    grown = dilate(raw)  # 7x7, 3 iterations: 9 pixels each way
    ys, xs = np.nonzero(grown)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (21, 68, 31, 78)
    out = refine(raw)  # defaults: k=7, iterations=3, one 1x1 grid cell = filled [min, max) box
    assert out[21:68, 31:78].all() and out.sum() == 47 * 47 + (grown[68, 31:79].sum() + grown[21:68, 78].sum())
    assert out[:21].sum() == 0 and out[:, :31].sum() == 0
    assert np.array_equal(refine(raw, iterations=0), raw)  # official: iterations 0 uses the mask as it is


def test_blockify_grid_and_empty_mask():
    m = np.zeros((40, 40), np.uint8)
    m[0, 0] = m[20, 20] = m[39, 39] = 1
    cells = blockify(m, 2, 2)  # 2x2 grid over the bbox (cells of int(39 / 2) = 19): touched cells get filled
    assert cells[:19, :19].all() and cells[19:38, 19:38].all() and cells[:19, 19:38].sum() == 0
    assert cells[39, 39] == 1 and cells[38, 38] == 0  # official [min, max) cells: the max row/column stays as it was
    assert blockify(np.zeros((10, 10), np.uint8)).sum() == 0  # the official code crashes here
    thin = np.zeros((10, 10), np.uint8)
    thin[2:8, 5] = 1
    assert blockify(thin, 4, 4).sum() >= 6  # cells narrower than the grid are one pixel wide, not a crash


def test_person_region_includes_hands_outside_the_box_and_background():
    kps = np.array([[50.0, 50.0], [95.0, 20.0], [5.0, 5.0]])
    scores = np.array([0.9, 0.8, 0.1])  # the last one is too weak to count
    region = person_region(100, 120, np.array([40, 30, 70, 90]), kps, scores)
    ys, xs = np.nonzero(region)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (40, 95, 20, 90)
    frame = np.full((100, 120, 3), 77, np.uint8)
    bg = background(frame, region)
    assert bg[region.astype(bool)].max() == 0 and bg[~region.astype(bool)].min() == 77


def test_external_masks_are_binarised_fitted_and_checked():
    m = np.zeros((50, 100), np.float32)
    m[10:20, 10:30] = 0.8
    fitted = fit_external_mask(m, 50, 100)
    assert fitted.dtype == np.uint8 and fitted.sum() == 200
    rgb = np.zeros((50, 100, 3), np.uint8)
    rgb[10:20, 10:30] = 255
    assert np.array_equal(fit_external_mask(rgb, 50, 100), fitted)
    assert np.array_equal(fit_external_mask(fitted, 50, 100), fitted)  # 0/1 labels stay 0/1
    # A mask made on the original 100x50 frames is letterboxed like the frames into a 160x96 working size.
    lb = fit_external_mask(m > 0.5, 96, 160)
    assert lb.shape == (96, 160) and lb[:8].sum() == 0 and lb.sum() > 0
    check_mask_aspect((50, 100), (50, 100), (96, 160))
    with pytest.raises(MaskInputError, match="aspect"):
        check_mask_aspect((100, 100), (50, 100), (96, 160))
    with pytest.raises(MaskInputError, match="2-D mask"):
        fit_external_mask(np.zeros((4, 5, 6, 7)), 5, 5)
