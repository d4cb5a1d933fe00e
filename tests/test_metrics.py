"""Metric math against hand-computed confusion matrices (RefineNet/CEN meter conventions)."""
import math

import numpy as np
import torch

from pipeline.metrics import confusion_matrix, scores


def test_confusion_matrix_counts_and_ignores():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 1]])
    conf = confusion_matrix(pred, target, 3, 255)
    # rows = ground truth, columns = prediction; the two ignored pixels are not counted.
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_scores_by_hand():
    conf = np.array([[3, 1, 0], [0, 2, 0], [1, 0, 1]])
    s = scores(conf)
    assert math.isclose(s["pixel_acc"], 6 / 8)
    assert math.isclose(s["mean_acc"], (3 / 4 + 2 / 2 + 1 / 2) / 3)
    assert math.isclose(s["miou"], (3 / 5 + 2 / 3 + 1 / 2) / 3)


def test_class_absent_from_ground_truth_but_predicted_counts_as_zero_iou():
    # Class 2 never occurs in the labels but is predicted once: recall NaN (skipped),
    # IoU = 0 / (0 + 1 - 0) = 0 (counted), as the RefineNet/CEN meter does.
    conf = np.array([[2, 0, 1], [0, 3, 0], [0, 0, 0]])
    s = scores(conf)
    assert math.isclose(s["mean_acc"], (2 / 3 + 1) / 2)
    assert math.isclose(s["miou"], (2 / 3 + 1 + 0) / 3)


def test_class_absent_everywhere_is_skipped():
    conf = np.array([[2, 0, 0], [1, 3, 0], [0, 0, 0]])
    s = scores(conf)
    assert math.isclose(s["miou"], (2 / 3 + 3 / 4) / 2)
    assert math.isclose(s["mean_acc"], (1 + 3 / 4) / 2)


def test_one_matrix_over_the_split_is_not_a_mean_of_per_image_scores():
    t1, p1 = torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 0, 0])
    t2, p2 = torch.tensor([1, 1, 1, 1]), torch.tensor([1, 1, 1, 1])
    total = confusion_matrix(p1, t1, 2, 255) + confusion_matrix(p2, t2, 2, 255)
    assert math.isclose(scores(total)["miou"], (3 / 4 + 4 / 5) / 2)
    per_image = (scores(confusion_matrix(p1, t1, 2, 255))["miou"]
                 + scores(confusion_matrix(p2, t2, 2, 255))["miou"]) / 2
    assert not math.isclose(per_image, scores(total)["miou"])


def test_empty_matrix_gives_nan():
    s = scores(np.zeros((3, 3)))
    assert all(math.isnan(v) for v in s.values())
