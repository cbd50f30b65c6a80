"""``sdegen report RUN_OR_MULTIRUN_DIR``: the thesis's tables and figures from a run or a sweep,
written into ``<dir>/report/`` (or ``out_dir=``); see ``sdegen.report``."""

from __future__ import annotations

from ..report.build import build_report


def main(cfg):
    return build_report(cfg.run_dir, cfg.get("out_dir"), int(cfg.first_epochs))
