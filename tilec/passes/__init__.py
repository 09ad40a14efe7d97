"""IR passes run on every specialisation, in order: constant folding, then bounds analysis."""
from .bounds import analyse_bounds
from .fold import fold_constants


def run_default_passes(kernel):
    fold_constants(kernel)
    analyse_bounds(kernel)
    return kernel
