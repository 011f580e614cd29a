"""The shared longest-side resize: sizes, factors and the no-op case."""
import cv2
import numpy as np

from copylens.core.resize import fit_longest, scaled_size, to_longest


def test_scaled_size_keeps_aspect_and_one_pixel_minimum():
    assert scaled_size(4000, 3000, 1000) == ((1000, 750), 0.25)
    (w, h), s = scaled_size(10000, 10, 100)
    assert (w, h) == (100, 1) and s == 0.01  # a sliver never becomes zero pixels tall


def test_fit_longest_only_shrinks_and_returns_the_same_array_when_it_fits():
    a = np.zeros((300, 200, 3), np.uint8)
    out, s = fit_longest(a, 512)
    assert out is a and s == 1.0
    out, s = fit_longest(a, 150)
    assert out.shape == (150, 100, 3) and s == 0.5


def test_to_longest_enlarges_small_graphics():
    a = np.zeros((40, 64), np.uint8)
    a[10:30, 20:40] = 255
    out, s = to_longest(a, 512, cv2.INTER_CUBIC)
    assert out.shape == (320, 512) and s == 8.0
    assert out[160, 240] == 255 and out[10, 10] == 0
