"""Meta-Attention on Ascend: lowering to an AI-core-group program (one AIC + two AIVs, GM
workspace hand-off with cross-core flags) in three pipelines, its simulator, and Ascend C.

    prog = lower_attention(kernel, "ascend910b2", pipeline="4-stage")
    stats = run(kernel, args)            # numpy arrays in place; pipeline by choose_pipeline
"""
from __future__ import annotations

import numpy as np

from .lower import (PIPELINES, AttentionProgram, check_attention_legality, choose_pipeline,
                    fit_window, lower_attention, max_window)
from .recognise import recognise
from .sim import AttentionStats, simulate_attention

__all__ = ["PIPELINES", "AttentionProgram", "AttentionStats", "check_attention_legality",
           "choose_pipeline", "fit_window", "lower_attention", "max_window", "program_for", "recognise", "run",
           "simulate_attention", "emit_attention"]


def run(kernel, args: dict, target="ascend910b2", pipeline: str | None = None,
        window: int | None = None, assignment=None, classes: tuple | None = None
        ) -> AttentionStats:
    """Run a specialised meta_attention on numpy arrays (O written in place) through the
    simulator. ``pipeline`` None: the rule (choose_pipeline) picks it from the task table;
    ``classes``: tile rows of a multi-tile program (see lower_attention)."""
    from codegen.launch import bind
    launch = bind(kernel, args)
    for name, a in launch.tensors.items():
        if not isinstance(a, np.ndarray):
            raise TypeError(f"ascend simulator takes numpy arrays; '{name}' is {type(a).__name__}")
    prog = program_for(kernel, launch.tensors, target, pipeline, window, classes)
    return simulate_attention(prog, launch.tensors, launch.scalars, target, assignment)


def program_for(kernel, tensors: dict, target="ascend910b2", pipeline: str | None = None,
                window: int | None = None, classes: tuple | None = None) -> AttentionProgram:
    """The attention program a launch with these tensors runs: ``pipeline`` None lets the rule
    (choose_pipeline) pick from the task table; the window fits the tasks (fit_window)."""
    spec = recognise(kernel)
    tasks = tensors[spec.tensors["TASKS"]]
    rows = tuple(sorted(set(classes))) if classes else None
    if pipeline is None:
        w = window or max_window(spec, target, "4-stage", rows) or spec.BN
        pipeline = choose_pipeline(tasks, w)
        if pipeline == "2-stage" and max_window(spec, target, "2-stage", rows) is None:
            pipeline = "4-stage"
    if window is None:
        window = fit_window(spec, target, tasks, pipeline, rows)
    return lower_attention(kernel, target, pipeline, window, rows)


def emit_attention(prog):
    from .emit import emit_attention as f
    return f(prog)
